"""The safety reaction does not wait for the event loop (issue 12 §2).

A CSMS flooding the charger with calls, or any slow handler, can keep the asyncio loop busy
for seconds. The hazards must drop the coil all the same: each detector trips the
contactor's interlock on its own thread (the CP sampler, the RCM's GPIO edge), and a
watchdog thread opens every coil when the loop stops beating. These tests run the whole
controller on simulated hardware while charging, hold the loop thread in a ``time.sleep``
(a callback of the test, so nothing on the loop can run), inject the hazard from another
thread while the loop is held, and time the simulated coil pin. Once the loop runs again
the connector machine must still see every hazard and report it as before.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.connector_types import ConnectorStatus
from drivers.errors import FaultKind
from drivers.interlock import Interlock
from drivers.temperature import W1Thermometer
from hw_sim.charger import SimConnector
from hw_sim.w1 import SimW1Thermometer
from tests.support.hazards import CoilClock, hold_loop_and
from tests.support.standalone import Charger, running
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

#: IEC 61851-1 gives the whole chain (controller and contactor) 100 ms.
BOUND_S = 0.1


async def react_while_held(charger: Charger, inject: Callable[[SimConnector], None]) -> float:
    """Charging, hold the loop, inject; the seconds from the injection to the coil drop."""
    await charger.charging()
    sim: SimConnector = charger.app.sim.connector(1)
    clock = CoilClock(sim)
    stamps = hold_loop_and(lambda: inject(sim))
    await asyncio.sleep(0)  # the hold runs here
    assert "released" in stamps, "the loop was not held"
    assert clock.dropped_at is not None, "the coil was still energized when the loop came back"
    assert clock.dropped_at < stamps["released"], "the coil dropped only after the loop came back"
    return clock.dropped_at - stamps["injected"]


@pytest.mark.parametrize(
    ("name", "inject", "status", "fault"),
    [
        ("RCD trip", lambda sim: sim.rcm.trip(), ConnectorStatus.FAULTED, FaultKind.RCD_TRIP),
        ("EV C -> B", lambda sim: sim.ev.pause(), ConnectorStatus.SUSPENDED_EV, None),
        ("CP short (E)", lambda sim: setattr(sim, "cp_short", True), None, FaultKind.CP_ERROR),
    ],
)
async def test_a_hazard_drops_the_coil_while_the_loop_is_held(
    tmp_path: Path,
    name: str,
    inject: Callable[[SimConnector], None],
    status: ConnectorStatus | None,
    fault: FaultKind | None,
) -> None:
    async with running(tmp_path / "state") as charger:
        reaction_s = await react_while_held(charger, inject)
        assert reaction_s < BOUND_S, f"{name}: coil dropped {reaction_s * 1000:.0f} ms after it"
        # The loop is back: the machine does the bookkeeping as it always did.
        if status is not None:
            await until(lambda: charger.status() is status, what=f"{name}: {status}")
        if fault is not None:
            await until(lambda: charger.fault() is fault, what=f"{name}: fault {fault}")
        assert not charger.hw("coil_energized")


async def test_the_watchdog_opens_the_coil_when_the_loop_stalls_and_charging_resumes(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "state") as charger:
        limit_s = charger.supervisor.loop_stall_s
        await charger.charging()
        sim: SimConnector = charger.app.sim.connector(1)
        clock = CoilClock(sim)
        stamps = hold_loop_and(lambda: None, hold_s=limit_s + 1.0)
        held_at = time.monotonic()
        await asyncio.sleep(0)
        assert clock.dropped_at is not None, "a silent loop left the coil energized"
        stall_s = clock.dropped_at - held_at
        # The loop beats every quarter of the limit: its last beat came up to that before.
        assert 0.7 * limit_s <= stall_s < limit_s + 0.5, f"coil dropped {stall_s:.2f} s in"
        assert clock.dropped_at < stamps["released"]
        # Back on the loop: the session goes on through the normal close path.
        await until(lambda: charger.hw("coil_energized"), what="the contactor closed again")
        assert charger.status() is ConnectorStatus.CHARGING
        assert len(charger.transactions()) == 1


def test_an_overtemperature_trips_the_interlock_on_the_reading_thread(tmp_path: Path) -> None:
    sensor = SimW1Thermometer(tmp_path)
    sensor.set_c(95.0)
    dropped_on: list[str] = []
    interlock = Interlock("contactor", lambda: dropped_on.append(threading.current_thread().name))
    thermometer = W1Thermometer(tmp_path, sensor.device_id)
    thermometer.guard_above(interlock, 80.0)
    seen_tripped: list[bool] = []

    async def read() -> float:
        celsius = await thermometer.read_c()
        seen_tripped.append(interlock.tripped)
        return celsius

    assert asyncio.run(read()) == pytest.approx(95.0)
    assert dropped_on and dropped_on[0] != threading.current_thread().name
    assert seen_tripped == [False]  # re-armed as the reading reached the caller
    sensor.set_c(60.0)
    asyncio.run(read())
    assert len(dropped_on) == 1  # no trip below the limit
