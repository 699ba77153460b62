"""What the 1.6 handlers act on: the services, built once by the adapter.

Kept apart from :mod:`.charge_point` and the handler mixins (:mod:`.handlers`) so that the
services never import a handler: the imports run one way, handlers -> services.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.csms.auth import Authorizer
from controller.csms.calls import Spawn
from controller.csms.security_events import SecurityEvents
from controller.domain import ChargePointControl

if TYPE_CHECKING:
    from controller.csms.certificates import CertificateManager
    from controller.csms.diagnostics import Diagnostics
    from controller.csms.firmware import FirmwareUpdater
    from controller.csms.get_log import LogUploads
    from controller.csms.reservations import ReservationBook
    from controller.csms.smart_charging import SmartCharging
    from controller.ocpp16.extended_trigger import ExtendedTriggers
    from controller.ocpp16.keys import OcppConfig
    from controller.ocpp16.triggers import TriggerSender


@dataclass(frozen=True, slots=True)
class Services:
    """What the handlers act on; built once by the adapter, shared by every connection."""

    control: ChargePointControl
    config: OcppConfig
    authorizer: Authorizer  # with the local authorization list (authorizer.local_list)
    reservations: ReservationBook
    triggers: TriggerSender
    profiles: SmartCharging
    diagnostics: Diagnostics
    firmware: FirmwareUpdater
    clock: Callable[[], dt.datetime]
    spawn: Spawn  # run a coroutine in a tracked task whose failure is logged
    security_events: SecurityEvents  # the whitepaper's security log, pushed to the CSMS
    certificates: CertificateManager  # CA store and client certificate (whitepaper)
    logs: LogUploads  # GetLog: diagnostics and security log uploads
    extended_triggers: ExtendedTriggers  # ExtendedTriggerMessage, sent through `triggers`
