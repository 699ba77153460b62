"""Reservations the CSMS makes (1.6 ReserveNow and CancelReservation), kept across restarts.

The connector state machines hold the reservations and enforce them (only the reserved id,
or an id of the same parent, may start; expiry; Reserved status; see
:mod:`controller.connector`); the supervisor places connector-0 reservations ("any
connector") on a free connector. :class:`ReservationBook` is the CSMS side (1.6 §5.13,
§5.3), whatever the version:

- It checks what only the CSMS side knows before asking the charge point: reservations are
  supported (:class:`ReservationSettings`; 1.6: the Reservation profile, else Rejected), a
  reservation of connector 0 is allowed (1.6: ``ReserveConnectorZeroSupported``), the
  connector exists, the expiryDate is readable and in the future (else Rejected). The charge
  point answers Accepted, Occupied, Faulted or Unavailable.
- An accepted reservation is stored (table ``reservations``) before the answer goes out,
  and re-made on the charge point at the next start (:meth:`ReservationBook.restore`) when
  it has not expired; one that cannot be stored is withdrawn and answered Rejected.
- The supervisor tells the link when a reservation ends (used by its transaction, expired,
  cancelled, ended by a fault or unavailability): it is forgotten then.

Loop thread only; storage work is awaited.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from controller.connector_types import ReservationEnd
from controller.csms.calls import Spawn
from controller.csms.wire import parse_iso
from controller.domain import Answer, ChargePointControl
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

#: What the charge point may answer a reservation; anything else counts as Rejected.
_OUTCOMES = frozenset({Answer.ACCEPTED, Answer.OCCUPIED, Answer.FAULTED, Answer.UNAVAILABLE})


class ReservationSettings(Protocol):
    """Read at each request; a version adapter maps its keys."""

    @property
    def reservations_supported(self) -> bool: ...

    @property
    def reserve_any_connector(self) -> bool:
        """A reservation may name connector 0: any connector."""
        ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reservation as the CSMS made it; ``connector_id`` 0 = any connector."""

    reservation_id: int
    connector_id: int
    id_tag: str
    parent_id: str | None
    expiry: dt.datetime  # aware UTC


