"""OCPP 2.0.1 periodic variable monitors (N02: MonitorEnumType Periodic and
PeriodicClockAligned) on EVSE.Power: each period a NotifyEvent (trigger Periodic) with the
value, against the whole controller on simulated hardware and the bundled CSMS; and when a
period falls due, as pure functions.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.csms.wire import parse_iso
from controller.domain import utc_now
from controller.local_csms import LocalCsms
from controller.ocpp201.monitor_periods import CLOCK_ALIGNED, PERIODIC, first_due, next_due
from tests.support.device_model import QUIET_KEYS, V201, monitor_events
from tests.support.sim_app import controller
from tests.support.wait import until

T0 = dt.datetime(2026, 12, 6, 11, 0, 0, 300_000, tzinfo=dt.UTC)


def monitor(kind: str, period_s: float, severity: int = 5) -> dict[str, Any]:
    return {
        "value": period_s,
        "type": kind,
        "severity": severity,
        "component": {"name": "EVSE", "evse": {"id": 1}},
        "variable": {"name": "Power"},
    }


def into_period(at: dt.datetime) -> float:
    """Seconds since the last even second of the day (a 2 s period's boundary)."""
    return (at.second % 2) + at.microsecond / 1e6


async def test_a_periodic_monitor_reports_the_power_every_period_until_cleared(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(
            call.SetVariableMonitoring(
                set_monitoring_data=[
                    monitor(PERIODIC, 1),
                    monitor(PERIODIC, 1, severity=3),
                    monitor(PERIODIC, 0.5),  # faster than a report a second: refused
                ]
            )
        )
        cleared_id, kept_id = (r["id"] for r in answer.set_monitoring_result[:2])
        await until(lambda: len(monitor_events(csms, cleared_id)) >= 3, timeout_s=10)
        mark = rig.mark()
        listed = await rig.cp_call(
            call.GetMonitoringReport(request_id=4, monitoring_criteria=["PeriodicMonitoring"])
        )
        report = await csms.wait_for("NotifyMonitoringReport", after=mark)
        await rig.cp_call(call.ClearVariableMonitoring(id=[cleared_id]))
        mark = rig.mark()
        # two periods of the monitor kept: the cleared one would have reported meanwhile
        await until(lambda: len(monitor_events(csms, kept_id, mark)) >= 2, timeout_s=10)
        after_clear = monitor_events(csms, cleared_id, mark)
    statuses = [r["status"] for r in answer.set_monitoring_result]
    assert statuses == ["Accepted", "Accepted", "Rejected"]
    events = monitor_events(csms, cleared_id)[:3]
    for event in events:
        assert (event["trigger"], event["eventNotificationType"]) == ("Periodic", "CustomMonitor")
        assert event["component"] == {"name": "EVSE", "evse": {"id": 1}}
        assert float(event["actualValue"]) >= 0.0  # idle: the meter reads no power
    stamps = [parse_iso(e["timestamp"]) for e in events]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
    assert all(0.5 < gap < 1.8 for gap in gaps), gaps  # one a period, none missed
    assert listed.status == "Accepted"
    listed_types = [m["type"] for d in report["monitor"] for m in d["variableMonitoring"]]
    assert listed_types == [PERIODIC, PERIODIC]
    assert after_clear == []
    assert csms.violations == []


async def test_a_clock_aligned_monitor_reports_on_the_boundaries_from_midnight(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        # set in the second half of a 2 s period: periods counted from then would end there
        await until(lambda: 1.1 < into_period(utc_now()) < 1.5, timeout_s=5)
        answer = await rig.cp_call(
            call.SetVariableMonitoring(set_monitoring_data=[monitor(CLOCK_ALIGNED, 2)])
        )
        [result] = answer.set_monitoring_result
        await until(lambda: len(monitor_events(csms, result["id"])) >= 2, timeout_s=10)
    assert result["status"] == "Accepted"
    for event in monitor_events(csms, result["id"])[:2]:
        # on the even seconds since midnight: sent just after one
        assert into_period(parse_iso(event["timestamp"])) < 1.0, event["timestamp"]
        assert event["trigger"] == "Periodic"


def test_a_periodic_monitor_counts_its_periods_from_when_it_was_set() -> None:
    first = first_due(PERIODIC, 60, T0)
    assert first == T0 + dt.timedelta(seconds=60)
    assert next_due(PERIODIC, 60, first, first) == T0 + dt.timedelta(seconds=120)


def test_a_clock_aligned_monitor_counts_its_periods_from_midnight() -> None:
    assert first_due(CLOCK_ALIGNED, 60, T0) == dt.datetime(2026, 12, 6, 11, 1, tzinfo=dt.UTC)
    at = dt.datetime(2026, 12, 6, 11, 1, 0, 20_000, tzinfo=dt.UTC)
    due = dt.datetime(2026, 12, 6, 11, 1, tzinfo=dt.UTC)
    assert next_due(CLOCK_ALIGNED, 60, due, at) == dt.datetime(2026, 12, 6, 11, 2, tzinfo=dt.UTC)


def test_a_station_that_fell_behind_reports_once_and_carries_on_from_the_next_period() -> None:
    due = T0 + dt.timedelta(seconds=10)
    late = due + dt.timedelta(seconds=35)  # three and a half periods missed
    assert next_due(PERIODIC, 10, due, late) == due + dt.timedelta(seconds=40)


async def test_a_periodic_monitor_reports_nothing_while_offline_and_goes_on_after(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(
            call.SetVariableMonitoring(set_monitoring_data=[monitor(PERIODIC, 1)])
        )
        [result] = answer.set_monitoring_result
        await until(lambda: len(monitor_events(csms, result["id"])) >= 1, timeout_s=10)
        csms.refuse_connections = True
        await csms.drop_connections()
        await until(lambda: not csms.connected, what="the link down")
        down = utc_now()
        # absence takes time to show: three periods go by offline
        await until(lambda: utc_now() - down > dt.timedelta(seconds=3), timeout_s=10)
        up = utc_now()
        mark = rig.mark()
        csms.refuse_connections = False
        await until(lambda: len(monitor_events(csms, result["id"], mark)) >= 2, timeout_s=20)
    stamps = [parse_iso(e["timestamp"]) for e in monitor_events(csms, result["id"])]
    assert [t for t in stamps if down < t < up] == []  # no value of the outage, queued or not
    assert any(t > up for t in stamps)
