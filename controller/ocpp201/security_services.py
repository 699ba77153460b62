"""The 2.0.1 adapter's security services, built from the version-neutral ones in
:mod:`controller.csms`: the security log (SecurityEventNotification), the CA store and the
client certificate (InstallCertificate ... CertificateSigned) and firmware updates
(UpdateFirmware), under the operator's firmware trust.

Nothing here decides anything a 1.6 charger decides differently: the services are the same
objects 1.6 uses, given 2.0.1's words (:mod:`.security_wire`) and SecurityCtrlr's values.
Loop thread only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ocpp.v201 import call
from ocpp.v201.enums import CertificateSigningUseEnumType

from controller.csms.calls import Send, Spawn
from controller.csms.certificate_retries import SigningRetries
from controller.csms.certificate_store import CertificateUse
from controller.csms.certificates import CertificateManager
from controller.csms.firmware import FirmwareUpdater
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.security import LinkSecurity
from controller.csms.security_events import SecurityEvents
from controller.domain import ChargePointControl
from controller.firmware_install import Installer
from controller.ocpp201.cert_renewal import CertificateRenewal
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.security_wire import CertificateVariables, firmware_status_request
from controller.storage import Storage

WAIT_MINIMUM = "SecurityCtrlr.CertSigningWaitMinimum"


@dataclass(frozen=True, slots=True)
class SecurityServices:
    """What the security and firmware handlers act on."""

    events: SecurityEvents
    certificates: CertificateManager
    firmware: FirmwareUpdater
    signing: SigningRetries  # SignCertificate, sent again while unanswered
    renewal: CertificateRenewal  # A03: SignCertificate before the client certificate expires

    async def restore(self) -> None:
        """Before the first connection: pending events, the store, an update under way."""
        await self.events.restore()
        await self.certificates.load()
        await self.firmware.restore()


def build_security_services(
    *,
    chargepoint_id: str,
    model: DeviceModel,
    control: ChargePointControl,
    storage: Storage,
    send: Send,
    spawn: Spawn,
    clock: Callable[[], dt.datetime],
    interval_scale: float,
    security: LinkSecurity | None,
    policy: FirmwarePolicy,
    installer: Installer | None,
) -> SecurityServices:
    """The services of one adapter; ``send`` is the session caller's (refused offline)."""
    state_dir = storage.path.parent
    events = SecurityEvents(storage, clock)

    async def sign(csr: str) -> str:
        request = call.SignCertificate(
            csr=csr, certificate_type=CertificateSigningUseEnumType.charging_station_certificate
        )
        conf = await send(request)
        return str(conf.status)

    certificates = CertificateManager(
        state_dir=state_dir,
        settings=CertificateVariables(model),
        chargepoint_id=chargepoint_id,
        ca_file=security.files.ca_file if security is not None else None,
        sign=sign,
        events=events,
        clock=clock,
    )
    model.provide("SecurityCtrlr.CertificateEntries", lambda: str(certificates.store.count))
    firmware = FirmwareUpdater.in_state_dir(
        state_dir,
        installer=installer,
        policy=policy,
        manufacturer_roots=lambda: certificates.roots(CertificateUse.MANUFACTURER_ROOT),
        control=control,
        send=send,
        status_request=firmware_status_request,
        spawn=spawn,
        clock=clock,
        storage=storage,
        record_event=events.record,
        interval_scale=interval_scale,
    )
    if security is not None:
        security.report_to(events)  # refused connections, changed profile or password
        security.use_certificates(certificates)  # installed roots, a signed client cert
    signing = SigningRetries(
        certificates,
        wait_minimum_s=lambda: model.get_int(WAIT_MINIMUM) * interval_scale,
        repeat_times=lambda: model.get_int("SecurityCtrlr.CertSigningRepeatTimes"),
    )
    renewal = CertificateRenewal(
        certificates=certificates,
        signing=signing,
        model=model,
        configured=security.files.cert_file if security is not None else None,
        spawn=spawn,
        clock=clock,
        interval_scale=interval_scale,
    )
    return SecurityServices(events, certificates, firmware, signing, renewal)
