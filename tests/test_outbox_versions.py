"""A charger switched between OCPP 1.6 and 2.0.1 keeps its state directory, and with it the
outbox: each version's queue sends, thins, rewrites and deletes only the messages it queued;
the other version's wait, in order, for that version to run again; power-loss recovery ends
a transaction under the version whose CSMS knows its start; `picharge outbox` shows them.
(End to end, over both CSMS sides: tests/test_ocpp_version_switch.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ocpp.v201 import call as call201

from controller.cli import main as cli
from controller.connector_types import StopReason
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from controller.csms.registry import END_MESSAGES
from controller.domain import Transaction
from controller.journal import TransactionJournal
from controller.ocpp201.transactions import SEQ_NAMESPACE, SeqNumbers
from controller.outbox import Outbox, OutboxEntry, Told
from controller.recovery import recover_transactions
from controller.storage import DB_NAME, MIGRATIONS, Storage

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path)
    yield store
    await store.close()


class Link:
    def __init__(self) -> None:
        self.stopped: list[Transaction] = []

    def transaction_stopped(self, tx: Transaction) -> None:
        self.stopped.append(tx)


async def rows(storage: Storage) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(protocol, local_id, kind, body) of every outbox row, oldest first."""
    found = await storage.run(
        lambda c: c.execute(
            "SELECT protocol, local_id, kind, body FROM outbox ORDER BY seq"
        ).fetchall()
    )
    return [(p, i, k, json.loads(b)) for p, i, k, b in found]


async def test_a_queue_never_loads_resyncs_or_drops_the_other_versions_messages(
    storage: Storage,
) -> None:
    old = Outbox(storage, boot="run-1.6", protocol="1.6")
    for kind, ends in (("StartTransaction", False), ("StopTransaction", True)):
        await old.append(OutboxEntry("tx-16", kind, {"meter_start": 10}, ends))
    await old.delete(OutboxEntry("gone", "x", {}, False), set_id=("tx-16", 42))
    queue201 = TransactionQueue(store=Outbox(storage, protocol="2.0.1"), csms_ids=False)
    await queue201.restore()
    assert queue201.messages() == []  # nothing of 1.6 would reach a 2.0.1 CSMS
    queue201.put(TxMessage(TxKind.START, "tx-201", {"seq_no": 0, "event_type": "Started"}))
    await queue201.resync()  # the database failed and works again: 2.0.1's rows rewritten
    waiting = await Outbox(storage, protocol="2.0.1").waiting_elsewhere()
    assert waiting == {"1.6": 2}
    assert [(p, k) for p, _, k, _ in await rows(storage)] == [
        ("1.6", "StartTransaction"),
        ("1.6", "StopTransaction"),
        ("2.0.1", "StartTransaction"),
    ]
    queue16 = TransactionQueue(store=Outbox(storage, protocol="1.6"))
    await queue16.restore()
    assert [m.kind for m in queue16.messages()] == [TxKind.START, TxKind.STOP]
    assert queue16.csms_id("tx-16") == 42
    assert queue16.csms_id("tx-201") is None


async def test_a_confirmed_2_0_1_start_is_remembered_until_its_end_is_confirmed(
    storage: Storage,
) -> None:
    """Under 2.0.1 the CSMS gives no id, but recovery must still know it has the start
    once nothing of the transaction is queued (else a power cut would end it silently)."""
    outbox = Outbox(storage, protocol="2.0.1")
    queue = TransactionQueue(store=outbox, csms_ids=False)
    queue.put(TxMessage(TxKind.START, "tx", {"seq_no": 0}))
    sent: list[TxMessage] = []

    async def send(message: TxMessage, _: int | None) -> Any:
        sent.append(message)
        return SimpleNamespace(id_token_info=None)

    async def confirmed(message: TxMessage, answer: Any) -> None:
        return None

    drain = asyncio.create_task(queue.drain(send, confirmed, lambda: 3, lambda: 0.0))
    try:
        await asyncio.wait_for(queue.wait_empty(), 5)
        await storage.run(lambda c: None)
        assert await outbox.size() == 0
        assert await outbox.told_by("tx") == (Told.STARTED, "2.0.1")
        queue.put(TxMessage(TxKind.STOP, "tx", {"seq_no": 1}))
        await asyncio.wait_for(queue.wait_empty(), 5)
        await storage.run(lambda c: None)
        assert await outbox.told_by("tx") == (Told.NOTHING, None)
    finally:
        drain.cancel()
        await asyncio.gather(drain, return_exceptions=True)
    assert [m.kind for m in sent] == [TxKind.START, TxKind.STOP]


