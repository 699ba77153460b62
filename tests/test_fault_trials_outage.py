"""CSMS outages during sessions, short version of bench/fault_trials.py: the CSMS refuses
connections, drops every connection as soon as it is up, or freezes (an open link that
answers nothing), while a session charges, while it stops, and from before it starts.
Afterwards the CSMS has every transaction message the charge point made, in order, with the
CSMS's transactionId and the timestamp of the moment it happened."""

from __future__ import annotations

from pathlib import Path

from bench.fault_trials import outage_summary, run_outage_trials

COMBOS = [("refuse", "charging"), ("flap", "stop"), ("freeze", "start")]


async def test_after_each_outage_the_csms_has_every_transaction_message_in_order(
    tmp_path: Path,
) -> None:
    results, violations = await run_outage_trials(
        len(COMBOS), seed=3, workdir=tmp_path, durations_s=(1.0,), combos=COMBOS
    )
    assert not violations
    for r in results:
        assert r.reasons == [], (r.mode, r.plan, r.reasons)
        assert r.generated >= 2 and r.delivered == r.generated, (r.mode, r.plan)
    summary = outage_summary(results)
    for key in ("lost", "out_of_order", "duplicated", "wrong_id", "restamped"):
        assert summary[key] == 0, key
    # messages made offline arrived late but carry the time they happened
    assert summary["longest_delay_s"] >= 1.0
