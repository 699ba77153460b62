"""How fast a control pilot change reaches the controller, and what CP sampling costs.

End to end on the simulated charger: the simulated car changes state (C -> B, as when it
stops asking for energy) and we time the CP driver's ``on_state`` callback on the loop,
which has gone through the sampling thread, the ADS1115 driver, the SMBus stand-in and the
simulated chip, debouncing and ``call_soon_threadsafe``. Prints median and p99.

    .venv/bin/python bench/cp_latency.py [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from controller.config import parse_config
from controller.sim_root import start_simulation
from drivers.base import CpReading, CpState, ignore_events


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def measure(changes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sim, hardware, _ = await start_simulation(
            parse_config({}), Path(tmp), connectors=1, speed=1.0, on_event=ignore_events
        )
        c = hardware.connectors[0]
        seen: dict[CpState | None, float] = {}
        changed = asyncio.Event()

        def on_state(reading: CpReading) -> None:
            seen[reading.state] = time.monotonic()
            changed.set()

        async def wait(state: CpState) -> float:
            while state not in seen:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 2.0)
            return seen.pop(state)

        sensor = asyncio.create_task(c.pilot.sensor.run(on_state, ignore_events))
        try:
            c.pilot.generator.offer_current(16.0)
            await sim.handle({"action": "plug"})
            await wait(CpState.C)
            to_b: list[float] = []
            to_c: list[float] = []
            for _ in range(changes):
                await asyncio.sleep(0.013)  # a random-ish phase against the 10 ms sampler
                seen.clear()
                started = time.monotonic()
                await sim.handle({"action": "pause"})
                to_b.append(await wait(CpState.B) - started)
                seen.clear()
                started = time.monotonic()
                await sim.handle({"action": "charge"})
                to_c.append(await wait(CpState.C) - started)
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(5.0)
            cpu_share = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        finally:
            sensor.cancel()
            await asyncio.gather(sensor, return_exceptions=True)
            await hardware.close()
            await sim.stop()

    for name, values in (("C -> B (safety direction)", to_b), ("B -> C", to_c)):
        print(
            f"{name:26s} n={len(values)}  median {statistics.median(values) * 1000:6.1f} ms"
            f"  p99 {_percentile(values, 99) * 1000:6.1f} ms  max {max(values) * 1000:6.1f} ms"
        )
    print(f"CPU while sampling (whole simulated board, PWM on): {cpu_share * 100:.1f} % of a core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    asyncio.run(measure(parser.parse_args().changes))


if __name__ == "__main__":
    main()