async def test_the_migration_tags_older_rows_with_the_version_their_body_speaks(
    tmp_path: Path,
) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    for number, migration in enumerate(MIGRATIONS[:7], start=1):
        migration(conn)
        conn.execute(f"PRAGMA user_version = {number}")
    body16 = {"connector_id": 1, "id_tag": "04A1B2C3", "meter_start": 0}
    body201 = {"event_type": "Started", "seq_no": 0, "trigger_reason": "Authorized"}
    for local_id, kind, body in (
        ("a", "StartTransaction", body16),
        ("b", "StartTransaction", body201),
    ):
        conn.execute(
            "INSERT INTO outbox (local_id, kind, body, ends_transaction, boot)"
            " VALUES (?, ?, ?, 0, 'old')",
            (local_id, kind, json.dumps(body)),
        )
    conn.execute("INSERT INTO outbox_ids (local_id, csms_id) VALUES ('c', 7), ('d', -1)")
    conn.close()
    storage = await Storage.open(tmp_path)
    try:
        assert [(p, i) for p, i, _, _ in await rows(storage)] == [("1.6", "a"), ("2.0.1", "b")]
        assert await Outbox(storage, protocol="1.6").told_by("c") == (Told.STARTED, "1.6")
        assert await Outbox(storage, protocol="1.6").told_by("d") == (Told.STARTED, "2.0.1")
        loaded, ids = await Outbox(storage, protocol="1.6").load()
        assert [e.local_id for e in loaded] == ["a"] and ids == {"c": 7}
    finally:
        await storage.close()


def interrupted(local_id: str) -> Transaction:
    return Transaction(local_id, 1, "04A1B2C3", 1000.0, T0)


async def crashed_running(storage: Storage, tx: Transaction) -> None:
    journal = TransactionJournal(storage)
    journal.started(tx)
    journal.reading(tx, 1500.0, T0 + dt.timedelta(minutes=30))
    await storage.run(lambda c: None)


async def recover(storage: Storage, protocol: str | None, link: Link) -> None:
    await recover_transactions(
        TransactionJournal(storage),
        Outbox(storage, protocol=protocol or ""),
        {},
        link,
        protocol=protocol,
        end_messages=END_MESSAGES,
    )
    await storage.run(lambda c: None)
    assert await TransactionJournal(storage).open_transactions() == []


async def test_a_1_6_transaction_cut_off_under_2_0_1_is_ended_under_1_6(
    storage: Storage,
) -> None:
    tx = interrupted("tx-16")
    await crashed_running(storage, tx)
    start = OutboxEntry(tx.local_id, "StartTransaction", {}, False)
    old = Outbox(storage, protocol="1.6")
    await old.append(start)
    await old.delete(start, set_id=(tx.local_id, 42))  # the 1.6 CSMS confirmed it
    link = Link()
    await recover(storage, "2.0.1", link)
    assert link.stopped == []  # the 2.0.1 CSMS never heard of it
    [(protocol, local_id, kind, body)] = await rows(storage)
    assert (protocol, local_id, kind) == ("1.6", "tx-16", "StopTransaction")
    assert body["reason"] == StopReason.POWER_LOSS.value
    assert body["meter_stop"] == 1500
    assert body["timestamp"] == "2026-03-01T08:30:00.000Z"


