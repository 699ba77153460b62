"""Hazards injected the way hardware raises them, timed at the coil: the one measure the
flood tests (CSMS, web, MQTT, a stuck event listener) share, and the loop held in a sleep
while a hazard comes (the blocked-loop tests of the CP sampler, the RCM and the CP window
comparator)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from hw_sim.charger import SimConnector
from tests.support.standalone import Charger

#: How long a test holds the loop: well beyond a hazard's reaction, short of the watchdog.
HOLD_S = 1.0
#: The name of the thread :func:`hold_loop_and` injects on.
INJECTOR = "test-injector"


async def rcd_trip_to_coil_low_s(charger: Charger) -> float:
    """Trip the RCD of the first connector from another thread (hardware does not wait for
    the loop); the seconds until the contactor's coil pin went low, stamped on the thread
    that moved it, so a busy loop cannot hide a late coil."""
    contactor = charger.app.sim.connectors[0].contactor
    loop = asyncio.get_running_loop()
    low: asyncio.Future[float] = loop.create_future()

    def on_coil(energized: bool) -> None:
        if not energized:
            stamp = time.monotonic()
            loop.call_soon_threadsafe(lambda: low.done() or low.set_result(stamp))

    contactor.add_coil_listener(on_coil)

    def trip() -> float:
        stamp = time.monotonic()
        charger.app.sim.connectors[0].rcm.trip()
        return stamp

    tripped = await asyncio.to_thread(trip)
    return await asyncio.wait_for(low, 2.0) - tripped


class CoilClock:
    """When the simulated coil dropped, and on which thread, stamped on the thread that
    moved the pin."""

    def __init__(self, sim: SimConnector) -> None:
        self.dropped_at: float | None = None
        self.dropped_on: str | None = None
        sim.contactor.add_coil_listener(self._changed)

    def _changed(self, energized: bool) -> None:
        if not energized and self.dropped_at is None:
            self.dropped_at = time.monotonic()
            self.dropped_on = threading.current_thread().name


def hold_loop_and(inject: Callable[[], None], hold_s: float = HOLD_S) -> dict[str, float]:
    """Hold the running loop in a sleep and call ``inject`` from a thread meanwhile.

    Call on the loop, then yield to it (``await asyncio.sleep(0)``): the hold runs then.
    The dict gets "injected" (when ``inject`` was called) and "released" (when the hold
    ended), both monotonic. The injecting thread is named :data:`INJECTOR`.
    """
    loop = asyncio.get_running_loop()
    held = threading.Event()
    stamps: dict[str, float] = {}

    def hold() -> None:  # on the loop thread: nothing else on the loop runs meanwhile
        held.set()
        time.sleep(hold_s)
        stamps["released"] = time.monotonic()

    def injector() -> None:
        held.wait(5.0)
        time.sleep(0.05)  # well inside the hold
        stamps["injected"] = time.monotonic()
        inject()

    thread = threading.Thread(target=injector, name=INJECTOR)
    thread.start()
    loop.call_soon(hold)
    loop.call_soon(thread.join)
    return stamps
