"""Hazards injected the way hardware raises them, timed at the coil: the one measure the
flood tests (CSMS, web, MQTT, a stuck event listener) share."""

from __future__ import annotations

import asyncio
import time

from tests.support.standalone import Charger


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
