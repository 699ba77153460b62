"""GetBaseReport and GetReport (B07, B08): the device model reported in NotifyReport parts
that DeviceDataCtrlr's ItemsPerMessage and BytesPerMessage bound; end to end against the
bundled CSMS, which checks each part against the 2.0.1 schemas."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.local_csms import LocalCsms
from controller.ocpp201.device_model import VARIABLES, Mutability, requested_key
from controller.ocpp201.evse_variables import VARIABLES as LIVE_VARIABLES
from controller.ocpp201.reports import split
from tests.support.device_model import get_variable, set_variable
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}


async def report(rig: AppRig, request_id: int) -> list[dict[str, Any]]:
    """Every NotifyReport part of ``request_id``, once the last (tbc false) arrived."""

    def parts() -> list[dict[str, Any]]:
        return [p for p in rig.sent("NotifyReport") if p["requestId"] == request_id]

    await until(lambda: any(not p.get("tbc", False) for p in parts()), what="the last part")
    return parts()


def names(parts: list[dict[str, Any]]) -> list[str]:
    return [
        requested_key(item["component"], item["variable"])  # with an instance, if named
        for part in parts
        for item in part["reportData"]
    ]


async def test_a_full_inventory_comes_in_parts_of_items_per_message(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        answer = await rig.cp_call(call.GetBaseReport(request_id=3, report_base="FullInventory"))
        parts = await report(rig, 3)
    assert answer.status == "Accepted"
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    assert [p.get("tbc", False) for p in parts] == [True] * (len(parts) - 1) + [False]
    assert all(len(p["reportData"]) <= 10 for p in parts)  # ItemsPerMessage
    live = [f"{v.component}.{v.variable}" for v in LIVE_VARIABLES]  # EVSE 1's
    assert len(parts) == -(-(len(VARIABLES) + len(live)) // 10)
    assert names(parts) == [d.name for d in VARIABLES] + live
    flat = [i for p in parts for i in p["reportData"]]
    items = dict(zip(names(parts), flat, strict=True))
    password = items["SecurityCtrlr.BasicAuthPassword"]["variableAttribute"][0]
    assert password["mutability"] == "WriteOnly" and "value" not in password
    heartbeat = items["OCPPCommCtrlr.HeartbeatInterval"]
    assert heartbeat["variableAttribute"][0]["value"] == "300"
    assert heartbeat["variableCharacteristics"]["dataType"] == "integer"
    clock = items["ClockCtrlr.DateTime"]
    assert clock["variableCharacteristics"]["dataType"] == "dateTime"
    # read-only but not constant: the clock moves by itself
    assert clock["variableAttribute"][0]["constant"] is False
    assert items["ClockCtrlr.TimeSource"]["variableAttribute"][0]["value"] == "NTP"


async def test_the_clock_controller_reports_the_stations_time(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        before = dt.datetime.now(dt.UTC)
        reported = await get_variable(rig, "ClockCtrlr", "DateTime")
        after = dt.datetime.now(dt.UTC)
        refused = await set_variable(rig, "ClockCtrlr", "TimeSource", "Heartbeat")
    stamp = dt.datetime.fromisoformat(reported.replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= stamp <= after + dt.timedelta(seconds=1)
    assert refused == "Rejected"  # read-only: picharge never sets the clock itself


async def test_configuration_inventory_and_get_report_select_what_they_ask_for(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        config = await rig.cp_call(
            call.GetBaseReport(request_id=4, report_base="ConfigurationInventory")
        )
        config_parts = await report(rig, 4)
        summary = await rig.cp_call(
            call.GetBaseReport(request_id=5, report_base="SummaryInventory")
        )
        one = await rig.cp_call(
            call.GetReport(
                request_id=6,
                component_variable=[
                    {"component": {"name": "TxCtrlr"}},
                    {"component": {"name": "AuthCtrlr"}, "variable": {"name": "LocalPreAuthorize"}},
                ],
            )
        )
        one_parts = await report(rig, 6)
        none = await rig.cp_call(
            call.GetReport(request_id=7, component_variable=[{"component": {"name": "Nope"}}])
        )
        criteria = await rig.cp_call(call.GetReport(request_id=8, component_criteria=["Problem"]))
    writable = [d.name for d in VARIABLES if d.mutability is not Mutability.READ_ONLY]
    assert (config.status, summary.status) == ("Accepted", "NotSupported")
    assert names(config_parts) == writable
    assert one.status == "Accepted"
    assert names(one_parts) == [
        "AuthCtrlr.LocalPreAuthorize",
        "TxCtrlr.StopTxOnEVSideDisconnect",
        "TxCtrlr.EVConnectionTimeOut",
        "TxCtrlr.TxStartPoint",
        "TxCtrlr.TxStopPoint",
    ]
    assert (none.status, criteria.status) == ("EmptyResultSet", "NotSupported")


def test_parts_stay_within_bytes_per_message_unless_one_item_alone_is_larger() -> None:
    items = [{"n": i, "pad": "x" * 40} for i in range(6)]
    size = len(json.dumps(items[0], separators=(",", ":")))
    parts = split(items, max_items=10, max_bytes=2 * size + 1)
    assert [len(p) for p in parts] == [2, 2, 2]
    assert [item for part in parts for item in part] == items
    assert [len(p) for p in split(items, max_items=10, max_bytes=1)] == [1] * 6
