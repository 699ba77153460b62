"""OCPP 2.0.1 clock-aligned meter values (issue 14, block J, J01) from AlignedDataCtrlr, and the
ChargingRateChanged update of SmartChargingCtrlr.LimitChangeSignificance: against the whole
controller on simulated hardware and the bundled CSMS (which fails a test on any schema
violation), with a 1 s interval so that boundaries come by in seconds.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.csms.wire import parse_iso
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
BASE = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
}


def keys(**aligned: Any) -> dict[str, Any]:
    return {**BASE, "AlignedDataCtrlr": {"Interval": 1, **aligned}}


def clock_event(p: dict[str, Any]) -> bool:
    return p["eventType"] == "Updated" and p["triggerReason"] == "MeterValueClock"


def contexts(payload: dict[str, Any]) -> list[str]:
    return [v["context"] for mv in payload["meterValue"] for v in mv["sampledValue"]]


async def charging(rig: AppRig) -> str:
    """Plug in, tap, charge; the transaction's id once the car draws current."""
    await rig.act("plug")
    await rig.act("tap", uid=ACCEPTED_TAG)
    started = await rig.csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    await rig.act("charge")
    await until(lambda: rig.hw("ev_current_a") > 15.0, timeout_s=10)
    return str(started["transactionInfo"]["transactionId"])


@pytest.mark.timing  # a bound on wall-clock time: run alone
async def test_while_idle_clock_aligned_values_are_meter_values_on_the_second(
    csms: LocalCsms, tmp_path: Path
) -> None:
    measurands = '"Energy.Active.Import.Register,Voltage"'
    async with controller(
        csms, tmp_path, keys(Measurands=measurands), ocpp=V201, base_keys={}
    ) as rig:
        mark = rig.mark()
        await until(lambda: len(rig.sent("MeterValues", mark)) >= 3, timeout_s=10)
        received = [r for r in csms.received[mark:] if r.action == "MeterValues"]
    gaps = [b.monotonic_s - a.monotonic_s for a, b in itertools.pairwise(received)]
    # one per boundary: a second one for the same boundary would come at once, a missed
    # boundary would leave two seconds (the margins leave room for a loaded machine)
    assert all(0.2 < gap < 1.8 for gap in gaps), gaps
    for record in received:
        assert record.payload["evseId"] == 1
        assert set(contexts(record.payload)) == {"Sample.Clock"}
        measured = {
            v["measurand"] for mv in record.payload["meterValue"] for v in mv["sampledValue"]
        }
        assert measured == {"Energy.Active.Import.Register", "Voltage"}


async def test_while_charging_clock_aligned_values_are_inside_the_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(), ocpp=V201, base_keys={}) as rig:
        tx_id = await charging(rig)
        first = await csms.wait_for("TransactionEvent", clock_event, timeout_s=5)
        mark = rig.mark()
        await csms.wait_for("TransactionEvent", clock_event, after=mark, timeout_s=5)
        outside = rig.sent("MeterValues", mark)
    assert first["transactionInfo"]["transactionId"] == tx_id
    assert contexts(first) == ["Sample.Clock"]
    assert outside == []  # J01: not also as MeterValues while the transaction runs


async def test_tx_ended_values_come_in_the_ended_event_before_the_final_register(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(TxEndedInterval=1), ocpp=V201, base_keys={}) as rig:
        tx_id = await charging(rig)
        # the clock-aligned updates show the boundaries passing: three of them
        await until(
            lambda: len([p for p in rig.sent("TransactionEvent") if clock_event(p)]) >= 3,
            timeout_s=10,
        )
        await rig.cp_call(call.RequestStopTransaction(transaction_id=tx_id))
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    kept = contexts(ended)
    assert kept[-1] == "Transaction.End"
    assert len(kept) >= 3 and set(kept[:-1]) == {"Sample.Clock"}, kept
    stamps = [parse_iso(mv["timestamp"]) for mv in ended["meterValue"]]
    assert stamps == sorted(stamps)


