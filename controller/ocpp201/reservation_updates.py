"""ReservationStatusUpdate (H01): the CSMS hears of a reservation the charging station ended
on its own: ``Expired`` when its time came (also while the station was off: found at the
restart), ``Removed`` when its EVSE became Faulted or Unavailable, or when a stored one could
no longer be made at the restart. One used up by a transaction (the Started event names it)
or cancelled by the CSMS is not reported.

Sent at once while registered; raised offline, they wait in memory (the last
:data:`PENDING_MAX`) and go right after the next boot's StatusNotifications. They are not
transaction messages: one the CSMS does not answer is logged and dropped, and a power cut
loses the waiting ones (the EVSE's StatusNotification still tells the CSMS it is free).
Loop thread only.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from ocpp.v201 import call
from ocpp.v201.enums import ReservationUpdateStatusEnumType

from controller.connector_types import ReservationEnd
from controller.csms.calls import Spawn
from controller.ocppj.caller import call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from ocpp.charge_point import ChargePoint

log = logging.getLogger(__name__)

#: How many updates raised offline are kept for the next connection.
PENDING_MAX = 100
_STATUS = {
    ReservationEnd.EXPIRED: ReservationUpdateStatusEnumType.expired,
    ReservationEnd.TERMINATED: ReservationUpdateStatusEnumType.removed,
}


class ReservationUpdates:
    """The ReservationStatusUpdates to send, now or after the next boot."""

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._pending: deque[call.ReservationStatusUpdate] = deque(maxlen=PENDING_MAX)

    def ended(self, reservation_id: int, reason: ReservationEnd, cp: ChargePoint | None) -> None:
        """A reservation ended for ``reason``; ``cp`` is the registered connection (None:
        offline). Returns at once."""
        status = _STATUS.get(reason)
        if status is None:
            return
        request = call.ReservationStatusUpdate(
            reservation_id=reservation_id, reservation_update_status=status
        )
        if cp is None:
            log.info(
                "reservation %d %s while offline: reported after reconnecting",
                reservation_id,
                status,
            )
            self._pending.append(request)
            return
        self._spawn(self._send(cp, request), f"ocpp201-reservation-{reservation_id}")

    def ended_at_restart(self, reservation_id: int, reason: ReservationEnd) -> None:
        """A stored reservation not made again at the restart (before any connection)."""
        self.ended(reservation_id, reason, None)

    async def flush(self, cp: ChargePoint) -> None:
        """Send what waited while offline, in order (the connection is registered)."""
        while self._pending:
            await self._send(cp, self._pending.popleft())

    @staticmethod
    async def _send(cp: ChargePoint, request: call.ReservationStatusUpdate) -> None:
        try:
            await call_checked(cp, request)
        except CALL_FAILURES as exc:
            log.warning(
                "ReservationStatusUpdate %d not sent: %s", request.reservation_id, describe(exc)
            )
