"""The whitepaper's certificate requests onto the neutral
:class:`~controller.csms.certificates.CertificateManager`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import (
    Action,
    CertificateSignedStatus,
    CertificateStatus,
    DeleteCertificateStatus,
    GetInstalledCertificateStatus,
)

from controller.csms.certificate_store import CertificateUse

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class CertificateHandlers:
    """The whitepaper's certificate messages, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.install_certificate)
    async def on_install_certificate(
        self, certificate_type: str, certificate: str, **kwargs: Any
    ) -> Any:
        outcome = await self._s.certificates.install(CertificateUse(certificate_type), certificate)
        return call_result.InstallCertificate(status=CertificateStatus(outcome.value))

    @on(Action.get_installed_certificate_ids)
    def on_get_installed_certificate_ids(self, certificate_type: str, **kwargs: Any) -> Any:
        found = self._s.certificates.hash_data(CertificateUse(certificate_type))
        if not found:
            return call_result.GetInstalledCertificateIds(
                status=GetInstalledCertificateStatus.not_found
            )
        return call_result.GetInstalledCertificateIds(
            status=GetInstalledCertificateStatus.accepted,
            certificate_hash_data=[d.wire() for d in found],
        )

    @on(Action.delete_certificate)
    async def on_delete_certificate(
        self, certificate_hash_data: dict[str, str], **kwargs: Any
    ) -> Any:
        outcome = await self._s.certificates.delete(certificate_hash_data)
        return call_result.DeleteCertificate(status=DeleteCertificateStatus(outcome.value))

    @on(Action.certificate_signed)
    async def on_certificate_signed(self, certificate_chain: str, **kwargs: Any) -> Any:
        outcome = await self._s.certificates.certificate_signed(certificate_chain)
        return call_result.CertificateSigned(status=CertificateSignedStatus(outcome.value))
