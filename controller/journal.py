"""The transaction journal: every transaction recorded in the state database while it runs.

A charger must be able to close, after a power cut, the transaction that was running when
the power went: with the right meter reading, and exactly once. The supervisor records

- the start (:meth:`TransactionJournal.started`), before the StartTransaction message is
  queued and before the contactor may close (:meth:`TransactionJournal.committed` is the
  gate the supervisor awaits),
- the meter reading while it runs (:meth:`TransactionJournal.reading`, at most once per
  meter sample and only when the energy moved by :data:`READING_STEP_WH`, or every
  :data:`READING_REFRESH_S` regardless: about once a minute, for the SD card's sake),
- the stop (:meth:`TransactionJournal.stopped`), after the StopTransaction message is
  queued: a crash between the two leaves a running record whose stop is already in the
  outbox, which :mod:`controller.recovery` recognises; the opposite order could lose it,
- a note when the controller itself stops transactions (reset, shutdown): a crash before
  those stops were recorded is then a Reboot, not a PowerLoss.

Writes are submitted to the storage thread at once (in call order, see
:meth:`controller.storage.Storage.submit`) so the supervisor's synchronous command path
never waits for the SD card; a failed write reaches ``Storage.on_failure``, which faults
the charge point (:mod:`controller.recovery`). Finished records are kept for the last
:data:`KEEP_FINISHED` transactions, as a local record.

Cost: one reading update is one small SQLite transaction with ``synchronous=FULL`` (one
fsync): about 0.2 ms on the development VM (``bench/fault_trials.py`` prints the figure);
an SD card takes a few ms. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from controller.connector_types import StopReason
from controller.domain import Transaction, utc_now
from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

#: A reading is written when the energy moved at least this much since the last one ...
#: The meter's own register is the truth at a restart (controller.recovery reads it); the
#: written reading is the fallback for a meter that cannot be read then, and the moment
#: the transaction was last seen alive (its stop time after a power cut). Each write is a
#: committed SQLite transaction: a WAL page and its checkpoint, 8-12 kB on the SD card.
#: Every 1 Wh (as before issue 12 §6) was one write a second while charging: 30-40 MB an
#: hour; this step and the refresh keep it to about one write a minute (docs/benchmarks.md).
READING_STEP_WH = 500.0
#: ... or when this long passed: the stop time after a power cut is at most this early.
READING_REFRESH_S = 60.0
#: Finished transactions kept in the database (the oldest go first). They are the session
#: history of the web page and its CSV export (billing a company car, a household): ten
#: thousand is about 27 years of one session a day, some 2.5 MB of database.
KEEP_FINISHED = 10_000
#: Where the shutdown note lives (``settings`` table).
NOTE_NAMESPACE, NOTE_KEY = "recovery", "shutdown_reason"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A transaction as recorded; ``last_meter_*`` is the last reading written while it ran."""

    local_id: str
    connector_id: int
    id_tag: str
    parent_id: str | None
    meter_start_wh: float
    started_at: dt.datetime
    last_meter_wh: float
    last_meter_at: dt.datetime