class ReservationBook:
    """The reservations the CSMS made, as stored; the charge point holds the live ones."""

    def __init__(
        self,
        control: ChargePointControl,
        settings: ReservationSettings,
        storage: Storage,
        clock: Callable[[], dt.datetime],
        spawn: Spawn,
    ) -> None:
        self._control = control
        self._settings = settings
        self._storage = storage
        self._clock = clock
        self._spawn = spawn
        self._held: dict[int, Reservation] = {}

    @property
    def held(self) -> dict[int, Reservation]:
        """The stored reservations by id (a copy)."""
        return dict(self._held)

    @property
    def supported(self) -> bool:
        return self._settings.reservations_supported

    # --- ReserveNow, CancelReservation ------------------------------------------------------

    async def reserve(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id: str | None,
    ) -> Answer:
        """ReserveNow: the answer (Accepted, Occupied, Faulted, Unavailable or Rejected),
        after the reservation is made and stored."""
        problem = self._refusal(connector_id)
        try:
            expiry = parse_iso(expiry_date)
        except ValueError:
            problem = problem or f"unreadable expiryDate {expiry_date!r}"
            expiry = self._clock()
        if problem is None and expiry <= self._clock():
            problem = f"expiryDate {expiry_date} has passed"
        if problem is not None:
            log.info("ReserveNow %d rejected: %s", reservation_id, problem)
            return Answer.REJECTED
        wanted = Reservation(reservation_id, connector_id, id_tag, parent_id, expiry)
        answer = await self._control.reserve(
            connector_id, id_tag, parent_id, expiry, reservation_id
        )
        status = answer if answer in _OUTCOMES else Answer.REJECTED
        if status is not Answer.ACCEPTED:
            log.info("ReserveNow %d on connector %d: %s", reservation_id, connector_id, status)
            return status
        try:
            await self._storage.run(_save_job(wanted))
        except StorageError as exc:
            log.error("reservation %d not stored, withdrawn: %s", reservation_id, exc)
            await self._control.cancel_reservation(reservation_id)
            return Answer.REJECTED
        self._held[reservation_id] = wanted
        return status

    def _refusal(self, connector_id: int) -> str | None:
        if not self.supported:
            return "reservations are not supported (1.6: the Reservation profile)"
        if connector_id == 0:
            if not self._settings.reserve_any_connector:
                return "reserving connector 0 is not supported (ReserveConnectorZeroSupported)"
        elif connector_id not in self._control.connector_ids:
            return f"no connector {connector_id}"
        return None

    async def cancel(self, reservation_id: int) -> bool:
        """CancelReservation: True when the charge point held it (it is gone now)."""
        answer = await self._control.cancel_reservation(reservation_id)
        stale = self._held.get(reservation_id)
        if answer is not Answer.ACCEPTED and stale is not None:
            self.ended(reservation_id, ReservationEnd.CANCELLED)  # stored, no longer held
        return answer is Answer.ACCEPTED

    # --- lifecycle ------------------------------------------------------------------------

    def ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        """The charge point no longer holds ``reservation_id``: forget it (in a task)."""
        gone = self._held.pop(reservation_id, None)
        if gone is None:
            return
        log.info("reservation %d ended (%s)", reservation_id, reason)
        self._spawn(self._forget(gone), f"csms-forget-reservation-{reservation_id}")

    async def _forget(self, gone: Reservation) -> None:
        try:
            await self._storage.run(_delete_job(gone))
        except StorageError as exc:
            log.error("reservation %d not deleted: %s", gone.reservation_id, exc)

    async def restore(self, dropped: Callable[[int, ReservationEnd], None] | None = None) -> None:
        """Re-make the stored reservations that have not expired (at start, before the link).

        One the charge point no longer takes (expired, its connector gone, occupied) is
        deleted and, when given, ``dropped(reservation_id, EXPIRED or TERMINATED)`` is told
        (2.0.1 reports it). A database that cannot be read is logged: none is restored.
        """
        try:
            stored = await self._storage.run(_load_job)
        except StorageError as exc:
            log.error("reservations unreadable, none restored: %s", exc)
            return
        for reservation in stored:
            rid = reservation.reservation_id
            expired = reservation.expiry <= self._clock()
            problem = "expired" if expired else self._refusal(reservation.connector_id)
            if problem is None:
                answer = await self._control.reserve(
                    reservation.connector_id,
                    reservation.id_tag,
                    reservation.parent_id,
                    reservation.expiry,
                    rid,
                )
                problem = None if answer is Answer.ACCEPTED else f"the charge point said {answer}"
            if problem is None:
                self._held[rid] = reservation
                log.info("reservation %d restored until %s", rid, reservation.expiry)
            else:
                log.info("stored reservation %d dropped: %s", rid, problem)
                await self._forget(reservation)
                if dropped is not None:
                    dropped(rid, ReservationEnd.EXPIRED if expired else ReservationEnd.TERMINATED)


# --- storage jobs (run on the storage thread) -----------------------------------------------


def _save_job(reservation: Reservation) -> Callable[[sqlite3.Connection], None]:
    def job(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO reservations (reservation_id, connector_id, id_tag, parent_id, expiry)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (reservation_id) DO UPDATE SET"
            " connector_id = excluded.connector_id, id_tag = excluded.id_tag,"
            " parent_id = excluded.parent_id, expiry = excluded.expiry",
            _row(reservation),
        )

    return job


def _delete_job(reservation: Reservation) -> Callable[[sqlite3.Connection], None]:
    """Delete exactly this reservation: a newer one with the same id is left alone."""

    def job(conn: sqlite3.Connection) -> None:
        conn.execute(
            "DELETE FROM reservations WHERE reservation_id = ? AND connector_id = ?"
            " AND id_tag = ? AND parent_id IS ? AND expiry = ?",
            _row(reservation),
        )

    return job


def _row(r: Reservation) -> tuple[int, int, str, str | None, str]:
    return (r.reservation_id, r.connector_id, r.id_tag, r.parent_id, r.expiry.isoformat())


def _load_job(conn: sqlite3.Connection) -> list[Reservation]:
    rows = conn.execute(
        "SELECT reservation_id, connector_id, id_tag, parent_id, expiry FROM reservations"
        " ORDER BY reservation_id"
    ).fetchall()
    return [
        Reservation(rid, cid, tag, parent, dt.datetime.fromisoformat(expiry))
        for rid, cid, tag, parent, expiry in rows
    ]
