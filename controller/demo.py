"""``picharge demo``: a charging session on simulated hardware, through the real drivers.

The script plays the car and the driver of the car through the simulation's control
requests (the same ones ``picharge sim`` sends) and plays the charger through the drivers a
Pi uses: the CP sensor sees the car arrive, the PN532 reader reads the card over a serial
line, the RCM self-test runs, the PWM offers current, the contactor closes only with its
feedback confirming, and every figure printed comes from the Modbus meter.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.config import parse_config
from controller.hardware import ConnectorHardware
from drivers.base import CpReading, CpState, DriverEvent, MeterReading

DEMO_SPEED = 60.0  # one wall-clock second is one minute for the car and the meter
DEMO_CARD = "04A1B2C3"


class Demo:
    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.cp_changed = asyncio.Condition()
        self.cp: CpState | None = None
        self.cards: asyncio.Queue[str] = asyncio.Queue()
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self.started:5.1f}s] {text}")

    def on_cp(self, reading: CpReading) -> None:
        self.cp = reading.state
        self.say(f"CP: state {reading.state} ({reading.high_v:+.1f} V)")

        async def notify() -> None:
            async with self.cp_changed:
                self.cp_changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def on_event(self, event: DriverEvent) -> None:
        if event.fault is not None:
            self.say(f"FAULT {event.device} {event.kind}: {event.detail}")

    async def wait_cp(self, *states: CpState, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s), self.cp_changed:
            await self.cp_changed.wait_for(lambda: self.cp in states)


def _progress(reading: MeterReading, soc_pct: float) -> str:
    currents = "/".join(f"{a or 0.0:4.1f}" for a in reading.current_a)
    return (
        f"charging: I {currents} A  P {(reading.total_power_w or 0) / 1000:5.2f} kW  "
        f"E {reading.energy_import_wh / 1000:6.3f} kWh  car SoC {soc_pct:4.1f} %"
    )


async def _session(demo: Demo, sim: Any, c: ConnectorHardware, charge_s: float) -> None:
    say = demo.say
    c.pilot.generator.offer_current(0)
    await demo.wait_cp(CpState.A)
    say("charger ready: CP +12 V, nothing offered, contactor open")

    await sim.handle({"action": "plug", "connector": 1})
    await demo.wait_cp(CpState.B)
    cable = await c.pilot.proximity.read_cable_rating_a()
    say(f"car plugged in; the cable is rated {cable} A (PP resistor)")

    await sim.handle({"action": "tap", "uid": DEMO_CARD})
    uid = await asyncio.wait_for(demo.cards.get(), 5.0)
    say(f"card {uid} read by the PN532 over its serial line: authorized (demo)")

    await c.rcm.self_test()
    say("RCM self-test passed")

    offer_a = min(16.0, float(cable or 0))
    c.pilot.generator.offer_current(offer_a)
    say(f"offering {offer_a:.0f} A: PWM duty {c.pilot.generator.duty_pct:.1f} %")
    await demo.wait_cp(CpState.C, CpState.D)
    await c.contactor.close()
    say("car asks for energy (state C): contactor closed, feedback contact confirms")

    start = await c.meter.read()
    last = start
    for second in range(int(charge_s)):
        if second == int(charge_s) // 2:
            c.pilot.generator.offer_current(10.0)
            say(f"load limit: offering 10 A (duty {c.pilot.generator.duty_pct:.1f} %)")
        await asyncio.sleep(1.0)
        last = await c.meter.read()
        say(_progress(last, sim.connector(1).ev.soc_pct))

    await sim.handle({"action": "pause", "connector": 1})
    await demo.wait_cp(CpState.B)
    c.contactor.open()
    await c.contactor.verify_open()
    say("car stopped asking (C -> B): contactor opened, feedback confirms it is open")
    c.pilot.generator.offer_current(0)
    await sim.handle({"action": "unplug", "connector": 1})
    await demo.wait_cp(CpState.A)
    say("car unplugged")

    stop = await c.meter.read()
    energy_kwh = (stop.energy_import_wh - start.energy_import_wh) / 1000
    minutes = charge_s * sim.speed / 60
    demo.out("")
    demo.out("Session summary")
    demo.out(f"  card             {uid}")
    demo.out(f"  meter start/stop {start.energy_import_wh:.0f} / {stop.energy_import_wh:.0f} Wh")
    demo.out(f"  energy           {energy_kwh:.3f} kWh in {minutes:.0f} simulated minutes")
    demo.out(f"  car SoC          {sim.connector(1).ev.soc_pct:.1f} %")


async def run_demo(
    out: Callable[[str], None] = print, charge_s: float = 8.0, state_dir: Path | None = None
) -> int:
    """Play the session; returns 0 when it completed."""
    from controller.sim_root import start_simulation

    demo = Demo(out)
    out("picharge demo: one charging session on simulated hardware (time x60 for the car)")
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        sim, hardware, _ = await start_simulation(
            parse_config({}), state_dir, connectors=1, speed=DEMO_SPEED, on_event=demo.on_event
        )
        c = hardware.connectors[0]
        try:
            async with asyncio.TaskGroup() as tasks:
                sensor = tasks.create_task(c.pilot.sensor.run(demo.on_cp, demo.on_event))
                assert hardware.reader is not None
                reader = tasks.create_task(
                    hardware.reader.run(demo.cards.put_nowait, demo.on_event)
                )
                try:
                    await _session(demo, sim, c, charge_s)
                finally:
                    sensor.cancel()
                    reader.cancel()
        finally:
            await hardware.close()
            await sim.stop()
    return 0
