"""Local load management and the CSMS's smart charging together (issue 16, "Combined with
the CSMS"), end to end on OCPP 1.6 and 2.0.1: the whole controller on the simulated house
(the grid meter read over Modbus by the real driver) against the bundled CSMS. Both are
limit sources on the connector, both active at once, and the car is offered the lower;
GetCompositeSchedule reports the station's effective limit (the profiles capped by the
local limit in force now), as OCPP 1.6 section 5.7 and 2.0.1 K08 allow ("all active
schedules and possible local limits present in the Charge Point")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from controller.limits import LimitSource
from controller.local_csms import LocalCsms
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until
from tests.test_ocpp201_smart_charging import KEYS as KEYS_201
from tests.test_ocpp201_smart_charging import charging as charging_201
from tests.test_ocpp201_smart_charging import profile as profile_201
from tests.test_smart_charging_e2e import QUIET_KEYS, limit_profile

SITE = {"fuse_a": 25.0, "margin_a": 1.0, "fallback_current_a": 6.0, "grid_max_age_s": 3.0}
GRID_METER = {"model": "sdm630", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0}
ENERGY = {"site": SITE, "grid_meter": GRID_METER}
PHASE_W = 230.0  # one ampere on one phase of the simulated house
CSMS_A = 12.0  # the CSMS's TxDefaultProfile: below the simulated car's 16 A
HOUSE_A = 15.0  # the oven and the heat pump on every phase: the fuse leaves 24 - 15 = 9 A


def limits(rig: AppRig) -> dict[LimitSource, float]:
    """Every limit source set on connector 1 now."""
    return dict(rig.app.supervisor.connectors[1].machine.limits.active)


def offered(rig: AppRig) -> float:
    return float(rig.hw("offered_current_a"))


async def both_sources_apply(rig: AppRig, composite: Callable[[], Awaitable[list[float]]]) -> None:
    """The house loads the fuse below the CSMS's limit and back; the car follows the lower
    of the two, and the composite schedule says the same.

    The composite is awaited, not asserted once: the fuse's limit moves with every grid
    reading (a car ramping up shows on the grid meter before its own meter's next read), and
    the composite reports the limit in force when it is asked.
    """

    seen: list[list[float]] = []

    async def composite_is(limit_a: Callable[[], float]) -> bool:
        seen.append(await composite())
        return seen[-1] == [limit_a()]

    # The house takes nothing: the fuse leaves 24 A, the CSMS's 12 A is the lower.
    await rig.act("house", load_w=0.0, pv_w=0.0)
    await until(
        lambda: limits(rig).get(LimitSource.LOAD_MANAGEMENT, 0.0) >= 23.9,
        what="the fuse leaving 24 A",
    )
    await until(lambda: offered(rig) == pytest.approx(CSMS_A), what="the CSMS's 12 A offered")
    assert limits(rig)[LimitSource.CSMS] == CSMS_A  # both set at once
    await until(lambda: composite_is(lambda: CSMS_A), what="the composite at the CSMS's 12 A")

    # The house's load leaves the car 9 A: the fuse is now the lower, the CSMS's limit stays.
    await rig.act("house", load_w=3 * HOUSE_A * PHASE_W)
    await until(lambda: 8.5 < offered(rig) <= 9.0, what="the fuse's 9 A offered")
    await until(lambda: rig.hw("ev_current_a") <= 9.0, what="the car following the fuse")
    assert limits(rig)[LimitSource.CSMS] == CSMS_A
    assert offered(rig) == limits(rig)[LimitSource.LOAD_MANAGEMENT]
    # GetCompositeSchedule: the profile's 12 A capped by the local limit in force now.
    await until(
        lambda: composite_is(lambda: limits(rig)[LimitSource.LOAD_MANAGEMENT]),
        what="the composite at the fuse's limit",
    )
    assert 8.5 < seen[-1][0] <= 9.0  # the fuse's limit, not the profile's 12 A

    # The house's load goes: the CSMS's limit binds again.
    await rig.act("house", load_w=0.0)
    await until(lambda: offered(rig) == pytest.approx(CSMS_A), what="12 A again")
    await until(lambda: composite_is(lambda: CSMS_A), what="the composite back at 12 A")


async def test_ocpp16_the_car_gets_the_lower_of_the_fuse_and_the_csms_profile(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys=QUIET_KEYS, config=ENERGY) as rig:
        await rig.charging()
        profile = limit_profile("TxDefaultProfile", (0, CSMS_A))
        set_answer = await rig.cp_call(
            call16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert set_answer.status == "Accepted"

        async def composite() -> list[float]:
            answer = await rig.cp_call(call16.GetCompositeSchedule(connector_id=1, duration=60))
            assert answer.status == "Accepted"
            periods = answer.charging_schedule["charging_schedule_period"]
            return [p["limit"] for p in periods]

        await both_sources_apply(rig, composite)


async def test_ocpp201_the_car_gets_the_lower_of_the_fuse_and_the_csms_profile(
    csms: LocalCsms, tmp_path: Path
) -> None:
    v201: dict[str, Any] = {"version": "2.0.1"}
    async with controller(csms, tmp_path, KEYS_201, ocpp=v201, base_keys={}, config=ENERGY) as rig:
        await charging_201(rig)
        body = profile_201("TxDefaultProfile", (0, CSMS_A))
        answer = await rig.cp_call(call201.SetChargingProfile(evse_id=1, charging_profile=body))
        assert answer.status == "Accepted"

        async def composite() -> list[float]:
            result = await rig.cp_call(call201.GetCompositeSchedule(duration=60, evse_id=1))
            assert result.status == "Accepted"
            return [p["limit"] for p in result.schedule["charging_schedule_period"]]

        await both_sources_apply(rig, composite)
