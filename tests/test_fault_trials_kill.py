"""Power cuts, short version of bench/fault_trials.py: `picharge run --sim` in its own process,
killed with SIGKILL while the CSMS handles its StartTransaction, while charging, and just
after the CSMS answered its StopTransaction, then restarted on the same state directory.
Each transaction must be closed exactly once at the CSMS, with meterStop within one meter
reading of the simulated meter's register."""

from __future__ import annotations

from pathlib import Path

from bench.fault_trials import ROUNDING_WH, kill_summary, run_kill_trials

MOMENTS = (
    ("start", "csms-before-answer"),
    ("charging", "charging"),
    ("stop", "csms-after-answer"),
)


async def test_a_controller_killed_at_start_while_charging_and_at_stop_loses_nothing(
    tmp_path: Path,
) -> None:
    results, repeated_starts, violations = await run_kill_trials(
        len(MOMENTS), seed=7, workdir=tmp_path, moments=MOMENTS
    )
    summary = kill_summary(results, repeated_starts)
    assert not violations
    assert {(r.phase, r.moment) for r in results} == set(MOMENTS)
    for r in results:
        assert r.reasons == [], (r.phase, r.moment, r.reasons)
        assert r.transactions == r.closed == 1, (r.phase, r.moment)
        assert r.meter_stop_error_wh <= r.reading_wh + ROUNDING_WH, (r.phase, r.moment)
    assert summary["lost"] == 0 and summary["duplicated"] == 0
    # the StartTransaction killed in flight was sent again and recognised, not duplicated
    assert repeated_starts >= 1
    charged = next(r for r in results if r.phase == "charging")
    assert charged.energy_wh > 0  # a power cut while energy flowed, billed up to the cut
