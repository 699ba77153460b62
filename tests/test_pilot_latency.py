"""How fast a CP change reaches the controller, and what sampling costs, with default settings.

Measured end to end on the simulated board: the test changes the simulated EV's state on the
loop thread and timestamps the ``on_state`` callback, which has gone through the sampling
thread, the ADS1115 driver, the simulated bus and chip, debouncing and
``call_soon_threadsafe``. Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.ads1115 import Ads1115
from drivers.base import CpState
from drivers.pilot_sensor import AdcPilotSensor
from hw_sim.ads1115 import SimAds1115
from hw_sim.smbus import SimSMBus
from tests.test_pilot_sensor import CpBench

DEFAULTS: dict[str, Any] = {"sample_period_s": 0.01, "duty_settle_s": 0.02}


async def _change(bench: CpBench, state: CpState) -> float:
    """Set the EV's state at a random phase of the sampler; seconds until on_state has it."""
    await asyncio.sleep(random.uniform(0.0, 0.01))
    count = len(bench.readings)
    started = time.monotonic()
    bench.ev_state = state
    await bench.wait_for(lambda: len(bench.readings) > count)
    assert bench.readings[-1].state is state
    return bench.reading_times[count] - started


def _summary(name: str, latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)))]
    print(
        f"\n{name}: n={len(ordered)} median {median * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )
    return median, p99


async def test_safety_changes_reach_the_controller_well_within_100_ms(tmp_path: Path) -> None:
    bench = CpBench(tmp_path, **DEFAULTS)
    bench.start()
    try:
        bench.generator.offer_current(32.0)  # PWM on: two conversions per sample
        await bench.wait_state(CpState.A)
        fast = [await _change(bench, (CpState.B, CpState.A)[i % 2]) for i in range(200)]
        median, p99 = _summary("A<->B (fast debounce, PWM on)", fast)
        assert median < 0.04 and p99 < 0.08

        c_to_b = []
        for _ in range(10):
            await _change(bench, CpState.C)
            c_to_b.append(await _change(bench, CpState.B))
        median, p99 = _summary("C->B", c_to_b)
        assert median < 0.04 and p99 < 0.08
    finally:
        await bench.stop()


async def _cpu_share(seconds: float) -> float:
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu) / (time.monotonic() - wall)


async def test_sampling_costs_a_small_fraction_of_a_core(tmp_path: Path) -> None:
    """Process CPU (user + system) while the loop idles and the sampler runs.

    Closed loop: includes the simulator's own work (reading the PWM back from sysfs for every
    conversion). Driver only: constant ADC inputs, so what remains is the sensor thread, the
    ADS1115 driver and the (cheap) simulated bus; on a Pi the kernel's I2C driver replaces it.
    """
    bench = CpBench(tmp_path, **DEFAULTS)
    bench.start()
    try:
        bench.ev_state = CpState.C
        for label, current_a in (("x1, one conversion/sample", 0.0), ("PWM on, two", 32.0)):
            bench.generator.offer_current(current_a)
            await bench.wait_state(CpState.C)
            conversions = bench.chip.conversions
            started = time.monotonic()
            share = await _cpu_share(0.5)
            rate = (bench.chip.conversions - conversions) / (time.monotonic() - started)
            print(f"\nclosed loop, {label}: {share * 100:.1f} % of a core, {rate:.0f} conv/s")
            assert share < 0.25
    finally:
        await bench.stop()

    for label, duty in (("x1, one conversion/sample", 100.0), ("PWM on, two", 53.3)):
        chip = SimAds1115(lambda channel: 1.98 if channel == 0 else 0.33)  # C, -12 V
        bus = SimSMBus()
        bus.attach(0x48, chip)
        sensor = AdcPilotSensor(Ads1115(bus), functools.partial(float, duty))
        task = asyncio.create_task(sensor.run(lambda reading: None, lambda event: None))
        await asyncio.sleep(0.15)
        share = await _cpu_share(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        print(f"\ndriver only, {label}: {share * 100:.1f} % of a core")
        assert share < 0.15
