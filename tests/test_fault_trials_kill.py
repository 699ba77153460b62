"""Power cuts, short version of bench/fault_trials.py: `picharge run --sim` in its own process,
killed with SIGKILL while the CSMS handles its transaction's start, while charging, and just
after the CSMS answered its end, then restarted on the same state directory; under OCPP 1.6
and 2.0.1 alike (one driver and judge). Each transaction must be closed exactly once at the
CSMS, with PowerLoss after a cut (or the reason of what ended it first), its end within one
meter reading of the simulated meter's register, 2.0.1's seqNo without gaps, and nothing
left in the outbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fault_trials import ROUNDING_WH, kill_summary, run_kill_trials

MOMENTS = (
    ("start", "csms-before-answer"),
    ("charging", "charging"),
    ("stop", "csms-after-answer"),
)


@pytest.mark.parametrize("ocpp", ["1.6", "2.0.1"])
async def test_a_controller_killed_at_start_while_charging_and_at_stop_loses_nothing(
    tmp_path: Path, ocpp: str
) -> None:
    results, repeated_starts, violations = await run_kill_trials(
        len(MOMENTS), seed=7, workdir=tmp_path, moments=MOMENTS, ocpp=ocpp
    )
    summary = kill_summary(results, repeated_starts)
    assert not violations
    assert {(r.phase, r.moment) for r in results} == set(MOMENTS)
    for r in results:
        assert r.reasons == [], (r.phase, r.moment, r.reasons)
        assert r.transactions == r.closed == 1, (r.phase, r.moment)
        assert r.meter_stop_error_wh <= r.reading_wh + ROUNDING_WH, (r.phase, r.moment)
    for key in ("lost", "duplicated", "wrong_reason", "sequence_faults", "outbox_left"):
        assert summary[key] == 0, key
    # the start killed in flight was sent again and recognised, not duplicated
    assert repeated_starts >= 1
    charged = next(r for r in results if r.phase == "charging")
    assert charged.energy_wh > 0  # a power cut while energy flowed, billed up to the cut
