"""Starting again after a crash: interrupted transactions closed once with the right reason,
meter reading and time; a corrupt database kept aside and its readable rows salvaged; an
unusable state directory run from memory with the charge point Faulted; a database that
fails while running faulted, probed and written afresh once it works."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.connector_types import StopReason
from controller.domain import Transaction
from controller.journal import TransactionJournal
from controller.outbox import Outbox, OutboxEntry
from controller.recovery import StorageWatch, open_state, recover_transactions
from controller.storage import DB_NAME, Storage, StorageError
from drivers.base import MeterReading
from drivers.errors import FaultKind, PermanentFault
from tests.support.disk_writes import storage_thread, written_by
from tests.support.wait import until

T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def reading(energy_wh: float) -> MeterReading:
    return MeterReading((230.0,) * 3, (0.0,) * 3, (0.0,) * 3, 0.0, energy_wh, 50.0, 0.0)


class Meter:
    def __init__(self, energy_wh: float | None) -> None:
        self.energy_wh = energy_wh

    async def read(self) -> MeterReading:
        if self.energy_wh is None:
            raise PermanentFault(FaultKind.METER_OFFLINE, "no answer")
        return reading(self.energy_wh)

    async def close(self) -> None:
        return None


class Link:
    """Records what recovery tells the CSMS side."""

    def __init__(self) -> None:
        self.stopped: list[Transaction] = []

    def transaction_stopped(self, tx: Transaction) -> None:
        self.stopped.append(tx)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path / "state")
    yield store
    await store.close()


async def interrupted(
    storage: Storage, *, start_wh: float = 1000.0, last_wh: float = 1500.0, queued: str = "start"
) -> Transaction:
    """A transaction as a crash leaves it: recorded running, its last reading persisted,
    its StartTransaction queued (``start``), confirmed (``confirmed``), its Stop already
    queued (``stop``) or nothing queued (``none``)."""
    journal = TransactionJournal(storage)
    tx = Transaction("tx-1", 1, "04A1B2C3", start_wh, T0)
    journal.started(tx)
    journal.reading(tx, last_wh, T0 + dt.timedelta(minutes=30))
    outbox = Outbox(storage, boot="crashed", protocol="1.6")
    if queued in ("start", "stop"):
        outbox.append(OutboxEntry(tx.local_id, "StartTransaction", {"meter_start": 1000}, False))
    if queued == "confirmed":
        row = OutboxEntry(tx.local_id, "StartTransaction", {}, False)
        outbox.append(row)
        outbox.delete(row, set_id=(tx.local_id, 42))
    if queued == "stop":
        outbox.append(OutboxEntry(tx.local_id, "StopTransaction", {"meter_stop": 1500}, True))
    await storage.run(lambda conn: None)
    return tx


async def recover(storage: Storage, meter: Meter, link: Link) -> list[Transaction]:
    journal = TransactionJournal(storage)
    closed = await recover_transactions(
        journal,
        Outbox(storage, protocol="1.6"),
        {1: meter},
        link,
        meter_timeout_s=1.0,
        protocol="1.6",
    )
    await storage.run(lambda conn: None)
    assert await journal.open_transactions() == []  # closed exactly once, on disk
    return closed


async def test_an_interrupted_transaction_stops_with_power_loss_at_the_meter_register(
    storage: Storage,
) -> None:
    await interrupted(storage)
    link = Link()
    [tx] = await recover(storage, Meter(1512.0), link)
    assert link.stopped == [tx]
    assert tx.stop_reason is StopReason.POWER_LOSS
    assert tx.meter_stop_wh == 1512.0  # what the car drew until the power went
    assert tx.stopped_at == T0 + dt.timedelta(minutes=30)  # the last moment it was seen
    assert tx.meter_start_wh == 1000.0 and tx.started_at == T0
    assert await recover(storage, Meter(1512.0), Link()) == []  # not twice


@pytest.mark.parametrize(
    ("register", "expected"),
    [(None, 1500.0), (900.0, 1500.0), (1499.0, 1500.0), (1500.0, 1500.0)],
    ids=["unreadable", "below-start", "below-last-reading", "equal"],
)
async def test_without_a_consistent_register_meter_stop_is_the_last_persisted_reading(
    storage: Storage, register: float | None, expected: float
) -> None:
    await interrupted(storage)
    link = Link()
    [tx] = await recover(storage, Meter(register), link)
    assert tx.meter_stop_wh == expected


async def test_a_reset_noted_before_the_crash_makes_it_a_reboot(storage: Storage) -> None:
    await interrupted(storage)
    TransactionJournal(storage).note_shutdown(StopReason.HARD_RESET)
    link = Link()
    [tx] = await recover(storage, Meter(1500.0), link)
    assert tx.stop_reason is StopReason.REBOOT
    await interrupted(storage)  # the note is used once: the next crash is a power loss
    [again] = await recover(storage, Meter(1500.0), Link())
    assert again.stop_reason is StopReason.POWER_LOSS


async def test_a_transaction_whose_stop_is_already_queued_is_not_stopped_again(
    storage: Storage,
) -> None:
    await interrupted(storage, queued="stop")
    link = Link()
    [tx] = await recover(storage, Meter(1500.0), link)
    assert link.stopped == []
    assert tx.local_id == "tx-1"


async def test_a_transaction_the_csms_never_heard_of_is_closed_silently(
    storage: Storage,
) -> None:
    await interrupted(storage, queued="none")
    link = Link()
    assert len(await recover(storage, Meter(1500.0), link)) == 1
    assert link.stopped == []


async def test_a_transaction_confirmed_before_the_crash_is_stopped(storage: Storage) -> None:
    await interrupted(storage, queued="confirmed")
    link = Link()
    [tx] = await recover(storage, Meter(1600.0), link)
    assert link.stopped == [tx] and tx.meter_stop_wh == 1600.0


# --- opening the state database -----------------------------------------------------------


def fill(path: Path) -> None:
    """A database with an outbox message, a setting and an index."""

    async def make() -> None:
        store = await Storage.open(path.parent)
        try:
            await store.save_setting("ocpp16", "HeartbeatInterval", "123")
            outbox = Outbox(store, boot="old", protocol="1.6")
            for n in range(50):
                await outbox.append(OutboxEntry(f"tx-{n}", "MeterValues", {"n": n}, False))
        finally:
            await store.close()

    asyncio.run(make())


def break_index(path: Path) -> None:
    """Overwrite the first page of the outbox's index: the tables stay readable."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'outbox_local_id'"
        ).fetchone()[0]
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 16)


