"""CSMS outages during sessions, short version of bench/fault_trials.py: the CSMS refuses
connections, drops every connection as soon as it is up, or freezes (an open link that
answers nothing), while a session charges, while it stops, and from before it starts; under
OCPP 1.6 and 2.0.1 alike. Afterwards the CSMS has every transaction message the charge point
made, in order, with the transaction's id and the timestamp of the moment it happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fault_trials import outage_summary, run_outage_trials

COMBOS = [("refuse", "charging"), ("flap", "stop"), ("freeze", "start")]


@pytest.mark.parametrize("ocpp", ["1.6", "2.0.1"])
async def test_after_each_outage_the_csms_has_every_transaction_message_in_order(
    tmp_path: Path, ocpp: str
) -> None:
    results, violations = await run_outage_trials(
        len(COMBOS), seed=3, workdir=tmp_path, durations_s=(1.0,), combos=COMBOS, ocpp=ocpp
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
