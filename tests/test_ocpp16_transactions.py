"""Transactions through the OCPP 1.6 adapter: StartTransaction and StopTransaction with the
CSMS's transactionId, one in-order queue that survives the link going down, retries on
CALLERRORs and timeouts (TransactionMessageAttempts / TransactionMessageRetryInterval), and
StopTransactionOnInvalidId."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from controller.connector_types import StopReason
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from tests.support.csms import BLOCKED_TAG
from tests.support.ocpp16_adapter import FAST, AdapterRig, MakeRig
from tests.support.wait import until

TAG = "04A1B2C3"


def sent(rig: AdapterRig, *actions: str) -> list[tuple[str, dict[str, Any]]]:
    return [(r.action, r.payload) for r in rig.csms.received if r.action in actions]


async def go_offline(rig: AdapterRig) -> None:
    rig.csms.refuse_connections = True
    await rig.csms.drop_connections()
    await until(lambda: not rig.adapter.online)


async def test_start_and_stop_carry_the_meter_the_times_and_the_csms_transaction_id(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    tx = rig.control.start(1, TAG, 1234.6)
    start = await rig.csms.wait_for("StartTransaction")
    assert start == {
        "connectorId": 1,
        "idTag": TAG,
        "meterStart": 1235,
        "timestamp": start["timestamp"],
    }
    assert start["timestamp"].endswith("Z")
    await until(lambda: tx.csms_id == 1)
    assert rig.control.transaction_by_csms_id(1) is tx
    rig.control.stop(tx, 5678.2, StopReason.LOCAL, id_tag=TAG)
    stop = await rig.csms.wait_for("StopTransaction")
    assert {k: stop[k] for k in ("transactionId", "meterStop", "reason", "idTag")} == {
        "transactionId": 1,
        "meterStop": 5678,
        "reason": "Local",
        "idTag": TAG,
    }
    record = rig.csms.transactions[1]
    assert record.energy_wh == 5678 - 1235 and record.stop_reason == "Local"
    await until(lambda: rig.adapter.queued == 0)


async def test_a_remote_stop_sends_its_reason_without_an_id_tag(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    rig.control.stop(tx, 10, StopReason.REMOTE)
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["reason"] == "Remote" and "idTag" not in stop


async def test_offline_transactions_wait_in_order_and_get_their_ids_after_reconnecting(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(connectors=(1, 2))
    await rig.registered()
    await go_offline(rig)
    first = rig.control.start(1, TAG, 100)
    second = rig.control.start(2, "AABBCCDD", 200)
    rig.control.stop(first, 150, StopReason.EV_DISCONNECTED)
    assert rig.adapter.queued == 3 and first.csms_id is None
    after = len(rig.csms.received)
    rig.csms.refuse_connections = False
    await rig.csms.wait_for("StopTransaction", after=after, timeout_s=3)
    actions = rig.actions(after)
    # (a reconnect, no boot) the status of connectors 0-2, then the transaction messages in
    # their order
    assert actions == ["StatusNotification"] * 3 + [
        "StartTransaction",
        "StartTransaction",
        "StopTransaction",
    ]
    starts = sent(rig, "StartTransaction")
    assert [p["connectorId"] for _, p in starts] == [1, 2]
    assert (first.csms_id, second.csms_id) == (1, 2)
    stop = sent(rig, "StopTransaction")[0][1]
    assert stop["transactionId"] == 1 and stop["reason"] == "EVDisconnected"


async def test_a_stop_waits_for_the_id_of_its_start_and_never_goes_out_without_it(
    make_rig: MakeRig,
) -> None:
    gate = asyncio.Event()

    async def slow_start(request: dict[str, Any]) -> None:
        await gate.wait()

    rig = await make_rig(timing=dataclasses.replace(FAST, response_timeout_s=5.0))
    rig.csms.set_response("StartTransaction", slow_start)
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    rig.control.stop(tx, 42, StopReason.LOCAL, id_tag=TAG)
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert sent(rig, "StopTransaction") == []  # still waiting for the Start's answer
    gate.set()
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["transactionId"] == tx.csms_id == 1


@pytest.mark.timing  # a bound on wall-clock time: run alone
async def test_a_refused_start_is_retried_after_the_retry_interval_times_the_tries(
    make_rig: MakeRig,
) -> None:
    tries = itertools.count(1)

    def flaky(request: dict[str, Any]) -> dict[str, Any] | None:
        return {} if next(tries) < 3 else None  # {} breaks the schema: a CALLERROR goes back

    rig = await make_rig(
        keys={"TransactionMessageAttempts": "3", "TransactionMessageRetryInterval": "1"}
    )
    rig.csms.set_response("StartTransaction", flaky)
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    times = [r.monotonic_s for r in rig.csms.received if r.action == "StartTransaction"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 3 and 0.09 <= gaps[0] <= 0.3 and 0.19 <= gaps[1] <= 0.45, gaps


async def test_a_start_refused_every_time_is_dropped_but_its_stop_still_goes_out(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(
        keys={"TransactionMessageAttempts": "2", "TransactionMessageRetryInterval": "1"}
    )
    rig.csms.set_response("StartTransaction", lambda request: {})
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    rig.control.stop(tx, 5, StopReason.LOCAL, id_tag=TAG)
    await until(lambda: rig.adapter.queued == 0)
    assert len(sent(rig, "StartTransaction")) == 2
    # 1.6 §4.10: only the message the CSMS keeps refusing is given up; the Stop (and the
    # meter reading a bill needs) goes out with -1, the id of a transaction that got none
    stops = [p for _, p in sent(rig, "StopTransaction")]
    assert [(p["transactionId"], p["meterStop"]) for p in stops] == [(-1, 5)]
    assert tx.csms_id is None
    rig.csms.set_response("StartTransaction", None)
    later = rig.control.start(1, TAG, 5)
    await until(lambda: later.csms_id is not None)  # the queue goes on


async def test_an_unanswered_start_is_retried_like_a_refused_one(make_rig: MakeRig) -> None:
    tries = itertools.count(1)
    gate = asyncio.Event()

    async def first_late(request: dict[str, Any]) -> None:
        if next(tries) == 1:
            await gate.wait()

    timing = dataclasses.replace(FAST, response_timeout_s=0.2)
    rig = await make_rig(timing=timing, keys={"TransactionMessageRetryInterval": "1"})
    rig.csms.set_response("StartTransaction", first_late)
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    # the answer comes after the first try timed out: the delay is the point
    await asyncio.sleep(0.25)
    gate.set()  # the CSMS answers the first try too late; the retry gets the id
    await until(lambda: tx.csms_id is not None)
    assert tx.csms_id == 2


async def test_an_id_the_csms_refuses_at_start_stops_the_transaction_when_configured(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    tx = rig.control.start(1, BLOCKED_TAG, 0)
    await until(lambda: rig.control.named("deauthorize") == [(tx,)])
    cached = await rig.storage.cache_get(BLOCKED_TAG)
    assert cached is not None and cached.status == "Blocked"


async def test_an_id_the_csms_refuses_at_start_keeps_charging_when_not_configured(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(keys={"StopTransactionOnInvalidId": "false"})
    await rig.registered()
    tx = rig.control.start(1, BLOCKED_TAG, 0)
    await until(lambda: tx.csms_id is not None)
    # nothing may happen here; the charger acts within tens of ms, so 50 ms is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.05)
    assert rig.control.named("deauthorize") == []


async def test_the_stop_answer_updates_the_cache_for_the_id_that_stopped(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    tx = rig.control.start(1, TAG, 0)
    rig.csms.set_tag(TAG, "Expired")
    rig.control.stop(tx, 1, StopReason.LOCAL, id_tag=TAG)
    await until(lambda: rig.adapter.queued == 0)
    cached = await rig.storage.cache_get(TAG)
    assert cached is not None and cached.status == "Expired"


async def test_flush_waits_for_the_queue_and_gives_up_after_its_timeout(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    await go_offline(rig)
    rig.control.start(1, TAG, 0)
    assert not await rig.adapter.flush(0.1)
    rig.csms.refuse_connections = False
    assert await rig.adapter.flush(3.0)


async def test_offline_meter_values_beyond_the_cap_drop_the_oldest_first() -> None:
    queue = TransactionQueue(max_meter_values=2)
    queue.put(TxMessage(TxKind.START, "a", {}))
    for n in range(4):
        queue.put(TxMessage(TxKind.METER, "a", {"n": n}))
    queue.put(TxMessage(TxKind.STOP, "a", {}))
    kept = [(m.kind, m.body.get("n")) for m in queue.messages()]
    assert kept == [
        (TxKind.START, None),
        (TxKind.METER, 2),
        (TxKind.METER, 3),
        (TxKind.STOP, None),
    ]
