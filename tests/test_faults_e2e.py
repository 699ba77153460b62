"""Every fault the simulator can inject, end to end through the real process.

One `picharge run --sim` process (tests/support/sim_process.py) runs against the loopback CSMS for
the whole file; each case starts a charging session, injects its fault with ``picharge sim
fault ...`` while the car charges, and checks the controller's reaction where it shows:

- the simulated hardware (``picharge sim status``): the coil de-energized and the main
  contacts open (a weld: the coil off, the contacts stuck);
- the CSMS: a StatusNotification Faulted with the fault's errorCode
  (controller/ocpp16/status.py), and the transaction suspended, not ended, meanwhile;
- the recovery after ``picharge sim fault clear``: charging again in the same transaction,
  or, for faults of what is plugged in (a diode, a failed close), Available once unplugged.

Each case leaves the connector Available with the car unplugged for the next one. Never the
simulator's record of what it injected: only what the controller did about it. The time
from injection to the open contactor and to the CSMS hearing Faulted is printed (``-s``).

A lock that fails shows when the socket is locked at the start of a session, not while it
charges: tests/test_sim_contract.py drives it through the real command line (the contactor
stays open, ConnectorLockFailure) together with a jammed unlock (UnlockFailed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from ocpp.v16 import call

from controller.local_csms import LocalCsms
from tests.support.csms import TEST_TAGS
from tests.support.sim_process import SimProcess

pytestmark = pytest.mark.asyncio(loop_scope="module")

CP_ID = "cp-faults"


class Station:
    """The controller process and the CSMS it talks to."""

    def __init__(self, process: SimProcess, csms: LocalCsms) -> None:
        self.process = process
        self.csms = csms
        self._cards = (f"04A1B2{n:02X}" for n in range(256))

    async def tap(self) -> None:
        """A card the CSMS accepts, a new one each time: a reader reports a card once while
        it stays in the field, and sessions here follow each other faster than that."""
        card = next(self._cards)
        self.csms.set_tag(card, "Accepted")
        await self.process.sim("tap", card)

    def mark(self) -> int:
        return len(self.csms.received)

    async def status(
        self, status: str, *, after: int, error_code: str | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return await self.csms.wait_for(
            "StatusNotification",
            lambda p: (
                p["connectorId"] == 1
                and p["status"] == status
                and (error_code is None or p["errorCode"] == error_code)
            ),
            after=after,
            timeout_s=timeout_s,
        )

    def sent(self, action: str, after: int) -> list[dict[str, Any]]:
        return [r.payload for r in self.csms.received[after:] if r.action == action]

    async def charging(self) -> tuple[int, int]:
        """Plug in, ask for energy, tap: returns (mark, transactionId) once charging."""
        mark = self.mark()
        await self.process.sim("plug")
        await self.process.sim("charge")
        await self.status("Preparing", after=mark)
        await self.tap()
        await self.csms.wait_for("StartTransaction", after=mark)
        await self.status("Charging", after=mark)
        await self.process.until(
            lambda s: s["contactor_closed"] and s["ev_current_a"] > 10, "the car charging"
        )
        return mark, max(self.csms.transactions)

    async def contactor_open(self, what: str) -> float:
        return await self.process.until(
            lambda s: not s["coil_energized"] and not s["contactor_closed"], what
        )

    async def unplugged_and_available(self, tx_id: int | None = None) -> None:
        """Unplug; Available, the contactor open and (with ``tx_id``) its StopTransaction
        in (it goes through the outbox, so it may follow the status)."""
        mark = self.mark()
        await self.process.sim("unplug")
        await self.status("Available", after=mark)
        await self.contactor_open("the contactor open with the car gone")
        if tx_id is not None:
            stop = await self.csms.wait_for(
                "StopTransaction", lambda p: p["transactionId"] == tx_id, after=mark
            )
            assert stop["reason"] == "EVDisconnected"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def station(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Station]:
    # The CSMS validates messages on the loop's default executor; this loop lives for the
    # whole module, so its worker threads would outlive a test and count as leaked (see
    # conftest.py): one worker, started here, serves every test.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csms-validation")
    loop = asyncio.get_running_loop()
    loop.set_default_executor(executor)
    await loop.run_in_executor(None, lambda: None)
    csms = LocalCsms(authorized_tags=TEST_TAGS, call_timeout_s=10.0)
    await csms.start()
    process = SimProcess(tmp_path_factory.mktemp("faults"), csms.url, CP_ID)
    process.start()
    try:
        await csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == 1 and p["status"] == "Available",
            timeout_s=20,
        )
        await process.until(lambda s: True, "the control endpoint")
        yield Station(process, csms)
    finally:
        process.stop()
        await csms.stop()
        executor.shutdown(wait=True)
    assert not csms.violations, [v.problem for v in csms.violations]


@pytest_asyncio.fixture(loop_scope="module")
async def idle(station: Station) -> Station:
    """The shared station as each case needs it: no fault, no car, Available, no session
    (a case that failed halfway must not fail the ones after it)."""
    await station.process.sim("fault", "clear")
    await station.process.sim("unplug")
    await station.process.until(
        lambda s: s["ocpp_status"] == "Available" and s["transaction_id"] is None,
        "an idle connector",
        timeout_s=15.0,
    )
    return station


@dataclass(frozen=True)
class Case:
    fault: str
    error_code: str
    #: After clear: "charging" (the same transaction resumes) or "unplug" (the fault
    #: belongs to what is plugged in and ends with it).
    recovery: str
    #: What makes the fault show: most show at once; a failed close at the next close.
    provoke: tuple[str, ...] = ()


CASES = [
    Case("rcd", "GroundFailure", "charging"),
    Case("meter", "PowerMeterFailure", "charging"),
    Case("meter-garbage", "PowerMeterFailure", "charging"),
    Case("cp", "EVCommunicationError", "charging"),
    Case("overtemp", "HighTemperature", "charging"),
    Case("diode", "EVCommunicationError", "unplug"),
    # The contacts drop out and will not close again; the controller learns it at the next
    # close (the car pauses and asks again): the feedback never confirms.
    Case("close-fail", "PowerSwitchFailure", "unplug", provoke=("pause", "charge")),
    # The mains judged from the meter's phase voltages, and the state database refusing
    # writes (its watch probes every 10 s, so its recovery takes up to that long).
    Case("undervoltage", "UnderVoltage", "charging"),
    Case("overvoltage", "OverVoltage", "charging"),
    Case("storage", "InternalError", "charging"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
async def test_fault_during_charging_opens_reports_suspends_and_recovers(
    idle: Station, case: Case
) -> None:
    station = idle
    mark, tx_id = await station.charging()
    injected = time.monotonic()  # the command starting: figures include its ~0.25 s start
    await station.process.sim("fault", case.fault)
    for action in case.provoke:
        await station.process.sim(action)
    faulted = await station.status(
        "Faulted", after=mark, error_code=case.error_code, timeout_s=15.0
    )
    heard = next(
        r.monotonic_s
        for r in station.csms.received[mark:]
        if r.action == "StatusNotification" and r.payload is faulted
    )
    opened = await station.contactor_open("the contactor to open")
    print(
        f"\n{case.fault}: contactor open {1000 * (opened - injected):.0f} ms (poll 20 ms), "
        f"CSMS heard Faulted/{case.error_code} {1000 * (heard - injected):.0f} ms after "
        "`picharge sim fault` started"
    )
    # Suspended, not ended: nothing stopped the transaction.
    assert [p for p in station.sent("StopTransaction", mark) if p["transactionId"] == tx_id] == []

    recovered = station.mark()
    await station.process.sim("fault", "clear")
    if case.recovery == "charging":
        await station.status("Charging", after=recovered, timeout_s=15.0)
        await station.process.until(
            lambda s: s["contactor_closed"] and s["ev_current_a"] > 10, "charging again"
        )
        await station.unplugged_and_available(tx_id)
    else:
        await station.unplugged_and_available(tx_id)
        # Back in service: the next session charges.
        _, next_tx = await station.charging()
        await station.unplugged_and_available(next_tx)


async def test_rcm_self_test_failure_blocks_the_next_session_until_a_test_passes(
    idle: Station,
) -> None:
    """The RCM is tested before each session: broken during a session, it shows when the
    next car arrives (Faulted, GroundFailure, no transaction, coil never energized); a card
    is a new attempt, tested again; once the RCM answers, that attempt charges."""
    station = idle
    _, tx_id = await station.charging()
    await station.process.sim("fault", "rcd-selftest")
    await station.unplugged_and_available(tx_id)  # the running session is not disturbed

    mark = station.mark()
    await station.process.sim("plug")
    await station.process.sim("charge")
    await station.status("Faulted", after=mark, error_code="GroundFailure")
    log_mark = len(station.process.log())
    await station.tap()  # an attempt while still broken
    await _wait_log(station, "RCM self-test failed", log_mark)
    assert station.sent("StartTransaction", mark) == []
    status = station.process.status()
    assert status is not None and not status["coil_energized"]

    await station.process.sim("fault", "clear")  # the RCM answers TEST again
    retry = station.mark()
    await station.tap()  # the next attempt: tested, passes
    await station.csms.wait_for("StartTransaction", after=retry)
    await station.status("Charging", after=retry)
    await station.process.until(lambda s: s["contactor_closed"], "charging after the retest")
    await station.unplugged_and_available(max(station.csms.transactions))


async def _wait_log(station: Station, text: str, since: int) -> None:
    await station.process.until(lambda s: text in station.process.log()[since:], repr(text))


async def test_weld_latches_until_the_controller_restarts(idle: Station) -> None:
    """Welded contacts show when the contactor should open (the car pauses): the coil drops
    but the contacts stay closed; Faulted, PowerSwitchFailure, and a clear of the simulated
    fault does not end it (a human must look); a restart (Hard Reset) does. Last: it
    restarts the shared process."""
    station = idle
    mark, _ = await station.charging()
    await station.process.sim("fault", "weld")
    await station.process.sim("pause")
    await station.status("Faulted", after=mark, error_code="PowerSwitchFailure")
    await station.process.until(
        lambda s: not s["coil_energized"] and s["contactor_closed"], "coil off, contacts stuck"
    )
    await station.process.sim("fault", "clear")  # the contacts are free again ...
    await station.contactor_open("the repaired contacts open")
    await station.process.sim("charge")  # ... but the controller keeps the latch
    cleared = station.mark()
    result = await station.csms.call(CP_ID, call.Reset(type="Hard"))
    assert result.status == "Accepted"
    stop = await station.csms.wait_for("StopTransaction", after=mark)
    assert stop["reason"] == "HardReset"
    assert not [p for p in station.sent("StatusNotification", mark) if p["status"] == "Charging"][
        1:
    ], "charged again with a latched weld"
    await station.csms.wait_for("BootNotification", after=cleared, timeout_s=20)
    # the car stays plugged in through the restart (as a real one does): the latch is gone
    # and the connector waits for a card; taking the car away leaves it Available
    await station.status("Preparing", after=cleared, timeout_s=20)
    await station.process.sim("unplug")
    await station.status("Available", after=cleared, timeout_s=20)
