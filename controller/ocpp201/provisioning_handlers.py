"""Provisioning beyond the device model (B09) and the ISO 15118 certificate messages (M), as
a mixin of :class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

SetNetworkProfile stores a connection profile in a slot (:mod:`.network_profiles` says
what is Accepted, Rejected or Failed, and what is honoured at the next boot).

Get15118EVCertificate and GetCertificateStatus (M02, M06) serve an EV that speaks ISO
15118 over the power line; this charger has no PLC modem, so no EV can ask for either and
the station never sends them. Should a CSMS send them anyway, they are answered Failed with
the reason (``NoPLCModem``) rather than left unserved. DisplayMessage (O) has no handler:
without a display driver SetDisplayMessage, GetDisplayMessages and ClearDisplayMessage get
the CALLERROR NotSupported (:mod:`.errors`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.datatypes import StatusInfoType
from ocpp.v201.enums import (
    Action,
    GetCertificateStatusEnumType,
    Iso15118EVCertificateStatusEnumType,
    SetNetworkProfileStatusEnumType,
)

from controller.ocpp201 import network_profiles
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)

#: statusInfo of the ISO 15118 messages (reasonCode at most 20 characters).
NO_PLC = StatusInfoType(
    reason_code="NoPLCModem",
    additional_info="no ISO 15118 power-line modem: EV certificates are not available",
)


def _rejected(reason: str) -> StatusInfoType:
    return StatusInfoType(reason_code="InvalidProfile", additional_info=reason[:512])


class ProvisioningHandlers:
    """SetNetworkProfile and the ISO 15118 certificate messages, mixed into the ChargePoint."""

    _s: Services

    @on(Action.set_network_profile)
    async def on_set_network_profile(
        self, configuration_slot: int, connection_data: dict[str, Any], **_: Any
    ) -> Any:
        profiles = self._s.network
        current = self._s.model.get_int("SecurityCtrlr.SecurityProfile")
        reason = profiles.slot_problem(configuration_slot) or network_profiles.problem(
            connection_data, current
        )
        if reason is not None:
            log.info("SetNetworkProfile slot %d rejected: %s", configuration_slot, reason)
            return call_result.SetNetworkProfile(
                SetNetworkProfileStatusEnumType.rejected, status_info=_rejected(reason)
            )
        try:
            await profiles.store(configuration_slot, connection_data)
        except StorageError as exc:
            log.error("SetNetworkProfile slot %d not stored: %s", configuration_slot, exc)
            return call_result.SetNetworkProfile(SetNetworkProfileStatusEnumType.failed)
        return call_result.SetNetworkProfile(SetNetworkProfileStatusEnumType.accepted)

    @on(Action.get_15118_ev_certificate)
    def on_get_15118_ev_certificate(self, action: str, **_: Any) -> Any:
        log.info("Get15118EVCertificate (%s) without a PLC modem: Failed", action)
        return call_result.Get15118EVCertificate(
            Iso15118EVCertificateStatusEnumType.failed, exi_response="", status_info=NO_PLC
        )

    @on(Action.get_certificate_status)
    def on_get_certificate_status(self, **_: Any) -> Any:
        log.info("GetCertificateStatus without a PLC modem: Failed")
        return call_result.GetCertificateStatus(
            GetCertificateStatusEnumType.failed, status_info=NO_PLC
        )
