"""The durable transaction queue: every StartTransaction, StopTransaction and transaction
MeterValues is in the state database before it is sent, leaves it only once the CSMS
answered, comes back in order after a restart with the CSMS's transaction ids, and under a
long outage only the oldest MeterValues are thinned."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.csms.calls import CallFailed
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from controller.outbox import Outbox, OutboxEntry, Told
from controller.storage import Storage
from tests.support.wait import until


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path / "state")
    yield store
    await store.close()


@dataclass(frozen=True)
class StartAnswer:
    transaction_id: int


class FakeCsms:
    """Answers transaction messages like a CSMS; records (kind, transaction id, body)."""

    def __init__(self) -> None:
        self.sent: list[tuple[TxKind, int | None, dict[str, Any]]] = []
        self.ids = itertools.count(100)
        self.refuse = 0  # answer this many calls with a CALLERROR
        self.gate: asyncio.Event | None = None  # hold every answer until set
        self.hold_after: int | None = None  # answer this many, then never again
        self.waiting: TxMessage | None = None  # the last message handed to send()

    async def send(self, message: TxMessage, transaction_id: int | None) -> Any:
        self.waiting = message
        if self.gate is not None:
            await self.gate.wait()
        if self.hold_after is not None and len(self.sent) >= self.hold_after:
            await asyncio.Event().wait()
        if self.refuse:
            self.refuse -= 1
            raise CallFailed("InternalError")
        self.sent.append((message.kind, transaction_id, dict(message.body)))
        return StartAnswer(next(self.ids)) if message.kind is TxKind.START else object()

    async def confirmed(self, message: TxMessage, answer: Any) -> None:
        return None


def start(local_id: str, n: int = 0) -> TxMessage:
    return TxMessage(TxKind.START, local_id, {"connector_id": 1, "meter_start": n})


def meter(local_id: str, n: int) -> TxMessage:
    return TxMessage(TxKind.METER, local_id, {"connector_id": 1, "n": n})


def stop(local_id: str, n: int = 0) -> TxMessage:
    return TxMessage(TxKind.STOP, local_id, {"meter_stop": n})


async def rows(storage: Storage) -> list[tuple[str, str]]:
    return await storage.run(
        lambda conn: [
            (str(kind), str(local))
            for kind, local in conn.execute("SELECT kind, local_id FROM outbox ORDER BY seq")
        ]
    )


async def drain_until(
    queue: TransactionQueue,
    csms: FakeCsms,
    done: Callable[[], bool],
    timeout_s: float = 3.0,
) -> None:
    task = asyncio.create_task(
        queue.drain(csms.send, csms.confirmed, lambda: 3, lambda: 0.01), name="drain"
    )
    try:
        await until(done, timeout_s, what="the drain's effect")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_queued_messages_are_in_the_database_until_the_csms_answers(
    storage: Storage,
) -> None:
    queue = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    queue.put(start("a"))
    queue.put(meter("a", 1))
    queue.put(stop("a"))
    assert await rows(storage) == [
        ("StartTransaction", "a"),
        ("MeterValues", "a"),
        ("StopTransaction", "a"),
    ]
    csms = FakeCsms()
    await drain_until(queue, csms, lambda: not queue)
    assert [kind for kind, _, _ in csms.sent] == [
        TxKind.START,
        TxKind.METER,
        TxKind.STOP,
    ]
    assert await rows(storage) == []
    ids = await storage.run(lambda conn: conn.execute("SELECT * FROM outbox_ids").fetchall())
    assert ids == []  # the Stop's answer forgot the id with the row


async def test_a_message_is_not_sent_before_its_insert_committed(
    storage: Storage,
) -> None:
    queue = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    release = threading.Event()
    blocker = storage.submit(lambda conn: release.wait(5))  # the SD card is slow
    queue.put(start("a"))
    csms = FakeCsms()
    task = asyncio.create_task(queue.drain(csms.send, csms.confirmed, lambda: 3, lambda: 0.01))
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert csms.sent == []
    release.set()
    await blocker
    await until(lambda: csms.sent, what="the START to be sent")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [kind for kind, _, _ in csms.sent] == [TxKind.START]


async def test_after_a_restart_the_rest_goes_out_in_order_with_the_csms_id(
    storage: Storage,
) -> None:
    first = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await first.restore()
    for message in (start("a"), meter("a", 1), meter("a", 2), stop("a", 9), start("b")):
        first.put(message)
    csms = FakeCsms()
    csms.hold_after = 2
    await drain_until(first, csms, lambda: len(csms.sent) == 2)  # Start a and one MeterValues

    async def answered_rows_deleted() -> bool:
        left = [("MeterValues", "a"), ("StopTransaction", "a"), ("StartTransaction", "b")]
        return await rows(storage) == left

    await until(answered_rows_deleted)
    csms.hold_after = None
    # The power fails here. The next run loads what is left, and the id map.
    second = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    second.put(stop("b", 5))  # recovery queues a Stop before the adapter restores
    await second.restore()
    assert [(m.kind, m.local_id) for m in second.messages()] == [
        (TxKind.METER, "a"),
        (TxKind.STOP, "a"),
        (TxKind.START, "b"),
        (TxKind.STOP, "b"),
    ]
    await drain_until(second, csms, lambda: not second)
    assert [(kind, tid) for kind, tid, _ in csms.sent] == [
        (TxKind.START, None),
        (TxKind.METER, 100),
        (TxKind.METER, 100),
        (TxKind.STOP, 100),
        (TxKind.START, None),
        (TxKind.STOP, 101),
    ]
    assert await rows(storage) == []


async def test_a_start_confirmed_offline_keeps_its_id_across_a_restart(
    storage: Storage,
) -> None:
    first = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await first.restore()
    first.put(start("a"))
    csms = FakeCsms()
    await drain_until(first, csms, lambda: first.csms_id("a") is not None)

    async def start_row_deleted() -> bool:  # the delete and the id map commit together
        return await rows(storage) == []

    await until(start_row_deleted)
    second = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await second.restore()
    assert second.csms_id("a") == 100
    assert await Outbox(storage, protocol="1.6").told("a") is Told.STARTED
    second.put(stop("a"))
    assert await Outbox(storage, protocol="1.6").told("a") is Told.ENDED
    await drain_until(second, csms, lambda: not second)
    assert csms.sent[-1][:2] == (TxKind.STOP, 100)
    assert await Outbox(storage, protocol="1.6").told("a") is Told.NOTHING


async def test_a_refused_message_is_retried_and_stays_stored_meanwhile(
    storage: Storage,
) -> None:
    queue = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    queue.put(start("a"))
    csms = FakeCsms()
    csms.refuse = 2
    await drain_until(queue, csms, lambda: not queue)
    assert [kind for kind, _, _ in csms.sent] == [TxKind.START]
    assert await rows(storage) == []


async def test_thinning_keeps_start_and_stop_and_halves_the_oldest_meter_values(
    storage: Storage,
) -> None:
    queue = TransactionQueue(max_meter_values=8, store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    queue.put(start("a"))
    for n in range(30):
        queue.put(meter("a", n))
    queue.put(stop("a"))
    kept = queue.messages()
    meters = [m.body["n"] for m in kept if m.kind is TxKind.METER]
    assert kept[0].kind is TxKind.START and kept[-1].kind is TxKind.STOP
    assert len(meters) <= 8
    assert meters[-3:] == [27, 28, 29]  # the newest stay dense
    assert meters[0] <= 8  # the span of the outage is still covered from near its start
    assert meters == sorted(meters)

    async def mirrored() -> bool:  # the database mirrors the thinning
        return len(await rows(storage)) == len(kept)

    await until(mirrored)


async def test_a_message_being_sent_is_never_thinned(storage: Storage) -> None:
    queue = TransactionQueue(max_meter_values=2, store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    csms = FakeCsms()
    csms.gate = asyncio.Event()
    queue.put(start("a"))
    queue.put(meter("a", 0))
    task = asyncio.create_task(queue.drain(csms.send, csms.confirmed, lambda: 3, lambda: 0.01))
    await until(lambda: csms.waiting is not None)
    csms.gate.set()
    csms.gate = asyncio.Event()  # held: the next one waits
    await until(lambda: csms.waiting is not None and csms.waiting.kind is TxKind.METER)
    for n in range(1, 6):
        queue.put(meter("a", n))
    assert queue.messages()[0].body["n"] == 0
    csms.gate.set()
    csms.gate = None
    await until(lambda: not queue)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sent = [body.get("n") for kind, _, body in csms.sent if kind is TxKind.METER]
    assert sent[0] == 0 and sent[-1] == 5


async def test_an_unreadable_row_is_dropped_and_the_rest_still_goes(
    storage: Storage,
) -> None:
    outbox = Outbox(storage, boot="old", protocol="1.6")
    await outbox.append(OutboxEntry("a", "StartTransaction", {"meter_start": 0}, False))
    await outbox.append(OutboxEntry("a", "StopTransaction", {"meter_stop": 1}, True))
    await storage.run(
        lambda conn: conn.execute(
            "UPDATE outbox SET body = '{broken' WHERE kind = ?", ("StartTransaction",)
        )
    )
    queue = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    assert [m.kind for m in queue.messages()] == [TxKind.STOP]
    assert await rows(storage) == [("StopTransaction", "a")]


async def test_a_failed_insert_still_sends_from_memory_and_resync_stores_it_again(
    storage: Storage,
) -> None:
    failures: list[str] = []
    storage.on_failure = lambda exc: failures.append(str(exc))
    queue = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue.restore()
    await storage.run(lambda conn: conn.execute("PRAGMA query_only = 1"))  # unwritable
    queue.put(start("a"))
    queue.put(meter("a", 1))
    await until(lambda: failures, what="the failed insert to be reported")
    assert "readonly" in failures[0]
    await storage.run(lambda conn: conn.execute("PRAGMA query_only = 0"))
    await queue.resync()
    assert await rows(storage) == [("StartTransaction", "a"), ("MeterValues", "a")]
    csms = FakeCsms()
    await drain_until(queue, csms, lambda: not queue)
    assert [kind for kind, _, _ in csms.sent] == [TxKind.START, TxKind.METER]
    assert await rows(storage) == []


async def test_a_full_disk_fails_the_commit_and_rolls_back(storage: Storage) -> None:
    failures: list[str] = []
    storage.on_failure = lambda exc: failures.append(str(exc))
    outbox = Outbox(storage, protocol="1.6")
    pages = await storage.run(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await storage.run(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))
    with pytest.raises(Exception, match="full"):
        for n in range(200):
            await outbox.append(OutboxEntry("a", "MeterValues", {"n": n, "pad": "x" * 2000}, False))
    assert failures
    await storage.run(lambda conn: conn.execute("PRAGMA max_page_count = 1000000"))
    await outbox.append(OutboxEntry("a", "StopTransaction", {}, True))  # usable again
    assert not await storage.run(lambda conn: conn.in_transaction)


def test_the_outbox_tables_are_part_of_the_schema(tmp_path: Path) -> None:
    async def names() -> set[str]:
        store = await Storage.open(tmp_path)
        try:
            return await store.run(
                lambda conn: {
                    str(r[0])
                    for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
            )
        finally:
            await store.close()

    assert {"outbox", "outbox_ids", "transactions"} <= asyncio.run(names())
    assert sqlite3.sqlite_version_info >= (3, 24)  # ON CONFLICT ... DO UPDATE
