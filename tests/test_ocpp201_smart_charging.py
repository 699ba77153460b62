"""OCPP 2.0.1 smart charging (issue 14, block K): SetChargingProfile, GetChargingProfiles with
ReportChargingProfiles, ClearChargingProfile, GetCompositeSchedule and RequestStartTransaction's
TxProfile, each against the whole controller on simulated hardware (EV time 30x) and the
bundled CSMS, which fails a test on any schema violation. The composite limit is the
connector's "csms" limit source: the simulated car is offered it as the PWM duty and draws it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.charging_schedule import RateUnit, ScheduleKind
from controller.csms.profiles import ProfileRejected, ProfileRules, Purpose
from controller.domain import utc_now
from controller.local_csms import LocalCsms
from controller.ocpp201.profiles import parse_profile
from tests.support.charging_profiles import profile, set_profile
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
KEYS = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
    "AlignedDataCtrlr": {"Interval": 0},
}
TOKEN = {"id_token": ACCEPTED_TAG, "type": "ISO14443"}
#: The simulated car draws at most this (hw_sim EvSpec default), on three phases.
CAR_MAX_A = 16.0
#: The simulated connector: three phases, 32 A (the composite's cap where nothing limits).
CONNECTOR_MAX_A = 32.0


async def charging(rig: AppRig) -> str:
    """Plug in and tap the accepted card; the running transaction's id."""
    await rig.act("plug")
    await rig.act("tap", uid=ACCEPTED_TAG)
    started = await rig.csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    await rig.act("charge")
    return str(started["transactionInfo"]["transactionId"])


async def offered(rig: AppRig, amps: float) -> None:
    """Wait until the car is offered ``amps`` and draws what it can of them."""
    await until(
        lambda: (
            rig.hw("offered_current_a") == pytest.approx(amps, abs=0.05)
            and rig.hw("ev_current_a") == pytest.approx(min(amps, CAR_MAX_A), abs=0.3)
        ),
        timeout_s=10,
        what=f"the car offered {amps} A",
    )


