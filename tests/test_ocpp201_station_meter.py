"""OCPP 2.0.1 clock-aligned meter values of the station as a whole (J01, EVSE 0): on a
station of several connectors, EVSE 0 reports the sum of their meters. Against the whole
controller on simulated hardware and the bundled CSMS (which records any schema violation),
with a 1 s AlignedDataCtrlr.Interval so that boundaries come by in seconds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.csms.wire import parse_iso
from controller.local_csms import LocalCsms
from tests.support.device_model import TOKEN
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
MEASURANDS = '"Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage"'
KEYS = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
    "AlignedDataCtrlr": {"Interval": 1, "Measurands": MEASURANDS},
}


def values(meter_value: dict[str, Any]) -> dict[str, float]:
    """measurand -> value of one MeterValue without phases (its per-phase values left out)."""
    return {v["measurand"]: v["value"] for v in meter_value["sampledValue"] if "phase" not in v}


def clock_values(rig: AppRig, mark: int) -> dict[int, dict[str, dict[str, Any]]]:
    """EVSE -> timestamp -> MeterValue of every clock-aligned value sent from ``mark`` on:
    as MeterValues, or inside a TransactionEvent (MeterValueClock) while charging."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    evse_of = {
        p["transactionInfo"]["transactionId"]: p["evse"]["id"]
        for p in rig.sent("TransactionEvent")
        if p["eventType"] == "Started"
    }
    for record in rig.csms.received[mark:]:
        payload = record.payload
        if record.action == "MeterValues":
            evse = payload["evseId"]
        elif record.action == "TransactionEvent" and payload["triggerReason"] == "MeterValueClock":
            evse = evse_of[payload["transactionInfo"]["transactionId"]]
        else:
            continue
        for meter_value in payload["meterValue"]:
            found.setdefault(evse, {})[meter_value["timestamp"]] = meter_value
    return found


def same_boundary(rig: AppRig, mark: int) -> tuple[dict[str, Any], ...] | None:
    """The latest EVSE 0 value with the EVSE 1 and 2 values of the same boundary: EVSE 0's
    time is the later of the two readings it sums, the other one less than a second older."""
    found = clock_values(rig, mark)
    by_time = {e: {parse_iso(t): mv for t, mv in found.get(e, {}).items()} for e in (1, 2)}
    second = dt.timedelta(seconds=1)
    for stamp, station in sorted(found.get(0, {}).items(), reverse=True):
        at = parse_iso(stamp)
        pair = [
            max((t for t in by_time[e] if dt.timedelta(0) <= at - t < second), default=None)
            for e in (1, 2)
        ]
        if None not in pair and at in pair:
            one, two = (by_time[e][t] for e, t in zip((1, 2), pair, strict=True))
            return station, one, two
    return None


ENERGY = "Energy.Active.Import.Register"


def charged(found: tuple[dict[str, Any], ...] | None) -> bool:
    return found is not None and all(values(mv)[ENERGY] > 0.0 for mv in found[1:])


async def test_evse_0_reports_the_sum_of_the_connectors_meters(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, connectors=2) as rig:
        for evse in (1, 2):
            await rig.act("plug", connector=evse)
            await rig.status("Occupied", connector=evse)
            answer = await rig.cp_call(
                call.RequestStartTransaction(id_token=TOKEN, remote_start_id=evse, evse_id=evse)
            )
            assert answer.status == "Accepted"
            await rig.act("charge", connector=evse)
        for evse in (1, 2):
            await until(lambda e=evse: rig.hw("ev_current_a", connector=e) > 15.0, timeout_s=10)
        mark = rig.mark()
        # a boundary after both have charged: the sum is not of zeros alone
        await until(lambda: charged(same_boundary(rig, mark)), timeout_s=20)
        found = same_boundary(rig, mark)
    assert found is not None
    station, one, two = (values(p) for p in found)
    assert abs(station[ENERGY] - (one[ENERGY] + two[ENERGY])) < 0.002  # each rounded to 1 mWh
    power = "Power.Active.Import"
    assert station[power] > 6000.0  # both cars draw
    assert abs(station[power] - (one[power] + two[power])) < 0.002
    # per-phase values do not add up across connectors wired in rotation: left out
    assert set(station) == {ENERGY, "Power.Active.Import"}
    assert csms.violations == []


async def test_a_single_connector_station_sends_nothing_for_evse_0(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        await until(lambda: len(rig.sent("MeterValues", mark)) >= 3, timeout_s=10)
        evses = {p["evseId"] for p in rig.sent("MeterValues", mark)}
    assert evses == {1}
