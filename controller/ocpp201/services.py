"""What the 2.0.1 handlers serve from, built once per adapter (one per connection would
lose nothing, but these outlive connections)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ocpp.v201 import call

from controller.csms.auth import Authorizer
from controller.csms.calls import Spawn
from controller.csms.get_log import LogUploads
from controller.csms.reservations import ReservationBook
from controller.csms.smart_charging import SmartCharging
from controller.domain import ChargePointControl, MeterSample
from controller.ocpp201.auth import TokenKinds
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.evse_variables import EvseVariables
from controller.ocpp201.monitoring import Monitors
from controller.ocpp201.network_profiles import NetworkProfiles
from controller.ocpp201.notify_events import NotifyEvents
from controller.ocpp201.plug_ins import PlugIns
from controller.ocpp201.security_services import SecurityServices
from controller.ocpp201.transactions import TransactionEvents
from controller.storage import Storage


@dataclass(frozen=True, slots=True)
class Services:
    model: DeviceModel
    control: ChargePointControl
    transactions: TransactionEvents
    authorizer: Authorizer
    storage: Storage
    spawn: Spawn
    clock: Callable[[], dt.datetime]
    latest_sample: Callable[[int], MeterSample | None]
    boot_request: call.BootNotification
    security: SecurityServices  # security log, certificates, firmware (blocks A, L, M)
    # --- authorization and reservations (C, D, H) ---
    token_kinds: TokenKinds
    reservations: ReservationBook
    profiles: SmartCharging  # charging profiles (K), version-neutral
    events: NotifyEvents  # NotifyEvent reports, kept while offline
    logs: LogUploads  # GetLog: diagnostics and security log uploads
    network: NetworkProfiles  # SetNetworkProfile's slots
    evses: EvseVariables  # the live EVSE and Connector components
    monitors: Monitors  # SetVariableMonitoring's monitors and their NotifyEvents
    plug_ins: PlugIns  # transactions begun at the plug-in, not yet a session (E02)
