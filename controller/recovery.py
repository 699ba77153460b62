"""Starting again after a crash or a power cut, and living with a failing state database.

Power-loss recovery (:func:`recover_transactions`, at every start, before the supervisor
runs): a transaction the journal (:mod:`controller.journal`) still records as running was
interrupted. It is closed with StopTransaction reason ``PowerLoss``, or ``Reboot`` when the
last run noted that it was stopping its transactions itself (a reset or a shutdown) and died
before that was recorded. Its meterStop is the meter's register read now when it is readable
and consistent (at least meterStart and at least the last reading persisted while it ran:
the contacts drop with the power, so the register has not moved since, and on a controller
crash it includes what the car drew until the restart opened the contactor), else the last
persisted reading. Its stop time is that of the last persisted reading, the last moment it
was known to run. A transaction whose StopTransaction is already in the outbox is only
marked closed (the crash fell between queueing the Stop and recording it); one the CSMS was
never going to hear of (its start never reached the outbox) is closed without a message.
One whose start only another OCPP version's CSMS has (the charger was switched from 1.6 to
2.0.1 or back, or to standalone, since) gets that version's end message queued under that
version (:data:`controller.csms.registry.END_MESSAGES`, handed in by the composition root),
so that CSMS hears the end when that version runs again.
Nothing here touches a connector: each state machine starts afresh and learns the CP state,
cable and faults from the hardware, so the contactor stays open until the machine decides
otherwise (the car is in C, and a new session is authorized).

A corrupt state database (:func:`open_state`): the file (with its ``-wal`` and ``-shm``) is
renamed ``picharge.db.corrupt-<UTC time>`` and kept for inspection, never deleted; whatever
rows can still be read from a copy of it (outbox, open transactions, settings, every other
table) are salvaged into a fresh database, and the charger keeps working. The alternative,
staying Faulted until someone repairs the SD card, would leave a home charger unusable for a
fault that usually cost nothing but a few lost rows; the loss is not silent (an error in the
log naming the kept file and what was salvaged). A state directory that cannot hold a
database at all (read-only, missing permissions, a schema from a newer picharge) gives an
in-memory database and the connectors Faulted with InternalError: nothing could be recorded,
so nothing may charge. The charger restarts itself once the directory is usable again.

A database that fails while running (a full disk, an I/O error, an unwritable file:
:class:`StorageWatch`): the first failed job reports it, every connector goes Faulted with
InternalError (the contactor opens), and a probe retries every :data:`PROBE_INTERVAL_S`;
when a write works again, the transaction records and the outbox are written afresh from
memory (which stayed complete: messages are sent from memory meanwhile) and the fault
clears. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.connector_types import StopReason
from controller.domain import CsmsLink, ResetKind, Transaction, utc_now
from controller.journal import JournalEntry, TransactionJournal
from controller.outbox import EndMessage, Outbox, Told
from controller.storage import DB_NAME, Storage, StorageCorrupt, StorageError
from controller.supervisor import Supervisor
from drivers.base import EnergyMeter
from drivers.errors import DriverError, FaultKind

log = logging.getLogger(__name__)

#: How often a failed database is tried again.
PROBE_INTERVAL_S = 10.0
#: How long recovery waits for a meter reading at start.
METER_TIMEOUT_S = 5.0


# --- opening the state database -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateProblem:
    """What went wrong opening the state database, and what was done about it."""

    detail: str
    kept_as: Path | None = None  # the corrupt file, renamed
    in_memory: bool = False  # nothing is kept: the charge point must not charge
    salvaged_rows: int = 0


async def open_state(
    state_dir: Path, clock: Callable[[], dt.datetime] = utc_now
) -> tuple[Storage, StateProblem | None]:
    """The state database of ``state_dir``; see the module docstring for what happens when
    it is corrupt or cannot be used. Never raises for a database problem."""
    try:
        return await Storage.open(state_dir), None
    except StorageCorrupt as exc:
        corrupt = exc
    except (StorageError, sqlite3.Error, OSError) as exc:
        return await _in_memory(state_dir, str(exc))
    path = state_dir / DB_NAME
    try:
        kept = await asyncio.to_thread(_move_aside, path, clock())
    except OSError as exc:
        return await _in_memory(state_dir, f"{corrupt}; cannot move it aside: {exc}")
    try:
        storage = await Storage.open(state_dir)
    except (StorageError, sqlite3.Error, OSError) as exc:
        return await _in_memory(state_dir, f"{corrupt}; a fresh database failed too: {exc}")
    salvaged = await storage.run(lambda conn: _salvage(kept, conn))
    log.error(
        "%s; kept as %s for inspection, a fresh database started with %d row(s) salvaged "
        "from it (anything else in it is lost)",
        corrupt,
        kept,
        salvaged,
    )
    return storage, StateProblem(str(corrupt), kept_as=kept, salvaged_rows=salvaged)


async def _in_memory(state_dir: Path, detail: str) -> tuple[Storage, StateProblem]:
    log.error(
        "state database unusable: %s. Running on a database in memory; every connector "
        "stays Faulted (InternalError) until the state directory works (then it restarts)",
        detail,
    )
    return await Storage.open_in_memory(state_dir), StateProblem(detail, in_memory=True)


def _move_aside(path: Path, now: dt.datetime) -> Path:
    """Rename ``path`` (and its -wal, -shm) to ``<name>.corrupt-<UTC time>``; never deletes."""
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a crash leaves it in place
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(kept.with_name(kept.name + suffix))
    return kept


def _salvage(kept: Path, fresh: sqlite3.Connection) -> int:
    """Copy every readable row of every table the fresh database has from a copy of the
    corrupt one (the kept file is never opened itself: opening writes to it). Storage thread."""
    copied = 0
    with tempfile.TemporaryDirectory(prefix="picharge-salvage-") as tmp:
        copy = Path(tmp) / DB_NAME
        for suffix in ("", "-wal"):
            source = kept.with_name(kept.name + suffix)
            if source.exists():
                shutil.copyfile(source, copy.with_name(copy.name + suffix))
        try:
            old = sqlite3.connect(copy, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("nothing salvaged from %s: %s", kept, exc)
            return 0
        try:
            tables = [
                str(row[0])
                for row in fresh.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            ]
            for table in tables:
                copied += _salvage_table(old, fresh, table)
        finally:
            old.close()
    return copied


def _salvage_table(old: sqlite3.Connection, fresh: sqlite3.Connection, table: str) -> int:
    try:
        new_columns = [str(r[1]) for r in fresh.execute(f'PRAGMA table_info("{table}")')]
        old_columns = {str(r[1]) for r in old.execute(f'PRAGMA table_info("{table}")')}
        columns = [c for c in new_columns if c in old_columns]
        if not columns:
            return 0
        names = ", ".join(f'"{c}"' for c in columns)
        rows = old.execute(f'SELECT {names} FROM "{table}"').fetchall()
    except sqlite3.Error as exc:
        log.warning("salvage: table %s unreadable: %s", table, exc)
        return 0
    marks = ", ".join("?" for _ in columns)
    fresh.execute("BEGIN IMMEDIATE")
    try:
        before = fresh.total_changes
        fresh.executemany(f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({marks})', rows)
        fresh.execute("COMMIT")
    except sqlite3.Error as exc:
        fresh.execute("ROLLBACK")
        log.warning("salvage: rows of %s not restored: %s", table, exc)
        return 0
    return fresh.total_changes - before


# --- power-loss recovery ------------------------------------------------------------------


async def _register(meter: EnergyMeter | None, timeout_s: float) -> float | None:
    if meter is None:
        return None
    try:
        async with asyncio.timeout(timeout_s):
            return (await meter.read()).energy_import_wh
    except (DriverError, TimeoutError) as exc:
        log.warning("meter unreadable at start (%s): using the last persisted reading", exc)
        return None


def _meter_stop(entry: JournalEntry, register: float | None) -> float:
    floor = max(entry.meter_start_wh, entry.last_meter_wh)
    if register is None:
        return floor
    if register < floor:
        log.warning(
            "transaction %s: meter reads %.0f Wh, below the %.0f Wh recorded: using the "
            "record (was the meter replaced?)",
            entry.local_id,
            register,
            floor,
        )
        return floor
    return register


async def recover_transactions(
    journal: TransactionJournal,
    outbox: Outbox,
    meters: Mapping[int, EnergyMeter],
    link: CsmsLink | None,
    *,
    meter_timeout_s: float = METER_TIMEOUT_S,
    protocol: str | None = None,
    end_messages: Mapping[str, EndMessage] | None = None,
) -> list[Transaction]:
    """Close every transaction the last run left open (see the module docstring); returns
    them as closed. Call once at start, before the supervisor runs.

    ``protocol`` is the OCPP version ``link`` speaks (None: standalone); a transaction whose
    start another version's CSMS has is ended with that version's ``end_messages`` entry,
    queued under that version (issue 14: nothing is lost when the charger is switched)."""
    end_messages = end_messages or {}
    note = await journal.take_shutdown_note()
    reason = StopReason.REBOOT if note is not None else StopReason.POWER_LOSS
    closed = []
    for entry in await journal.open_transactions():
        register = await _register(meters.get(entry.connector_id), meter_timeout_s)
        tx = Transaction(
            local_id=entry.local_id,
            connector_id=entry.connector_id,
            id_tag=entry.id_tag,
            meter_start_wh=entry.meter_start_wh,
            started_at=entry.started_at,
            parent_id=entry.parent_id,
            meter_stop_wh=_meter_stop(entry, register),
            stopped_at=max(entry.last_meter_at, entry.started_at),
            stop_reason=reason,
        )
        told, teller = await outbox.told_by(entry.local_id)
        note_text = {
            Told.STARTED: "",
            Told.ENDED: "; its StopTransaction was already queued",
            Told.NOTHING: "; the CSMS never heard of it",
        }[told]
        if told is Told.STARTED:
            if teller == protocol or teller is None:
                if link is not None:
                    link.transaction_stopped(tx)
            else:
                note_text = await _end_elsewhere(outbox, tx, teller, end_messages)
        journal.stopped(tx)
        closed.append(tx)
        log.warning(
            "connector %d: transaction %s of %s was interrupted: closed (%s) at %.0f Wh%s",
            tx.connector_id,
            tx.local_id,
            tx.id_tag,
            reason,
            tx.meter_stop_wh,
            note_text,
        )
    return closed


async def _end_elsewhere(
    outbox: Outbox, tx: Transaction, teller: str, end_messages: Mapping[str, EndMessage]
) -> str:
    """Queue the end of ``tx`` under ``teller``, the OCPP version whose CSMS alone knows its
    start (the charger was switched to another version or to standalone since): that CSMS
    hears the end when that version runs again. Returns what the log line adds."""
    build = end_messages.get(teller)
    if build is None:
        log.error(
            "transaction %s was started under OCPP %s, which this picharge cannot end: "
            "no end message queued for it (bill it from `picharge outbox`)",
            tx.local_id,
            teller,
        )
        return f"; started under OCPP {teller}, its end NOT queued"
    entry = await build(tx, outbox.storage)
    await Outbox(outbox.storage, outbox.boot, protocol=teller).append(entry)
    return f"; started under OCPP {teller}: its end waits in the outbox for {teller}"


# --- a database that fails while running --------------------------------------------------


class StorageWatch:
    """Faults every connector while the state database fails; clears once it works again.

    ``set_fault(active)`` raises or clears InternalError on every connector. ``resyncs`` run
    after a successful probe, before the fault clears (journal and outbox written afresh).
    With ``problem.in_memory`` the fault stays; ``restart()`` is called once the real state
    directory can be opened.
    """

    def __init__(
        self,
        storage: Storage,
        set_fault: Callable[[bool], None],
        *,
        resyncs: Iterable[Callable[[], Awaitable[None]]] = (),
        problem: StateProblem | None = None,
        state_dir: Path | None = None,
        restart: Callable[[], None] | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._storage = storage
        self._set_fault = set_fault
        self._resyncs = list(resyncs)
        self._in_memory = problem is not None and problem.in_memory
        self._state_dir = state_dir
        self._restart = restart
        self.probe_interval_s = probe_interval_s
        self.faulted = False
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        if self._in_memory:
            self._raise(problem.detail if problem is not None else "in memory")

    def failed(self, error: StorageError) -> None:
        """``Storage.on_failure``: a job failed (loop thread)."""
        self.last_error = str(error)
        if not self.faulted:
            self._raise(str(error))

    def _raise(self, detail: str) -> None:
        log.error("state database failing (%s): connectors Faulted (InternalError)", detail)
        self.faulted = True
        self._set_fault(True)
        self._wake.set()

    async def run(self) -> None:
        """Probe while faulted; until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.faulted:
                await asyncio.sleep(self.probe_interval_s)
                if self._in_memory:
                    await self._probe_state_dir()
                elif await self._probe():
                    log.warning("state database works again: InternalError cleared")
                    self.faulted = False
                    self._set_fault(False)

    async def _probe(self) -> bool:
        def job(conn: sqlite3.Connection) -> None:
            check = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise sqlite3.DatabaseError(f"quick_check: {'; '.join(map(str, check[:3]))}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO settings (namespace, key, value) VALUES ('recovery', 'probe', ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                    (utc_now().isoformat(),),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        try:
            await self._storage.run(job)
            for resync in self._resyncs:
                await resync()
        except StorageError as exc:
            log.info("state database still failing: %s", exc)
            return False
        return True

    async def _probe_state_dir(self) -> None:
        if self._state_dir is None or self._restart is None:
            return
        try:
            storage = await Storage.open(self._state_dir)
        except (StorageError, sqlite3.Error, OSError) as exc:
            log.info("state directory still unusable: %s", exc)
            return
        await storage.close()
        log.warning("state directory %s usable again: restarting to use it", self._state_dir)
        self._restart()
        self._restart = None


# --- wiring -------------------------------------------------------------------------------


@dataclass
class Durability:
    """The journal, the watch and what recovery closed; built by :func:`start_durability`."""

    journal: TransactionJournal
    watch: StorageWatch
    recovered: list[Transaction]

    async def run(self) -> None:
        await self.watch.run()


async def start_durability(
    storage: Storage,
    problem: StateProblem | None,
    supervisor: Supervisor,
    *,
    state_dir: Path,
    resync_link: Callable[[], Awaitable[None]] | None = None,
    protocol: str | None = None,
    end_messages: Mapping[str, EndMessage] | None = None,
) -> Durability:
    """Attach a journal to ``supervisor``, close what the last run left open, and watch the
    database. Call after the supervisor's link is set, before it runs."""
    journal = TransactionJournal(storage)
    supervisor.journal = journal

    def running() -> list[tuple[Transaction, float]]:
        return [
            (rt.transaction, rt.reading.energy_import_wh if rt.reading else 0.0)
            for rt in supervisor.connectors.values()
            if rt.transaction is not None and rt.transaction.running
        ]

    async def resync_journal() -> None:
        await journal.resync(running())

    def restart() -> None:
        supervisor.restart_requested = ResetKind.SOFT
        supervisor.request_stop()

    resyncs: list[Callable[[], Awaitable[None]]] = [resync_journal]
    if resync_link is not None:
        resyncs.append(resync_link)
    watch = StorageWatch(
        storage,
        functools.partial(supervisor.set_fault, FaultKind.INTERNAL_ERROR),
        resyncs=resyncs,
        problem=problem,
        state_dir=state_dir,
        restart=restart,
    )
    storage.on_failure = watch.failed
    meters = {rt.hw.id: rt.hw.meter for rt in supervisor.connectors.values()}
    try:
        recovered = await recover_transactions(
            journal,
            Outbox(storage, protocol=protocol or ""),
            meters,
            supervisor.link,
            protocol=protocol,
            end_messages=end_messages,
        )
    except StorageError as exc:
        log.error("power-loss recovery could not read the journal: %s", exc)
        recovered = []
    return Durability(journal, watch, recovered)
