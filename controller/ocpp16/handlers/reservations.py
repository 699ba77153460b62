"""ReserveNow and CancelReservation (1.6 §5.13, §5.3) onto the neutral
:class:`~controller.csms.reservations.ReservationBook`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, CancelReservationStatus, ReservationStatus

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class ReservationHandlers:
    """ReserveNow and CancelReservation, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.reserve_now)
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **kwargs: Any,
    ) -> Any:
        answer = await self._s.reservations.reserve(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(ReservationStatus(answer.value))

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **kwargs: Any) -> Any:
        cancelled = await self._s.reservations.cancel(reservation_id)
        return call_result.CancelReservation(
            CancelReservationStatus.accepted if cancelled else CancelReservationStatus.rejected
        )
