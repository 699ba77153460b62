"""The 2.0.1 words of the version-neutral security services (block A, L, M).

The services in :mod:`controller.csms` speak the 1.6 whitepaper's names, which 2.0.1
renamed in places: a CentralSystemRootCertificate is a CSMSRootCertificate, the security
event FailedToAuthenticateAtCentralSystem is FailedToAuthenticateAtCsms, and so on. This
module maps them both ways, builds the 2.0.1 notifications (SecurityEventNotification,
FirmwareStatusNotification) and reads the certificate limits from SecurityCtrlr
(:class:`CertificateVariables`). Pure functions and a small adapter; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from ocpp.v201 import call
from ocpp.v201.enums import FirmwareStatusEnumType

from controller.csms.certificate_store import CertificateUse
from controller.csms.firmware import FirmwareStatus
from controller.ocpp201.device_model import DeviceModel

#: 2.0.1 certificate use (InstallCertificateUseEnumType, GetCertificateIdUseEnumType) to
#: the store's; V2GCertificateChain (the charger's own ISO 15118 chain) is never held.
USE_OF: Mapping[str, CertificateUse] = {
    "CSMSRootCertificate": CertificateUse.CENTRAL_SYSTEM_ROOT,
    "ManufacturerRootCertificate": CertificateUse.MANUFACTURER_ROOT,
    "V2GRootCertificate": CertificateUse.V2G_ROOT,
    "MORootCertificate": CertificateUse.MO_ROOT,
}
#: The store's use in 2.0.1 words.
WIRE_USE: Mapping[CertificateUse, str] = {use: name for name, use in USE_OF.items()}

#: Security events whose 2.0.1 name differs from the whitepaper's (the 2.0.1 appendix's
#: list of security events); the others keep their name.
_EVENT_NAMES = {
    "FailedToAuthenticateAtCentralSystem": "FailedToAuthenticateAtCsms",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}

#: SecurityCtrlr.OrganizationName: the O of the CSR.
ORGANIZATION = "SecurityCtrlr.OrganizationName"
#: 2.0.1 has no variable bounding the CA store (1.6: CertificateStoreMaxLength): this many
#: certificates over the four uses, a few per use, is what a charger needs.
STORE_MAX = 20


def security_event_request(event: Mapping[str, str]) -> call.SecurityEventNotification:
    """A recorded security event (wire camelCase, whitepaper type) as 2.0.1 sends it."""
    kind = event["type"]
    return call.SecurityEventNotification(
        type=_EVENT_NAMES.get(kind, kind),
        timestamp=event["timestamp"],
        tech_info=event.get("techInfo"),
    )


def firmware_status_request(
    status: FirmwareStatus, request_id: int | None
) -> call.FirmwareStatusNotification:
    """Every step of an update in 2.0.1 words (the same as the whitepaper's), with the
    update's requestId (L01.FR.20); Idle, from a trigger, may go without one."""
    return call.FirmwareStatusNotification(
        status=FirmwareStatusEnumType(status.value), request_id=request_id
    )


class CertificateVariables:
    """:class:`~controller.csms.certificates.CertificateSettings` from SecurityCtrlr, read
    at each request (a SetVariables of OrganizationName applies at once)."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model

    @property
    def additional_root_check(self) -> bool:
        return self._model.get_bool("SecurityCtrlr.AdditionalRootCertificateCheck")

    @property
    def store_max(self) -> int:
        return STORE_MAX

    @property
    def organization(self) -> str:
        return self._model.get(ORGANIZATION) or ""

    @property
    def signed_chain_max_bytes(self) -> int:
        return self._model.get_int("SecurityCtrlr.MaxCertificateChainSize")