async def test_a_station_maximum_in_watts_is_the_cars_pwm_offer_and_the_composite(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await charging(rig)
        await until(lambda: rig.hw("ev_current_a") > CAR_MAX_A - 0.5, timeout_s=10)
        station_max = profile("ChargingStationMaxProfile", (0, 6900.0), unit="W")
        on_evse = await set_profile(rig, 1, station_max)
        relative = await set_profile(rig, 0, {**station_max, "charging_profile_kind": "Relative"})
        accepted = await set_profile(rig, 0, station_max)
        answered = time.monotonic()
        await until(lambda: rig.hw("offered_current_a") == 10.0, timeout_s=10)
        offer_s = time.monotonic() - answered
        await offered(rig, 10.0)  # 6900 W over three phases of 230 V
        print(f"the PWM offered the profile's limit {offer_s * 1000:.0f} ms after Accepted")
        amps = await rig.cp_call(call.GetCompositeSchedule(duration=60, evse_id=1))
        watts = await rig.cp_call(
            call.GetCompositeSchedule(duration=60, evse_id=1, charging_rate_unit="W")
        )
        unknown = await rig.cp_call(call.GetCompositeSchedule(duration=60, evse_id=7))
    assert (on_evse, relative, accepted) == ("Rejected", "Rejected", "Accepted")
    assert offer_s < 1.0  # the limit is pushed before Accepted goes out: seen at once
    assert amps.status == "Accepted"
    assert amps.schedule["evse_id"] == 1
    assert amps.schedule["charging_rate_unit"] == "A"
    assert amps.schedule["duration"] == 60
    assert [p["limit"] for p in amps.schedule["charging_schedule_period"]] == [10.0]
    assert [p["limit"] for p in watts.schedule["charging_schedule_period"]] == [6900.0]
    assert unknown.status == "Rejected"


async def test_a_tx_profile_limits_only_the_transaction_it_names_and_ends_with_it(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        idle = await set_profile(rig, 1, profile("TxProfile", (0, 8.0), transaction_id="x"))
        tx_id = await charging(rig)
        nameless = await set_profile(rig, 1, profile("TxProfile", (0, 8.0)))
        other = await set_profile(rig, 1, profile("TxProfile", (0, 8.0), transaction_id="x"))
        on_station = await set_profile(rig, 0, profile("TxProfile", (0, 8.0), transaction_id=tx_id))
        default = await set_profile(rig, 1, profile("TxDefaultProfile", (0, 12.0)))
        await offered(rig, 12.0)
        # the transaction's own profile wins over the default, whatever the limits
        tx = await set_profile(
            rig, 1, profile("TxProfile", (0, 8.0), profile_id=2, transaction_id=tx_id)
        )
        await offered(rig, 8.0)
        mark = rig.mark()
        stop = await rig.cp_call(call.RequestStopTransaction(transaction_id=tx_id))
        await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended", after=mark)
        tx_left = await rig.cp_call(
            call.GetChargingProfiles(
                request_id=1, charging_profile={"charging_profile_purpose": "TxProfile"}
            )
        )
    assert (idle, nameless, other, on_station) == ("Rejected",) * 4
    assert (default, tx, stop.status) == ("Accepted", "Accepted", "Accepted")
    assert tx_left.status == "NoProfiles"  # a TxProfile ends with its transaction


async def test_installed_profiles_are_reported_per_evse_cleared_and_refuse_a_clash(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answers = [
            await set_profile(rig, 0, profile("ChargingStationMaxProfile", (0, 30.0))),
            await set_profile(rig, 0, profile("TxDefaultProfile", (0, 20.0), profile_id=2)),
            await set_profile(
                rig, 1, profile("TxDefaultProfile", (0, 14.0), profile_id=3, stack_level=1)
            ),
            # K01.FR.06: another id at the same EVSE, purpose and stack level
            await set_profile(
                rig, 1, profile("TxDefaultProfile", (0, 9.0), profile_id=4, stack_level=1)
            ),
            # the same id replaces
            await set_profile(
                rig, 1, profile("TxDefaultProfile", (0, 13.0), profile_id=3, stack_level=1)
            ),
            await set_profile(rig, 1, profile("TxDefaultProfile", (0, 13.0), stack_level=99)),
        ]
        mark = rig.mark()
        every = await rig.cp_call(call.GetChargingProfiles(request_id=5, charging_profile={}))
        await csms.wait_for("ReportChargingProfiles", lambda p: not p.get("tbc"), after=mark)
        parts = rig.sent("ReportChargingProfiles", mark)
        ems = await rig.cp_call(
            call.GetChargingProfiles(
                request_id=6, charging_profile={"charging_limit_source": ["EMS"]}
            )
        )
        station = await rig.cp_call(
            call.GetChargingProfiles(request_id=7, evse_id=0, charging_profile={"stack_level": 0})
        )
        by_id = await rig.cp_call(call.ClearChargingProfile(charging_profile_id=3))
        by_criteria = await rig.cp_call(
            call.ClearChargingProfile(
                charging_profile_criteria={
                    "evse_id": 0,
                    "charging_profile_purpose": "TxDefaultProfile",
                }
            )
        )
        again = await rig.cp_call(call.ClearChargingProfile(charging_profile_id=3))
        composite = await rig.cp_call(call.GetCompositeSchedule(duration=10, evse_id=1))
    assert answers == ["Accepted", "Accepted", "Accepted", "Rejected", "Accepted", "Rejected"]
    assert every.status == "Accepted"
    assert [
        (p["evseId"], [c["id"] for c in p["chargingProfile"]], p.get("tbc")) for p in parts
    ] == [
        (0, [1, 2], True),
        (1, [3], False),
    ]
    assert {p["requestId"] for p in parts} == {5}
    assert {p["chargingLimitSource"] for p in parts} == {"CSO"}
    assert parts[1]["chargingProfile"][0]["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 13.0}
    ]
    assert (ems.status, station.status) == ("NoProfiles", "Accepted")
    assert (by_id.status, by_criteria.status, again.status) == ("Accepted", "Accepted", "Unknown")
    # only the station maximum is left, under the connector's own 32 A
    assert [p["limit"] for p in composite.schedule["charging_schedule_period"]] == [30.0]


async def test_profiles_hold_across_a_restart_and_entries_counts_them(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state) as rig:
        # every day from a minute ago: in force now, and again tomorrow
        daily = profile("TxDefaultProfile", (0, 10.0), kind="Recurring", recurrency_kind="Daily")
        default = await set_profile(rig, 0, daily)
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state) as rig:
        entries = await rig.cp_call(
            call.GetVariables(
                get_variable_data=[
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Entries"}}
                ]
            )
        )
        await charging(rig)
        await offered(rig, 10.0)
    assert default == "Accepted"
    assert entries.get_variable_result[0]["attribute_value"] == "1"


async def test_a_remote_start_brings_the_tx_profile_of_its_new_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        default = await rig.cp_call(
            call.RequestStartTransaction(
                id_token=TOKEN,
                remote_start_id=1,
                evse_id=1,
                charging_profile=profile("TxDefaultProfile", (0, 8.0), kind="Relative"),
            )
        )
        await rig.act("plug")
        mark = rig.mark()
        answer = await rig.cp_call(
            call.RequestStartTransaction(
                id_token=TOKEN,
                remote_start_id=2,
                evse_id=1,
                charging_profile=profile("TxProfile", (0, 8.0), kind="Relative"),
            )
        )
        started = await csms.wait_for(
            "TransactionEvent", lambda p: p["eventType"] == "Started", after=mark
        )
        await rig.act("charge")
        await offered(rig, 8.0)
        mark = rig.mark()
        await rig.cp_call(
            call.GetChargingProfiles(
                request_id=3, charging_profile={"charging_profile_purpose": "TxProfile"}
            )
        )
        report = await csms.wait_for("ReportChargingProfiles", after=mark)
    assert (default.status, answer.status) == ("Rejected", "Accepted")
    assert started["transactionInfo"]["remoteStartId"] == 2
    tx_id = started["transactionInfo"]["transactionId"]
    assert [p["transactionId"] for p in report["chargingProfile"]] == [tx_id]


async def test_with_smart_charging_disabled_no_profile_is_installed(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {**KEYS, "SmartChargingCtrlr": {"Enabled": False}}
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(
            call.SetChargingProfile(
                evse_id=0, charging_profile=profile("TxDefaultProfile", (0, 6.0))
            )
        )
    assert answer.status == "Rejected"
    assert answer.status_info["reason_code"] == "NotEnabled"


RULES = ProfileRules(
    max_stack_level=8,
    allowed_units=frozenset({RateUnit.AMPS}),
    max_periods=2,
    max_installed=16,
    replace_same_level=False,
)


def test_a_recurring_profile_is_read_with_its_recurrence_and_the_neutral_purpose() -> None:
    body = profile(
        "ChargingStationMaxProfile", (0, 16.0), kind="Recurring", recurrency_kind="Weekly"
    )
    parsed = parse_profile(body, 0, utc_now(), RULES, key="k")
    assert (parsed.purpose, parsed.schedule.kind, parsed.schedule.recurrency) == (
        Purpose.CHARGE_POINT_MAX,
        ScheduleKind.RECURRING,
        "Weekly",
    )


def _two_schedules() -> dict[str, Any]:
    body = profile("TxDefaultProfile", (0, 16.0))
    body["charging_schedule"] = body["charging_schedule"] * 2
    return body


def _relative_with_start() -> dict[str, Any]:
    body = profile("TxDefaultProfile", (0, 16.0), kind="Relative")
    body["charging_schedule"][0]["start_schedule"] = utc_now().isoformat()
    return body


def _absolute_without_start() -> dict[str, Any]:
    body = profile("TxDefaultProfile", (0, 16.0))
    del body["charging_schedule"][0]["start_schedule"]
    return body


@pytest.mark.parametrize(
    ("evse_id", "body", "why"),
    [
        (0, profile("ChargingStationExternalConstraints", (0, 16.0)), "not the CSMS's"),
        (1, profile("ChargingStationMaxProfile", (0, 16.0)), "belongs on EVSE 0"),
        (0, profile("ChargingStationMaxProfile", (0, 16.0), kind="Relative"), "Relative"),
        (0, profile("TxProfile", (0, 16.0), transaction_id="t"), "EVSE of its transaction"),
        (1, profile("TxDefaultProfile", (0, 16.0), transaction_id="t"), "transactionId"),
        (1, _two_schedules(), "ISO 15118"),
        (1, _relative_with_start(), "no startSchedule"),
        (1, _absolute_without_start(), "needs a start"),
        (1, profile("TxDefaultProfile", (5, 16.0)), "start at 0"),
        (1, profile("TxDefaultProfile", (0, 16.0), stack_level=9), "maximum stack level"),
        (1, profile("TxDefaultProfile", (0, 16.0), (1, 8.0), (2, 6.0)), "at most 2"),
        (1, profile("TxDefaultProfile", (0, 9000.0), unit="W"), "allowed rate units"),
    ],
)
def test_a_profile_against_the_201_rules_is_refused_saying_why(
    evse_id: int, body: dict[str, Any], why: str
) -> None:
    with pytest.raises(ProfileRejected, match=why):
        parse_profile(body, evse_id, utc_now(), RULES, key="k")


async def test_smart_charging_variables_are_described_and_checked(
    csms: LocalCsms, tmp_path: Path
) -> None:
    def item(variable: str, value: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "component": {"name": "SmartChargingCtrlr"},
            "variable": {"name": variable},
        }
        return out if value is None else {**out, "attribute_value": value}

    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        got = await rig.cp_call(
            call.GetVariables(
                get_variable_data=[
                    item(v)
                    for v in ("RateUnit", "ProfileStackLevel", "PeriodsPerSchedule", "Entries")
                ]
            )
        )
        changes = [("LimitChangeSignificance", "12.5"), ("LimitChangeSignificance", "101")]
        changes += [("LimitChangeSignificance", "much"), ("RateUnit", "A")]
        answer = await rig.cp_call(
            call.SetVariables(set_variable_data=[item(v, value) for v, value in changes])
        )
    assert [r["attribute_value"] for r in got.get_variable_result] == ["A,W", "8", "48", "0"]
    assert [r["attribute_status"] for r in answer.set_variable_result] == [
        "Accepted",
        "Rejected",
        "Rejected",
        "Rejected",
    ]
