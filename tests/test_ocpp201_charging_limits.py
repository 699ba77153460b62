"""External charging limits (issue 14, K12 and K13): a local limit source (the fuse manager,
the owner's limit) that holds an EVSE below what the CSMS allows is told to the CSMS as
NotifyChargingLimit (chargingLimitSource EMS; with the limit as a schedule when
SmartChargingCtrlr.NotifyChargingLimitWithSchedules says so), and ClearedChargingLimit when
it lifts; small changes (within LimitChangeSignificance) and quick swings are not a flood.

The whole controller on simulated hardware against the bundled CSMS speaking 2.0.1 (which
fails a test on any schema violation); the local limit is set as the edges set it,
through ``Supervisor.set_limit``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controller.limits import LimitSource
from controller.local_csms import LocalCsms
from controller.ocpp201.charging_limits import MIN_GAP_S
from tests.support.charging_profiles import profile, set_profile
from tests.support.device_model import QUIET_KEYS, V201, set_variable
from tests.support.sim_app import AppRig, controller

SOURCE = LimitSource.USER


def set_local_limit(rig: AppRig, current_a: float | None) -> None:
    supervisor = rig.app.supervisor
    assert supervisor is not None
    supervisor.set_limit(1, SOURCE, current_a)


def told(csms: LocalCsms, after: int = 0) -> list[tuple[str, dict[str, object]]]:
    return [
        (r.action, r.payload)
        for r in csms.received[after:]
        if r.action in ("NotifyChargingLimit", "ClearedChargingLimit")
    ]


@pytest.mark.timing  # the second message comes MIN_GAP_S after the first, not sooner
async def test_a_local_limit_below_the_csms_is_notified_rate_limited_and_cleared(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        set_local_limit(rig, 10.0)
        first = await csms.wait_for("NotifyChargingLimit", after=mark)
        first_at = csms.received[-1].monotonic_s
        # within LimitChangeSignificance (10 %) of what was told: not worth a message. It
        # stands through the gap and two meter samples after it (one a second): on purpose a
        # fixed time, as what is shown is that nothing is sent
        set_local_limit(rig, 9.5)
        await asyncio.sleep(MIN_GAP_S + 2.0)
        assert (
            await set_variable(
                rig, "SmartChargingCtrlr", "NotifyChargingLimitWithSchedules", "true"
            )
            == "Accepted"
        )
        set_local_limit(rig, 6.0)
        second = await csms.wait_for("NotifyChargingLimit", after=len(csms.received))
        second_at = next(
            r.monotonic_s for r in reversed(csms.received) if r.action == "NotifyChargingLimit"
        )
        set_local_limit(rig, None)
        cleared = await csms.wait_for("ClearedChargingLimit", after=mark)
    assert first == {"chargingLimit": {"chargingLimitSource": "EMS"}, "evseId": 1}
    assert second["chargingLimit"] == {"chargingLimitSource": "EMS"}
    [schedule] = second["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "A"
    assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6.0}]
    assert cleared == {"chargingLimitSource": "EMS", "evseId": 1}
    assert second_at - first_at >= MIN_GAP_S * 0.95
    assert [action for action, _ in told(csms, mark)] == [
        "NotifyChargingLimit",
        "NotifyChargingLimit",
        "ClearedChargingLimit",
    ]


async def test_a_local_limit_above_the_csms_profile_is_not_an_external_limit(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        station_max = profile("ChargingStationMaxProfile", (0, 8.0))
        assert await set_profile(rig, 0, station_max) == "Accepted"
        mark = rig.mark()
        set_local_limit(rig, 10.0)  # the CSMS allows less: the local limit changes nothing
        # two meter samples (one a second) look at it: on purpose a fixed time, as what is
        # shown is that nothing is sent
        await asyncio.sleep(2.5)
        quiet = told(csms, mark)
        set_local_limit(rig, 7.0)  # now it is the local limit that holds the car back
        notified = await csms.wait_for("NotifyChargingLimit", after=mark)
    assert quiet == []
    assert notified == {"chargingLimit": {"chargingLimitSource": "EMS"}, "evseId": 1}
