"""OCPP 2.0.1 variable instances and Target attributes (B05/B06): DeviceDataCtrlr's message
bounds one instance per message, a request past its ItemsPerMessage refused whole, and
EVSE.Power's Target following what the station offers. Against the whole controller on
simulated hardware and the bundled CSMS (which records any schema violation).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.domain import utc_now
from controller.local_csms import LocalCsms
from controller.ocpp201.device_model import ITEMS_PER_REQUEST
from tests.support.device_model import QUIET_KEYS, V201, card_session
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

INSTANCES = ("GetReport", "GetVariables", "SetVariables")


def device_data(variable: str, instance: str | None = None) -> dict[str, Any]:
    named: dict[str, Any] = {"name": variable}
    if instance is not None:
        named["instance"] = instance
    return {"component": {"name": "DeviceDataCtrlr"}, "variable": named}


def power(attribute: str) -> dict[str, Any]:
    return {
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
        "attribute_type": attribute,
    }


async def get(rig: AppRig, *items: dict[str, Any]) -> list[tuple[str, str | None]]:
    answer = await rig.cp_call(call.GetVariables(get_variable_data=list(items)))
    return [(r["attribute_status"], r.get("attribute_value")) for r in answer.get_variable_result]


async def test_device_data_ctrlr_tells_its_message_bounds_per_instance(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        items = await get(
            rig,
            *(device_data("ItemsPerMessage", i) for i in INSTANCES),
            *(device_data("BytesPerMessage", i) for i in INSTANCES),
            device_data("ItemsPerMessage"),  # the variable exists only as its instances
            device_data("ItemsPerMessage", "SendLocalList"),
        )
        written = await rig.cp_call(
            call.SetVariables(
                set_variable_data=[
                    {**device_data("ItemsPerMessage", "GetReport"), "attribute_value": "5"}
                ]
            )
        )
        mark = rig.mark()
        await rig.cp_call(
            call.GetReport(
                request_id=21, component_variable=[{"component": {"name": "DeviceDataCtrlr"}}]
            )
        )
        report = await csms.wait_for("NotifyReport", after=mark)
    assert items == [
        ("Accepted", "10"),
        ("Accepted", str(ITEMS_PER_REQUEST)),
        ("Accepted", str(ITEMS_PER_REQUEST)),
        ("Accepted", "8192"),
        ("Accepted", str(256 * 1024)),
        ("Accepted", str(256 * 1024)),
        ("UnknownVariable", None),
        ("UnknownVariable", None),
    ]
    assert [r["attribute_status"] for r in written.set_variable_result] == ["Rejected"]
    reported = [
        (d["variable"]["name"], d["variable"].get("instance")) for d in report["reportData"]
    ]
    assert reported == [
        ("ItemsPerMessage", "GetReport"),
        ("BytesPerMessage", "GetReport"),
        ("ItemsPerMessage", "GetVariables"),
        ("ItemsPerMessage", "SetVariables"),
        ("BytesPerMessage", "GetVariables"),
        ("BytesPerMessage", "SetVariables"),
    ]
    assert csms.violations == []


@pytest.mark.parametrize("request_kind", ["GetVariables", "SetVariables"])
async def test_a_request_of_more_items_than_its_instance_allows_is_refused_whole(
    csms: LocalCsms, tmp_path: Path, request_kind: str
) -> None:
    heartbeat = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        if request_kind == "GetVariables":
            too_many: Any = call.GetVariables(
                get_variable_data=[heartbeat] * (ITEMS_PER_REQUEST + 1)
            )
            most: Any = call.GetVariables(get_variable_data=[heartbeat] * ITEMS_PER_REQUEST)
        else:
            item = {**heartbeat, "attribute_value": "120"}
            too_many = call.SetVariables(set_variable_data=[item] * (ITEMS_PER_REQUEST + 1))
            most = call.SetVariables(set_variable_data=[{**item, "attribute_value": "240"}])
        refused = await rig.cp_call(too_many, expect_error=True)
        heartbeat_after_refusal = await get(rig, heartbeat)
        answered = await rig.cp_call(most)
    assert refused.error_code == "OccurrenceConstraintViolation"
    assert heartbeat_after_refusal == [("Accepted", "300")]  # nothing of it was applied
    results = getattr(answered, "get_variable_result", None) or answered.set_variable_result
    assert all(r["attribute_status"] == "Accepted" for r in results)


async def test_evse_power_target_is_the_power_offered_and_follows_a_station_limit(
    csms: LocalCsms, tmp_path: Path
) -> None:
    station_max = {
        "id": 1,
        "stack_level": 0,
        "charging_profile_purpose": "ChargingStationMaxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 1,
                "charging_rate_unit": "A",
                "start_schedule": (utc_now() - dt.timedelta(minutes=1)).isoformat(),
                "charging_schedule_period": [{"start_period": 0, "limit": 10.0}],
            }
        ],
    }
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        idle = await get(rig, power("Target"))
        await card_session(rig, charge=True)
        await until(lambda: rig.hw("offered_current_a") == 32.0, timeout_s=10)
        full = await get(rig, power("Target"), power("MaxSet"))
        answer = await rig.cp_call(call.SetChargingProfile(evse_id=0, charging_profile=station_max))
        await until(lambda: rig.hw("offered_current_a") == 10.0, timeout_s=10)
        limited = await get(rig, power("Target"))
    assert idle == [("Accepted", "0.0")]  # nothing offered without a session
    assert full == [("Accepted", f"{32 * 3 * 230:.1f}"), ("Accepted", str(32 * 3 * 230))]
    assert answer.status == "Accepted"
    assert limited == [("Accepted", f"{10 * 3 * 230:.1f}")]  # 10 A on three phases