async def test_a_corrupt_database_is_kept_aside_and_its_readable_rows_salvaged(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / DB_NAME
    await asyncio.to_thread(fill, path)
    await asyncio.to_thread(break_index, path)
    broken = path.read_bytes()
    storage, problem = await open_state(state, lambda: T0)
    try:
        assert problem is not None and not problem.in_memory
        assert problem.kept_as == state / f"{DB_NAME}.corrupt-20260501T120000.000000Z"
        assert problem.kept_as.read_bytes() == broken  # kept as it was, for inspection
        assert problem.salvaged_rows >= 51
        assert (await storage.load_settings("ocpp16"))["HeartbeatInterval"] == "123"
        assert await Outbox(storage, protocol="1.6").size() == 50
    finally:
        await storage.close()


async def test_a_file_that_is_no_database_is_moved_aside_and_a_fresh_one_started(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"this is not a database" * 100)
    storage, problem = await open_state(state, lambda: T0)
    try:
        assert problem is not None and problem.kept_as is not None
        assert problem.kept_as.read_bytes().startswith(b"this is not")
        assert problem.salvaged_rows == 0 and not problem.in_memory
        await storage.save_setting("x", "y", "z")  # the fresh one works
        assert (state / DB_NAME).exists()
    finally:
        await storage.close()


async def test_a_state_directory_that_cannot_exist_runs_from_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    storage, problem = await open_state(blocker / "state")
    try:
        assert problem is not None and problem.in_memory and problem.kept_as is None
        await storage.save_setting("x", "y", "z")
        assert await storage.load_settings("x") == {"y": "z"}
    finally:
        await storage.close()


async def test_a_database_from_a_newer_picharge_is_left_alone_and_memory_used(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / DB_NAME) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    storage, problem = await open_state(state)
    try:
        assert problem is not None and problem.in_memory and "newer" in problem.detail
        assert [p.name for p in state.iterdir() if "corrupt" in p.name] == []
    finally:
        await storage.close()


# --- a database failing while running -----------------------------------------------------


async def test_a_failing_database_faults_until_a_probe_write_works_and_resyncs(
    storage: Storage,
) -> None:
    faults: list[bool] = []
    resynced: list[int] = []

    async def resync() -> None:
        resynced.append(len(faults))

    watch = StorageWatch(storage, faults.append, resyncs=[resync], probe_interval_s=0.05)
    storage.on_failure = watch.failed
    task = asyncio.create_task(watch.run())
    try:
        await storage.run(lambda conn: conn.execute("PRAGMA query_only = 1"))
        with pytest.raises(StorageError, match="readonly"):
            await storage.save_setting("a", "b", "c")
        assert faults == [True] and watch.faulted
        # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.2)
        assert faults == [True] and resynced == []  # still read-only: still faulted
        await storage.run(lambda conn: conn.execute("PRAGMA query_only = 0"))
        await until(lambda: not watch.faulted, what="the watch to see the database writable")
        assert faults == [True, False] and resynced == [1]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_charging_session_writes_its_reading_about_once_a_minute(storage: Storage) -> None:
    """SD-card wear (issue 12 §6): ten minutes at 11 kW, one meter sample a second, cost
    well under 1 MB an hour; the record stays at most a minute and 500 Wh behind, and the
    meter's register is the truth at a restart anyway."""
    journal = TransactionJournal(storage)
    tx = Transaction("tx-1", 1, "04A1B2C3", 1000.0, T0)
    journal.started(tx)
    await journal.committed(tx.local_id)
    tid = await storage_thread(storage)
    before = written_by(tid)
    seconds = 600
    for second in range(seconds + 1):
        journal.reading(tx, 1000.0 + 11_000 * second / 3600, T0 + dt.timedelta(seconds=second))
        await storage.run(lambda conn: None)  # the write (if any) is done: none is skipped
    per_hour = (written_by(tid) - before) * 3600 / seconds
    (entry,) = await journal.open_transactions()
    assert per_hour < 1_000_000, f"{per_hour / 1000:.0f} kB an hour"
    assert entry.last_meter_at >= T0 + dt.timedelta(seconds=seconds - 60)
    assert entry.last_meter_wh >= 1000.0 + 11_000 * seconds / 3600 - 500
