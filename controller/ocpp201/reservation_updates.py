"""ReservationStatusUpdate (H01): the CSMS hears of a reservation the charging station ended
on its own: ``Expired`` when its time came (also while the station was off: found at the
restart), ``Removed`` when its EVSE became Faulted or Unavailable, or when a stored one could
no longer be made at the restart. One used up by a transaction (the Started event names it)
or cancelled by the CSMS is not reported.

Sent at once while registered; raised offline, they wait (the last :data:`PENDING_MAX`)
and go right after the next boot's StatusNotifications. Nothing is lost in a power cut:
each update is a row of the ``settings`` table (namespace :data:`NAMESPACE`, key the
reservationId, value the status) from when it is raised until the CSMS answered it, and the
rows the last run left are sent after the first boot of the next (:meth:`restore`, before
the updates the restart itself finds). They are not transaction messages: one the CSMS
answers with an error, or not at all, is logged and dropped. Loop thread only; the rows
are written on the storage thread in order.
"""

from __future__ import annotations

import logging
import sqlite3
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

    from controller.storage import Storage

log = logging.getLogger(__name__)

#: How many updates raised offline are kept for the next connection.
PENDING_MAX = 100
#: Where the updates not yet answered are kept (key: reservationId, value: the status).
NAMESPACE = "ocpp201.reservation-updates"
_STATUS = {
    ReservationEnd.EXPIRED: ReservationUpdateStatusEnumType.expired,
    ReservationEnd.TERMINATED: ReservationUpdateStatusEnumType.removed,
}


class ReservationUpdates:
    """The ReservationStatusUpdates to send, now or after the next boot."""

    def __init__(self, spawn: Spawn, storage: Storage) -> None:
        self._spawn = spawn
        self._storage = storage
        self._pending: deque[call.ReservationStatusUpdate] = deque(maxlen=PENDING_MAX)

    async def restore(self) -> None:
        """Take back what the last run raised and never got answered, ahead of anything
        raised in this run (call before the first connection)."""
        stored = await self._storage.load_settings(NAMESPACE)
        restored = []
        for key, status in stored.items():
            try:
                update_status = ReservationUpdateStatusEnumType(status)
                request = call.ReservationStatusUpdate(
                    reservation_id=int(key), reservation_update_status=update_status
                )
            except ValueError:
                log.error("stored ReservationStatusUpdate %s=%s unreadable: dropped", key, status)
                self._forget(key)
                continue
            restored.append(request)
        if restored:
            log.info("%d ReservationStatusUpdate(s) of the last run to send", len(restored))
        self._pending.extendleft(reversed(restored))

    def ended(self, reservation_id: int, reason: ReservationEnd, cp: ChargePoint | None) -> None:
        """A reservation ended for ``reason``; ``cp`` is the registered connection (None:
        offline). Returns at once."""
        status = _STATUS.get(reason)
        if status is None:
            return
        request = call.ReservationStatusUpdate(
            reservation_id=reservation_id, reservation_update_status=status
        )
        row = (NAMESPACE, str(reservation_id), str(status))
        self._storage.submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO settings (namespace, key, value) VALUES (?, ?, ?)", row
            )
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

    async def _send(self, cp: ChargePoint, request: call.ReservationStatusUpdate) -> None:
        """Send ``request``; answered or refused, its row goes (a dropped connection
        cancels this and the row stays for the next run)."""
        try:
            await call_checked(cp, request)
        except CALL_FAILURES as exc:
            log.warning(
                "ReservationStatusUpdate %d not sent: %s", request.reservation_id, describe(exc)
            )
        self._forget(str(request.reservation_id))

    def _forget(self, key: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM settings WHERE namespace = ? AND key = ?", (NAMESPACE, key))

        self._storage.submit(job)
