"""The 1.6 requests of :mod:`controller.ocpp16.reservations`, as a mixin of the ChargePoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, CancelReservationStatus

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
        status = await self._s.reservations.reserve(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status)

    @on(Action.cancel_reservation)
    async def on_cancel_reservation(self, reservation_id: int, **kwargs: Any) -> Any:
        cancelled = await self._s.reservations.cancel(reservation_id)
        return call_result.CancelReservation(
            CancelReservationStatus.accepted if cancelled else CancelReservationStatus.rejected
        )
