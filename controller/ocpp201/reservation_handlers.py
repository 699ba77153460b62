"""ReserveNow and CancelReservation (H01, H02), as a mixin of
:class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`, onto the version-neutral
:class:`~controller.csms.reservations.ReservationBook` (the one 1.6 uses: stored before the
answer, restored after a restart, enforced by the connector state machines).

2.0.1 in the book's terms: ``evseId`` is our connector (each EVSE has one connector), no
``evseId`` is connector 0, "any EVSE" (allowed while ReservationCtrlr.NonEvseSpecific is
true, else Rejected); ``groupIdToken`` is the parent id, so a card of the same group may use
the reservation (H03); ReservationCtrlr.Enabled false rejects every reservation. Each EVSE
has one IEC 62196 Type 2 connector, a socket or a tethered cable: a ``connectorType`` other
than ``sType2`` or ``cType2`` is Rejected (the specification leaves open whether a socket
may stand in for a cable; a CSMS rarely knows which one a charger has, so both are taken).
ReservationStatusUpdate (H01: Expired, Removed) is sent by the adapter when the charge point
ends a reservation (:meth:`controller.ocpp201.adapter.Ocpp201Adapter.reservation_ended`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import (
    Action,
    CancelReservationStatusEnumType,
    ConnectorEnumType,
    ReserveNowStatusEnumType,
)

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)

#: The connector types every EVSE of this charger matches (Type 2, socket or cable).
CONNECTOR_TYPES = frozenset({ConnectorEnumType.s_type2, ConnectorEnumType.c_type2})


class ReservationHandlers:
    """ReserveNow and CancelReservation, mixed into the 2.0.1 ChargePoint."""

    _s: Services

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        id: int,
        expiry_date_time: str,
        id_token: dict[str, Any],
        evse_id: int | None = None,
        connector_type: str | None = None,
        group_id_token: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        if connector_type is not None and connector_type not in CONNECTOR_TYPES:
            log.info("ReserveNow %d for a %s connector: none here, Rejected", id, connector_type)
            return call_result.ReserveNow(ReserveNowStatusEnumType.rejected)
        self._s.token_kinds.note(id_token)
        answer = await self._s.reservations.reserve(
            evse_id or 0,
            expiry_date_time,
            str(id_token["id_token"]),
            id,
            None if group_id_token is None else str(group_id_token["id_token"]),
        )
        return call_result.ReserveNow(ReserveNowStatusEnumType(answer.value))

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        cancelled = await self._s.reservations.cancel(reservation_id)
        return call_result.CancelReservation(
            CancelReservationStatusEnumType.accepted
            if cancelled
            else CancelReservationStatusEnumType.rejected
        )