async def test_a_2_0_1_transaction_cut_off_under_1_6_is_ended_under_2_0_1(
    storage: Storage,
) -> None:
    tx = interrupted("tx-201")
    await crashed_running(storage, tx)
    newer = Outbox(storage, protocol="2.0.1")
    started = OutboxEntry(tx.local_id, "StartTransaction", {"seq_no": 0}, False)
    await newer.append(started)
    await newer.delete(started, set_id=(tx.local_id, None))
    await storage.run(
        lambda c: c.execute(
            "INSERT INTO settings (namespace, key, value) VALUES (?, '1', ?)",
            (SEQ_NAMESPACE, f"{tx.local_id}:3"),  # seqNo 0..3 were sent
        )
    )
    link = Link()
    await recover(storage, "1.6", link)
    assert link.stopped == []
    [(protocol, local_id, kind, body)] = await rows(storage)
    assert (protocol, local_id, kind) == ("2.0.1", "tx-201", "StopTransaction")
    assert body["event_type"] == "Ended" and body["seq_no"] == 4 and body["offline"] is True
    assert body["transaction_info"]["stopped_reason"] == "PowerLoss"
    [end] = body["meter_value"]
    assert end["sampledValue"][0]["value"] == 1500.0
    call201.TransactionEvent(**body)  # the request's fields, as the adapter will send them


async def test_a_transaction_of_the_running_version_is_ended_by_its_link(
    storage: Storage,
) -> None:
    tx = interrupted("tx-201")
    await crashed_running(storage, tx)
    newer = Outbox(storage, protocol="2.0.1")
    await newer.append(OutboxEntry(tx.local_id, "StartTransaction", {"seq_no": 0}, False))
    link = Link()
    await recover(storage, "2.0.1", link)
    assert [t.local_id for t in link.stopped] == ["tx-201"]


@pytest.mark.usefixtures("root_logger")  # picharge in process configures logging
async def test_picharge_outbox_lists_and_exports_what_waits_without_touching_it(
    storage: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = Outbox(storage, protocol="1.6")
    await old.append(OutboxEntry("tx-16", "StopTransaction", {"meter_stop": 1500}, True))
    await Outbox(storage, protocol="2.0.1").append(
        OutboxEntry("tx-201", "StartTransaction", {"seq_no": 0}, False)
    )
    # while the controller still has the database open
    assert cli(["outbox", "--state-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "outbox: 1 under OCPP 1.6, 1 under OCPP 2.0.1" in listing
    target = tmp_path / "billing.jsonl"
    assert cli(["outbox", "--state-dir", str(tmp_path), "--export", str(target)]) == 0
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(e["protocol"], e["transaction"], e["kind"]) for e in exported] == [
        ("1.6", "tx-16", "StopTransaction"),
        ("2.0.1", "tx-201", "StartTransaction"),
    ]
    assert exported[0]["body"] == {"meter_stop": 1500} and exported[0]["ends_transaction"]
    assert await old.size() == 2  # read, not taken
    assert cli(["outbox", "--state-dir", str(tmp_path / "nowhere")]) == 1


async def test_a_2_0_1_event_stored_before_its_number_is_not_numbered_again(
    storage: Storage,
) -> None:
    """A power cut between an event's outbox insert and the store of its seqNo: the next run
    numbers on from the queued event, neither repeating its number nor leaving a gap."""
    tx = interrupted("tx-201")
    await storage.run(
        lambda c: c.execute(
            "INSERT INTO settings (namespace, key, value) VALUES (?, '1', ?)",
            (SEQ_NAMESPACE, f"{tx.local_id}:1"),
        )
    )
    newer = Outbox(storage, protocol="2.0.1")
    for number in (1, 2):
        await newer.append(OutboxEntry(tx.local_id, "MeterValues", {"seq_no": number}, False))
    seq = await SeqNumbers.load(storage)
    assert seq.next(tx) == 3
    other = Transaction("tx-next", 1, "04A1B2C3", 0.0, T0)
    assert seq.next(other) == 0  # a new transaction on the connector starts again
