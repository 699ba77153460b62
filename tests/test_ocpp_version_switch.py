"""A charger switched from OCPP 1.6 to 2.0.1 and back keeps its state directory, and nothing
queued under one version is lost or sent to the other's CSMS: the messages wait in the
outbox (a warning at start, their count in the status snapshot, `picharge outbox` exports
them) and reach their CSMS when their version runs again. A transaction cut off by a power
cut under one version is ended under that version, whichever version the charger restarts
with. (The bundled CSMS speaks both versions and records any schema violation.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main as cli
from controller.local_csms import LocalCsms
from controller.outbox import export_rows
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
KEYS201 = {
    "OCPPCommCtrlr": {
        "HeartbeatInterval": 2,
        "WebSocketPingInterval": 0,
        "MessageAttemptIntervalTransactionEvent": 1,
    },
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
}


def waiting(rig: AppRig) -> dict[str, int]:
    """The snapshot's count of messages waiting for another version (as `sim status` and
    the web API show it)."""
    assert rig.app.supervisor is not None
    counts: dict[str, int] = rig.app.supervisor.snapshot().to_json()["outbox_other_versions"]
    return counts


def sent_after(csms: LocalCsms, mark: int, *actions: str) -> list[dict[str, Any]]:
    return [r.payload for r in csms.received[mark:] if r.action in actions]


async def session_201(rig: AppRig) -> str:
    """A whole 2.0.1 session, online; its transactionId."""
    mark = rig.mark()
    await rig.act("plug")
    await rig.act("tap", uid=ACCEPTED_TAG)
    started = await rig.csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", after=mark
    )
    tx_id = str(started["transactionInfo"]["transactionId"])
    await rig.act("unplug")
    await rig.csms.wait_for(
        "TransactionEvent",
        lambda p: p["eventType"] == "Ended" and p["transactionInfo"]["transactionId"] == tx_id,
    )
    return tx_id


@pytest.mark.usefixtures("root_logger")  # picharge in process configures logging
async def test_messages_queued_under_1_6_wait_through_a_2_0_1_run_and_reach_the_1_6_csms(
    csms: LocalCsms, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    async with controller(csms, tmp_path, state_dir=state) as rig:
        await rig.charging()
        [record] = csms.transactions.values()
        csms.refuse_connections = True
        await csms.drop_connections()
        await rig.act("unplug")  # StopTransaction while the CSMS is out of reach
        await until(lambda: bool(rig.sent("StopTransaction")) or rig.app.adapter.queued > 0)
    assert rig.sent("StopTransaction") == []
    queued16 = export_rows(state)
    assert queued16 and {r["protocol"] for r in queued16} == {"1.6"}
    assert queued16[-1]["kind"] == "StopTransaction"
    csms.refuse_connections = False

    mark = len(csms.received)
    caplog.set_level(logging.WARNING, logger="controller.app")
    async with controller(csms, tmp_path, KEYS201, ocpp=V201, base_keys={}, state_dir=state) as rig:
        assert waiting(rig) == {"1.6": len(queued16)}
        tx201 = await session_201(rig)  # the 2.0.1 queue works meanwhile, beside them
        await until(lambda: rig.app.adapter.queued == 0)
        # exported for billing by hand while the controller runs
        target = tmp_path / "waiting.jsonl"
        assert cli(["outbox", "--state-dir", str(state), "--export", str(target)]) == 0
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(e["seq"], e["kind"]) for e in exported] == [(r["seq"], r["kind"]) for r in queued16]
    assert exported[-1]["csms_transaction_id"] == record.transaction_id
    warnings = [r.getMessage() for r in caplog.records if "queued under OCPP 1.6" in r.message]
    assert len(warnings) == 1 and f"{len(queued16)} transaction message(s)" in warnings[0]
    assert "picharge outbox" in warnings[0]
    # nothing of 1.6 reached the 2.0.1 CSMS: its only transaction is the 2.0.1 session's
    assert sent_after(csms, mark, "StopTransaction", "StartTransaction", "MeterValues") == []
    assert {key[1] for key in csms.transaction_events} == {tx201}

    mark = len(csms.received)
    async with controller(csms, tmp_path, state_dir=state, ready_status=None) as rig:
        stop = await csms.wait_for("StopTransaction", after=mark)
        await until(lambda: rig.app.adapter.queued == 0 and not export_rows(state))
        assert waiting(rig) == {}  # the 2.0.1 session's events were all delivered
    assert stop["transactionId"] == record.transaction_id
    assert record.stopped_at is not None and record.meter_stop_wh == stop["meterStop"]
    assert sent_after(csms, mark, "TransactionEvent") == []
    assert csms.violations == []


async def test_a_transaction_cut_off_under_2_0_1_is_ended_at_the_2_0_1_csms_after_a_1_6_run(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with controller(
        csms, tmp_path, KEYS201, ocpp=V201, base_keys={}, state_dir=state, crash=True
    ) as rig:
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        await rig.act("charge")
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic"
        )
    tx_id = started["transactionInfo"]["transactionId"]

    mark = len(csms.received)
    async with controller(csms, tmp_path, state_dir=state, ready_status=None) as rig:
        # recovery closed it under 2.0.1, whose CSMS alone knows its start
        assert waiting(rig).get("2.0.1", 0) >= 1
        ends = [r for r in export_rows(state) if r["ends_transaction"]]
        assert [(e["protocol"], e["transaction"]) for e in ends] == [("2.0.1", tx_id)]
    assert sent_after(csms, mark, "StopTransaction", "TransactionEvent") == []
    assert csms.transactions == {}  # the 1.6 CSMS never heard of it

    async with controller(
        csms, tmp_path, KEYS201, ocpp=V201, base_keys={}, state_dir=state, ready_status=None
    ) as rig:
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        await until(lambda: rig.app.adapter.queued == 0)
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert ended["offline"] is True
    by_seq: dict[int, dict[str, Any]] = {}
    for event in csms.transaction_events[(rig.cp_id, tx_id)]:
        assert by_seq.setdefault(event["seqNo"], event) == event  # repeats are identical
    assert sorted(by_seq) == list(range(len(by_seq)))  # no gap
    assert ended["seqNo"] == len(by_seq) - 1
    assert export_rows(state) == []
    assert csms.violations == []
