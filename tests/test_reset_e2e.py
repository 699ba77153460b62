"""A CSMS Reset end to end through the real process, including the re-exec after it.

`picharge run --sim` runs as a child process (tests/support/sim_process.py) against the loopback
CSMS. While a car charges, the CSMS sends Reset Hard or Soft. The controller must stop the
transaction with reason HardReset/SoftReset before it goes, re-execute itself (the same
process id, a fresh program; the simulated car is still plugged in, as a real one stays
through a charger's reboot, and waits for a new card), boot again (a new
BootNotification, the ResetOrReboot security event naming the reset), recover nothing more
for the stopped transaction, and charge the next session on the meter that kept counting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ocpp.v16 import call

from controller.local_csms import LocalCsms
from tests.support.sim_process import SimProcess, process_alive

CP_ID = "cp-reset"


def _index(csms: LocalCsms, action: str, after: int) -> int:
    return next(i for i, r in enumerate(csms.received) if i >= after and r.action == action)


async def _charging(csms: LocalCsms, process: SimProcess) -> int:
    """Plug in, ask for energy, tap; returns the CSMS's transactionId once charging."""
    mark = len(csms.received)
    await process.sim("plug")
    await process.sim("charge")
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 1 and p["status"] == "Preparing",
        after=mark,
    )
    card = f"04A1B2{len(csms.transactions):02X}"  # a new card: the last may still be in the field
    csms.set_tag(card, "Accepted")
    await process.sim("tap", card)
    await csms.wait_for("StartTransaction", after=mark)
    await process.until(lambda s: s["contactor_closed"] and s["ev_current_a"] > 10, "charging")
    return max(csms.transactions)


@pytest.mark.parametrize("kind", ["Hard", "Soft"])
async def test_reset_stops_the_transaction_re_executes_and_boots_again(
    csms: LocalCsms, tmp_path: Path, kind: str
) -> None:
    process = SimProcess(tmp_path, csms.url, CP_ID)
    process.start()
    try:
        await csms.wait_for("BootNotification", timeout_s=20)
        tx_id = await _charging(csms, process)
        pid = process.pid

        mark = len(csms.received)
        result = await csms.call(CP_ID, call.Reset(type=kind))
        assert result.status == "Accepted"

        stop = await csms.wait_for("StopTransaction", after=mark)
        assert stop["transactionId"] == tx_id
        assert stop["reason"] == f"{kind}Reset"
        boot = _index(csms, "StopTransaction", mark)
        await csms.wait_for("BootNotification", after=boot, timeout_s=20)
        # The same process (re-executed in place, as a systemd unit needs it), a new program:
        # the simulation started afresh with the car still plugged in and the contactor open.
        assert process.process is not None and process.process.poll() is None
        assert process_alive(pid) and process.pid == pid
        fresh = await process.until(lambda s: True, "the control endpoint after the re-exec")
        del fresh
        status = process.status()
        assert status is not None
        assert status["ev_plugged"] is True and status["contactor_closed"] is False
        event = await csms.wait_for(
            "SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot", timeout_s=20
        )
        assert kind in event.get("techInfo", "")
        await csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == 1 and p["status"] == "Preparing",
            after=boot,
        )
        await process.sim("unplug")
        await csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == 1 and p["status"] == "Available",
            after=boot,
        )

        # The next session charges; the stopped one was not recovered as interrupted (the
        # outbox sends in order: a recovery StopTransaction would come before this start).
        after_boot = len(csms.received)
        next_tx = await _charging(csms, process)
        assert next_tx != tx_id
        start = await csms.wait_for("StartTransaction", after=after_boot)
        assert start["meterStart"] >= stop["meterStop"]  # the meter kept counting
        stops = [r.payload for r in csms.received if r.action == "StopTransaction"]
        assert [s["transactionId"] for s in stops] == [tx_id]
    finally:
        exit_code = process.stop()
    assert exit_code == 0, process.log()[-3000:]