def _text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class TransactionJournal:
    """The ``transactions`` table (see the module docstring). Loop thread only."""

    def __init__(self, storage: Storage, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._storage = storage
        self._clock = clock
        self._starts: dict[str, asyncio.Future[None]] = {}
        self._last: dict[str, tuple[float, dt.datetime]] = {}  # written reading per tx
        self._pending_reading: set[str] = set()

    # --- writes (submitted at once, in call order) ---------------------------------------

    def started(self, tx: Transaction) -> None:
        row = (
            tx.local_id,
            tx.connector_id,
            tx.id_tag,
            tx.parent_id,
            tx.meter_start_wh,
            _text(tx.started_at),
            tx.meter_start_wh,
            _text(tx.started_at),
        )

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO transactions (local_id, connector_id, id_tag,"
                    " parent_id, meter_start_wh, started_at, last_meter_wh, last_meter_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )

        self._last[tx.local_id] = (tx.meter_start_wh, tx.started_at)
        self._starts[tx.local_id] = self._submit(job, f"start of {tx.local_id}")

    async def committed(self, local_id: str) -> bool:
        """Whether the start of ``local_id`` is on disk (waits for it, and for every write
        submitted before this call, such as the StartTransaction queued with it)."""
        start = self._starts.get(local_id)
        if start is None:
            return True  # not recorded here (a transaction from before this journal)
        try:
            if not start.done():
                await asyncio.shield(start)
                await self._storage.run(lambda conn: None)  # the writes queued behind it
            else:
                start.result()
        except StorageError:
            return False
        return True

    def reading(self, tx: Transaction, energy_wh: float, at: dt.datetime | None = None) -> None:
        """The meter read ``energy_wh`` during ``tx``; written when worth it (see above)."""
        if tx.local_id in self._pending_reading or not tx.running:
            return
        moment = at or self._clock()
        last = self._last.get(tx.local_id)
        if last is not None:
            moved = abs(energy_wh - last[0]) >= READING_STEP_WH
            stale = (moment - last[1]).total_seconds() >= READING_REFRESH_S
            if not (moved or stale):
                return
        values = (energy_wh, _text(moment), tx.local_id)

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "UPDATE transactions SET last_meter_wh = ?, last_meter_at = ?"
                    " WHERE local_id = ? AND stopped_at IS NULL",
                    values,
                )

        self._last[tx.local_id] = (energy_wh, moment)
        self._pending_reading.add(tx.local_id)
        future = self._submit(job, f"reading of {tx.local_id}")
        future.add_done_callback(lambda _: self._pending_reading.discard(tx.local_id))

    def stopped(self, tx: Transaction) -> None:
        stop = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.meter_start_wh
        stopped_at = tx.stopped_at or self._clock()
        reason = tx.stop_reason.value if tx.stop_reason is not None else None
        values = (stop, _text(stopped_at), stop, _text(stopped_at), reason, tx.local_id)

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "UPDATE transactions SET last_meter_wh = ?, last_meter_at = ?,"
                    " meter_stop_wh = ?, stopped_at = ?, stop_reason = ? WHERE local_id = ?",
                    values,
                )
                conn.execute(
                    "DELETE FROM transactions WHERE stopped_at IS NOT NULL AND local_id NOT IN"
                    " (SELECT local_id FROM transactions WHERE stopped_at IS NOT NULL"
                    " ORDER BY stopped_at DESC LIMIT ?)",
                    (KEEP_FINISHED,),
                )

        self._starts.pop(tx.local_id, None)
        self._last.pop(tx.local_id, None)
        self._submit(job, f"stop of {tx.local_id}")

    def note_shutdown(self, reason: StopReason) -> None:
        """The controller is stopping its transactions itself (reset, shutdown)."""

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO settings (namespace, key, value) VALUES (?, ?, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                    (NOTE_NAMESPACE, NOTE_KEY, reason.value),
                )

        self._submit(job, "shutdown note")

    def _submit(self, job: Callable[[sqlite3.Connection], None], what: str) -> asyncio.Future[None]:
        try:
            future = self._storage.submit(job)
        except StorageError as exc:  # closed: the app is going down
            log.error("journal: %s not recorded: %s", what, exc)
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            failed.exception()  # retrieved: nobody may await it
            return failed

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("journal: %s not recorded: %s", what, f.exception())

        future.add_done_callback(done)
        return future

    # --- reads and recovery -----------------------------------------------------------------

    async def open_transactions(self) -> list[JournalEntry]:
        """Transactions recorded as running (after a crash: those the crash interrupted)."""

        def job(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            return conn.execute(
                "SELECT local_id, connector_id, id_tag, parent_id, meter_start_wh, started_at,"
                " last_meter_wh, last_meter_at FROM transactions WHERE stopped_at IS NULL"
                " ORDER BY started_at"
            ).fetchall()

        return [
            JournalEntry(
                local_id=str(row[0]),
                connector_id=int(str(row[1])),
                id_tag=str(row[2]),
                parent_id=None if row[3] is None else str(row[3]),
                meter_start_wh=float(str(row[4])),
                started_at=_parse(str(row[5])),
                last_meter_wh=float(str(row[6])),
                last_meter_at=_parse(str(row[7])),
            )
            for row in await self._storage.run(job)
        ]

    async def take_shutdown_note(self) -> StopReason | None:
        """The note of an orderly stop from the last run, removed as it is read."""

        def job(conn: sqlite3.Connection) -> str | None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT value FROM settings WHERE namespace = ? AND key = ?",
                    (NOTE_NAMESPACE, NOTE_KEY),
                ).fetchone()
                conn.execute(
                    "DELETE FROM settings WHERE namespace = ? AND key = ?",
                    (NOTE_NAMESPACE, NOTE_KEY),
                )
            return None if row is None else str(row[0])

        value = await self._storage.run(job)
        try:
            return None if value is None else StopReason(value)
        except ValueError:
            return StopReason.REBOOT

    async def finished(self, limit: int = 20) -> list[tuple[str, float, float, str | None]]:
        """The last finished transactions: (local id, meter start, meter stop, reason)."""

        def job(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            return conn.execute(
                "SELECT local_id, meter_start_wh, meter_stop_wh, stop_reason FROM transactions"
                " WHERE stopped_at IS NOT NULL ORDER BY stopped_at DESC LIMIT ?",
                (limit,),
            ).fetchall()

        return [
            (str(r[0]), float(str(r[1])), float(str(r[2])), None if r[3] is None else str(r[3]))
            for r in await self._storage.run(job)
        ]

    async def resync(self, running: Iterable[tuple[Transaction, float]]) -> None:
        """Record the running transactions again, each with its latest meter reading (the
        database failed and works again: memory is the truth)."""
        for tx, energy_wh in running:
            self.started(tx)
            self._last.pop(tx.local_id, None)
            self.reading(tx, energy_wh)
        await self._storage.run(lambda conn: None)
