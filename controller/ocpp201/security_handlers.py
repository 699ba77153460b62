"""The CSMS's security requests (A02, M03-M05) and firmware updates (L01, L02), as a mixin
of :class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

Each maps the 2.0.1 request onto the version-neutral service 1.6 uses too
(:class:`~controller.csms.certificates.CertificateManager`,
:class:`~controller.csms.firmware.FirmwareUpdater`), so the rules are the same under both
versions: a ManufacturerRootCertificate the CSMS installs is stored but vouches for firmware
only where the operator allows it; the CSMS root the current connection relies on is not
deleted (M04.FR.06: Failed); a CertificateSigned chain must match the pending key and chain
to a CSMS root. Every handler answers at once; an update runs from ``@after`` in a task.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import call_result
from ocpp.v201.datatypes import CertificateHashDataChainType
from ocpp.v201.enums import (
    Action,
    CertificateSignedStatusEnumType,
    CertificateSigningUseEnumType,
    DeleteCertificateStatusEnumType,
    GetInstalledCertificateStatusEnumType,
    InstallCertificateStatusEnumType,
    UpdateFirmwareStatusEnumType,
)

from controller.csms.firmware import SignedFirmware
from controller.ocpp201.security_wire import USE_OF, WIRE_USE

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)


class SecurityHandlers:
    """Certificates and firmware, mixed into the 2.0.1 ChargePoint."""

    _s: Services

    # --- the CA store (M03-M05) -------------------------------------------------------------

    @on(Action.install_certificate)
    async def on_install_certificate(
        self, certificate_type: str, certificate: str, **_: Any
    ) -> Any:
        outcome = await self._s.security.certificates.install(USE_OF[certificate_type], certificate)
        return call_result.InstallCertificate(InstallCertificateStatusEnumType(outcome.value))

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(
        self, certificate_type: list[str] | None = None, **_: Any
    ) -> Any:
        """Every installed root of the asked uses (all without ``certificateType``); the
        charger holds no V2GCertificateChain (no ISO 15118 modem)."""
        certificates = self._s.security.certificates
        wanted = [USE_OF[t] for t in certificate_type or USE_OF if t in USE_OF]
        found = [
            CertificateHashDataChainType(
                certificate_type=WIRE_USE[use], certificate_hash_data=data.wire()
            )
            for use in wanted
            for data in certificates.hash_data(use)
        ]
        if not found:
            return call_result.GetInstalledCertificateIds(
                GetInstalledCertificateStatusEnumType.notFound  # the library spells it so
            )
        return call_result.GetInstalledCertificateIds(
            GetInstalledCertificateStatusEnumType.accepted, certificate_hash_data_chain=found
        )

    @on(Action.delete_certificate)
    async def on_delete_certificate(self, certificate_hash_data: dict[str, str], **_: Any) -> Any:
        outcome = await self._s.security.certificates.delete(certificate_hash_data)
        return call_result.DeleteCertificate(DeleteCertificateStatusEnumType(outcome.value))

    # --- the client certificate (A02, A03) --------------------------------------------------

    @on(Action.certificate_signed)
    async def on_certificate_signed(
        self, certificate_chain: str, certificate_type: str | None = None, **_: Any
    ) -> Any:
        if certificate_type == CertificateSigningUseEnumType.v2g_certificate:
            log.warning("CertificateSigned for a V2GCertificate: no ISO 15118 here, Rejected")
            return call_result.CertificateSigned(CertificateSignedStatusEnumType.rejected)
        outcome = await self._s.security.certificates.certificate_signed(certificate_chain)
        return call_result.CertificateSigned(CertificateSignedStatusEnumType(outcome.value))

    # --- firmware (L01, L02) ------------------------------------------------------------------

    @on(Action.update_firmware)
    async def on_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        """L01 with a signing certificate (checked now: InvalidCertificate), L02 without
        (the package's detached signature is checked after the download)."""
        answer = await self._s.security.firmware.plan_signed(
            call_unique_id,
            request_id,
            SignedFirmware.of(firmware),
            retries,
            retry_interval,
            certificate_optional=True,
        )
        return call_result.UpdateFirmware(UpdateFirmwareStatusEnumType(answer.value))

    @after(Action.update_firmware)
    def after_update_firmware(self, call_unique_id: str, **_: Any) -> None:
        self._s.security.firmware.start_planned(call_unique_id)
