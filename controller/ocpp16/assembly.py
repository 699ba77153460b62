"""The services the 1.6 handlers act on, built in dependency order.

Each service is built after the ones it uses, and is handed bound methods of those, never a
lambda that reaches into a container not yet built. What every service shares: ``send``
(:meth:`~controller.ocppj.caller.SessionCaller.call`, refused while not registered) and
``spawn`` (the adapter's :class:`~controller.csms.tasks.TaskSet`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from ocpp.v16 import call
from ocpp.v16.enums import DiagnosticsStatus, UploadLogStatus

from controller.charging_schedule import ConnectorRating
from controller.csms.auth import Authorizer
from controller.csms.calls import Send, Spawn
from controller.csms.certificate_store import CertificateUse
from controller.csms.certificates import CertificateManager
from controller.csms.diagnostics import Diagnostics, LogSource, default_log_source
from controller.csms.firmware import FirmwareUpdater
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.get_log import LogUploads
from controller.csms.link import LinkTiming
from controller.csms.reservations import ReservationBook
from controller.csms.security import LinkSecurity
from controller.csms.security_events import SecurityEvents
from controller.csms.smart_charging import SmartCharging
from controller.domain import ChargePointControl, MeterSample
from controller.firmware_install import Installer
from controller.ocpp16.extended_trigger import ExtendedTriggers
from controller.ocpp16.firmware_status import core_status, signed_report, status_request
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.profiles import parse_profile
from controller.ocpp16.services import Services
from controller.ocpp16.settings import (
    SECRET_KEYS,
    CertificateKeys,
    ReservationKeys,
    SmartChargingKeys,
)
from controller.ocpp16.triggers import TriggerSender
from controller.storage import Storage


def log_status_request(status: str, request_id: int | None) -> call.LogStatusNotification:
    """LogStatusNotification; Idle goes without a requestId (optional in the schema)."""
    return call.LogStatusNotification(UploadLogStatus(status), request_id)


def build_services(
    *,
    chargepoint_id: str,
    control: ChargePointControl,
    config: OcppConfig,
    storage: Storage,
    clock: Callable[[], dt.datetime],
    timing: LinkTiming,
    send: Send,
    spawn: Spawn,
    authorizer: Authorizer,
    security_events: SecurityEvents,
    boot_request: call.BootNotification,
    latest_sample: Callable[[int], MeterSample | None],
    connector_ratings: Mapping[int, ConnectorRating] | None,
    diagnostics_logs: LogSource | None,
    firmware_installer: Installer | None,
    security: LinkSecurity | None,
    firmware_policy: FirmwarePolicy,
) -> Services:
    """Everything :class:`~controller.ocpp16.charge_point.OcppChargePoint` serves from."""
    state_dir = storage.path.parent
    scale = timing.interval_scale

    def secrets() -> list[str]:
        return [v for k in SECRET_KEYS if (v := config.get(k))]

    async def sign(csr: str) -> str:
        conf = await send(call.SignCertificate(csr=csr))
        return str(conf.status)

    certificates = CertificateManager(
        state_dir=state_dir,
        settings=CertificateKeys(config),
        chargepoint_id=chargepoint_id,
        ca_file=security.files.ca_file if security is not None else None,
        sign=sign,
        events=security_events,
        clock=clock,
    )

    diagnostics = Diagnostics(
        chargepoint_id=chargepoint_id,
        logs=diagnostics_logs or default_log_source(state_dir),
        secrets=secrets,
        send=send,
        status_request=lambda status: call.DiagnosticsStatusNotification(
            status=DiagnosticsStatus(status.value)
        ),
        spawn=spawn,
        clock=clock,
        interval_scale=scale,
    )
    firmware = FirmwareUpdater.in_state_dir(
        state_dir,
        installer=firmware_installer,
        policy=firmware_policy,
        manufacturer_roots=lambda: certificates.roots(CertificateUse.MANUFACTURER_ROOT),
        control=control,
        send=send,
        status_request=status_request,
        spawn=spawn,
        clock=clock,
        storage=storage,
        record_event=security_events.record,
        interval_scale=scale,
    )
    logs = LogUploads(
        chargepoint_id=chargepoint_id,
        diagnostics_log=diagnostics.prepare,
        security_history=security_events.history,
        secrets=secrets,
        send=send,
        status_request=log_status_request,
        spawn=spawn,
        clock=clock,
        interval_scale=scale,
    )
    triggers = TriggerSender(
        control=control,
        config=config,
        boot_request=boot_request,
        latest_sample=latest_sample,
        clock=clock,
        spawn=spawn,
        diagnostics_status=lambda: DiagnosticsStatus(diagnostics.status.value),
        firmware_status=lambda: core_status(firmware.status),
    )
    return Services(
        control=control,
        config=config,
        authorizer=authorizer,
        reservations=ReservationBook(control, ReservationKeys(config), storage, clock, spawn),
        triggers=triggers,
        profiles=SmartCharging(
            control=control,
            settings=SmartChargingKeys(config),
            parse=parse_profile,
            storage=storage,
            spawn=spawn,
            clock=clock,
            ratings=connector_ratings,
        ),
        diagnostics=diagnostics,
        firmware=firmware,
        clock=clock,
        spawn=spawn,
        security_events=security_events,
        certificates=certificates,
        logs=logs,
        extended_triggers=ExtendedTriggers(
            triggers=triggers,
            log_status=logs.status_notification,
            report_firmware=signed_report(firmware, send),
            request_signing=certificates.request_signing,
        ),
    )
