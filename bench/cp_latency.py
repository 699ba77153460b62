"""How fast a control pilot change reaches the controller, and what CP sampling costs.

The CP driver alone (no supervisor, no OCPP) on the simulated charger, as configured by
default: the simulated car changes state and the CP driver's ``on_state`` callback is timed
on the loop, having gone through the sampling thread, the ADS1115 driver, the SMBus
stand-in and the simulated chip (whose conversion takes 1/860 s, as the real one's),
debouncing and ``call_soon_threadsafe``. With the PWM on: C -> B (the safety direction,
2 samples) and B -> C (10 samples, while the car waits for the car: 10 ms apart).

Then the sampling thread's CPU in each of its three rates, split into the driver's share and
the simulated chip's (timed inside the simulated bus: on a Pi that is the kernel's I2C work,
which the simulator does not model). ``--sweep`` repeats the C -> B figure and the charging
CPU for several ``sample_period_s``: the trade-off between reaction time and CPU.

    .venv/bin/python bench/cp_latency.py [--changes 200] [--sample-period-s 0.0012] [--sweep]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import figure
from cpuclock import SimBusClock

from controller.config import parse_config
from controller.sim_root import start_simulation
from drivers.base import CpReading, CpState, ignore_events

CPU_WINDOW_S = 3.0


class SamplerCpu:
    """CPU of the ``cp-sampler`` thread, and the part of it inside the simulated bus."""

    def __init__(self, bus: SimBusClock) -> None:
        self._bus = bus
        thread = next(t for t in threading.enumerate() if t.name == "cp-sampler")
        assert thread.ident is not None
        self._clock = time.pthread_getcpuclockid(thread.ident)

    async def measure(self, window_s: float) -> tuple[float, float]:
        """(driver, simulated chip) in % of one core over ``window_s``."""
        cpu0, bus0, wall0 = time.clock_gettime(self._clock), self._bus.seconds, time.monotonic()
        await asyncio.sleep(window_s)
        wall = time.monotonic() - wall0
        total = time.clock_gettime(self._clock) - cpu0
        sim = self._bus.seconds - bus0
        return 100 * (total - sim) / wall, 100 * sim / wall


async def measure(changes: int, period_s: float, bus: SimBusClock) -> dict[str, Any]:
    section = {"sample_period_s": period_s, "waiting_sample_period_s": max(0.01, period_s)}
    with tempfile.TemporaryDirectory() as tmp:
        sim, hardware, _ = await start_simulation(
            parse_config({"connector": [section]}),
            Path(tmp),
            connectors=1,
            speed=1.0,
            on_event=ignore_events,
        )
        c = hardware.connectors[0]
        seen: dict[CpState | None, float] = {}
        changed = asyncio.Event()

        def on_state(reading: CpReading) -> None:
            seen[reading.state] = time.monotonic()
            changed.set()

        async def wait(state: CpState) -> float:
            async with asyncio.timeout(5.0):
                while state not in seen:
                    changed.clear()
                    await changed.wait()
            return seen.pop(state)

        sensor = asyncio.create_task(c.pilot.sensor.run(on_state, ignore_events))
        result: dict[str, Any] = {}
        try:
            c.pilot.generator.offer_current(0.0)  # x1, as the controller keeps it with no car
            await wait(CpState.A)
            cpu = SamplerCpu(bus)
            result["cpu idle"] = await cpu.measure(CPU_WINDOW_S)
            ev = sim.connector(1).ev
            ev.plug()
            ev.pause()  # plugged in, not asking for energy yet
            c.pilot.generator.offer_current(16.0)
            await wait(CpState.B)
            result["cpu waiting"] = await cpu.measure(CPU_WINDOW_S)
            ev.charge()
            await wait(CpState.C)
            result["cpu charging"] = await cpu.measure(CPU_WINDOW_S)
            to_b: list[float] = []
            to_c: list[float] = []
            for _ in range(changes):
                await asyncio.sleep(random.uniform(0.005, 0.02))  # a random sampler phase
                seen.clear()
                started = time.monotonic()
                ev.pause()
                to_b.append(await wait(CpState.B) - started)
                await asyncio.sleep(random.uniform(0.005, 0.02))
                seen.clear()
                started = time.monotonic()
                ev.charge()
                to_c.append(await wait(CpState.C) - started)
            result["to_b"], result["to_c"] = to_b, to_c
        finally:
            sensor.cancel()
            await asyncio.gather(sensor, return_exceptions=True)
            await hardware.close()
            await sim.stop()
    return result


def cpu_line(name: str, split: tuple[float, float]) -> str:
    driver, sim = split
    return f"CPU {name:44s} driver {driver:5.2f} % of a core (+ simulated chip {sim:5.2f} %)"


async def run(changes: int, period_s: float, sweep: bool) -> None:
    bus = SimBusClock()
    bus.install()
    r = await measure(changes, period_s, bus)
    print(figure("C -> B reaches the controller (PWM on)", r["to_b"]))
    print(figure("B -> C reaches the controller (PWM on)", r["to_c"]))
    print(cpu_line("sampling, no PWM (every 200 ms)", r["cpu idle"]))
    print(cpu_line("sampling, PWM on, car in B (every 10 ms)", r["cpu waiting"]))
    print(cpu_line(f"sampling, PWM on, car in C (every {period_s * 1000:g} ms)", r["cpu charging"]))
    if sweep:
        print("sample_period_s  C->B median  C->B p99  driver CPU in C")
        for period in (0.0012, 0.0015, 0.003, 0.005, 0.01, 0.02):
            s = await measure(changes, period, bus)
            to_b = sorted(s["to_b"])
            median, p99 = to_b[len(to_b) // 2], to_b[min(len(to_b) - 1, round(0.99 * len(to_b)))]
            print(
                f"{period:15.4f}  {median * 1000:8.2f} ms  {p99 * 1000:6.2f} ms"
                f"  {s['cpu charging'][0]:6.2f} %"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200, help="C->B->C cycles (200)")
    parser.add_argument("--sample-period-s", type=float, default=0.0012, help="(0.0012)")
    parser.add_argument("--sweep", action="store_true", help="also try other sample periods")
    args = parser.parse_args()
    asyncio.run(run(args.changes, args.sample_period_s, args.sweep))


if __name__ == "__main__":
    main()