async def test_send_during_idle_sends_nothing_clock_aligned_while_charging(
    csms: LocalCsms, tmp_path: Path
) -> None:
    preset = {**keys(SendDuringIdle=True), "SampledDataCtrlr": {"TxUpdatedInterval": 1}}
    async with controller(csms, tmp_path, preset, ocpp=V201, base_keys={}) as rig:
        await csms.wait_for("MeterValues", timeout_s=5)  # idle: sent
        await charging(rig)
        mark = rig.mark()
        # three periodic updates: more than two clock boundaries have passed meanwhile
        await until(
            lambda: (
                len(
                    [
                        p
                        for p in rig.sent("TransactionEvent", mark)
                        if p["triggerReason"] == "MeterValuePeriodic"
                    ]
                )
                >= 3
            ),
            timeout_s=10,
        )
        during = rig.sent("MeterValues", mark)
        clocked = [p for p in rig.sent("TransactionEvent", mark) if clock_event(p)]
    assert (during, clocked) == ([], [])


async def test_clock_aligned_events_raised_offline_are_queued_and_delivered_flagged(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(), ocpp=V201, base_keys={}) as rig:
        tx_id = await charging(rig)
        adapter = rig.app.adapter
        assert adapter is not None
        csms.refuse_connections = True
        await csms.drop_connections()
        await until(lambda: adapter.queued >= 2, timeout_s=10)  # type: ignore[attr-defined]
        csms.refuse_connections = False
        offline = await csms.wait_for(
            "TransactionEvent", lambda p: clock_event(p) and p.get("offline"), timeout_s=20
        )
    assert offline["transactionInfo"]["transactionId"] == tx_id
    assert contexts(offline) == ["Sample.Clock"]


async def test_a_significant_change_of_the_offer_is_a_charging_rate_changed_update(
    csms: LocalCsms, tmp_path: Path
) -> None:
    preset = {
        **keys(Interval=0),
        "SmartChargingCtrlr": {"LimitChangeSignificance": 20},
        "SampledDataCtrlr": {"TxUpdatedInterval": 1},
    }
    async with controller(csms, tmp_path, preset, ocpp=V201, base_keys={}) as rig:
        await charging(rig)
        # a reading taken while the car draws its 16 A of the 32 A offered: the baseline
        await csms.wait_for(
            "TransactionEvent",
            lambda p: (
                p["triggerReason"] == "MeterValuePeriodic"
                and any(
                    v["value"] > 15.0
                    for v in p["meterValue"][0]["sampledValue"]
                    if v["measurand"] == "Current.Import"
                )
            ),
        )

        async def limit(amps: float, profile_id: int) -> None:
            body = {
                "id": profile_id,
                "stack_level": profile_id,
                "charging_profile_purpose": "TxDefaultProfile",
                "charging_profile_kind": "Relative",
                "charging_schedule": [
                    {
                        "id": 1,
                        "charging_rate_unit": "A",
                        "charging_schedule_period": [{"start_period": 0, "limit": amps}],
                    }
                ],
            }
            answer = await rig.cp_call(call.SetChargingProfile(evse_id=1, charging_profile=body))
            assert answer.status == "Accepted"
            await until(lambda: rig.hw("offered_current_a") == amps, timeout_s=5)

        mark = rig.mark()
        await limit(28.0, 1)  # 32 A -> 28 A: 12.5 %, not significant
        await limit(20.0, 2)  # 32 A -> 20 A: the first change beyond 20 %
        changed = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "ChargingRateChanged", after=mark
        )
        again = rig.mark()
        await limit(17.0, 3)  # 20 A -> 17 A: 15 %
        await limit(12.0, 4)  # 20 A -> 12 A: 40 %
        await csms.wait_for(
            "TransactionEvent",
            lambda p: p["triggerReason"] == "ChargingRateChanged",
            after=again,
        )
        rate_events = [
            p
            for p in rig.sent("TransactionEvent", mark)
            if p["triggerReason"] == "ChargingRateChanged"
        ]
    assert changed["eventType"] == "Updated"
    assert len(rate_events) == 2
