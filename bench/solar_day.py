"""Solar mode over a simulated day (issue 16): how much of the surplus reaches the car.

The whole controller as ``picharge run --sim --sim-house DAY`` builds it, standalone: one
car (three phases, 6-16 A, a battery that never fills) behind a 35 A main fuse, the house
following a built-in day at ``--speed`` times real time, the grid meter (a Carlo Gavazzi
EM24 served by the simulated meter server) read by the real driver over Modbus TCP every
``--interval`` wall seconds, the car's own meter every simulated second. The mode's
delays are given in simulated seconds and handed to the controller divided by the speed
(the controller's clock is the wall's). Measured, in simulated time, from the simulated
house and car themselves:

- **solar energy**: the part of the car's power the PV surplus (PV less the house's own
  load) covered, integrated; and its **share of the car's energy**;
- **ideal**: what a charger that knew the curves would have taken from the same surplus in
  the same mode: exactly the surplus (up to the car's 16 A) whenever it covers the car's
  6 A minimum, nothing otherwise, no delays; the figure is solar energy / ideal;
- **contactor operations** and **PWM changes** per hour, against what the delays allow
  (a start and a stop per ``min_run_s + min_pause_s`` at most).

    .venv/bin/python bench/solar_day.py [--day cloudy] [--mode solar] [--start 10:00]
        [--hours 6] [--speed 20] [--interval 0.2] [--start-delay 60] [--stop-delay 180]
        [--min-run 300] [--min-pause 300]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time

from benchlib import CARD
from energy_day import PwmWatch, house_app

from controller import supervisor as supervisor_module
from controller.energy.modes import Timing
from hw_sim.house import NOMINAL_VOLTAGE_V

FUSE_A = 35.0
CAR_MAX_A = 16.0
CAR_PHASES = 3
MIN_A = 6.0


@dataclasses.dataclass
class Tally:
    """What happened, in simulated seconds and watt-hours."""

    car_wh: float = 0.0
    solar_wh: float = 0.0
    ideal_wh: float = 0.0
    surplus_wh: float = 0.0
    contactor_ops: int = 0

    def add(self, dt_s: float, car_w: float, surplus_w: float) -> None:
        self.car_wh += car_w * dt_s / 3600
        self.solar_wh += min(car_w, max(0.0, surplus_w)) * dt_s / 3600
        self.surplus_wh += max(0.0, surplus_w) * dt_s / 3600
        full_w = CAR_MAX_A * CAR_PHASES * NOMINAL_VOLTAGE_V
        if surplus_w >= MIN_A * CAR_PHASES * NOMINAL_VOLTAGE_V:
            self.ideal_wh += min(full_w, surplus_w) * dt_s / 3600


async def run(
    day: str,
    mode: str,
    start_s: float,
    hours: float,
    speed: float,
    interval_s: float,
    timing: Timing,
) -> None:
    wall = {f.name: getattr(timing, f.name) / speed for f in dataclasses.fields(Timing)}
    doc = {
        "authorization": {"cards": [CARD]},
        "site": {"fuse_a": FUSE_A, "margin_a": 1.0, "grid_max_age_s": 5.0},
        "grid_meter": {"model": "em24", "interval_s": interval_s},
        "energy": {"mode": mode, **wall},
    }
    tally = Tally()
    # The car's own meter is read every second of the charger's (wall) time; the surplus
    # counts the car's draw back in, so at x20 a reading 20 simulated seconds old would
    # show a car slower than any real one. Read it every simulated second instead.
    supervisor_module.METER_POLL_S = 1.0 / speed
    async with house_app(doc, day, start_s, speed) as app:
        sim = app.sim
        car = sim.connector(1)
        car.ev.spec = dataclasses.replace(
            car.ev.spec, max_current_a=CAR_MAX_A, phases=CAR_PHASES, battery_kwh=10_000.0
        )
        watch = PwmWatch(sim)
        await asyncio.sleep(1.0)
        await sim.handle({"action": "plug", "connector": 1})
        await sim.handle({"action": "tap", "uid": CARD})
        closed = False
        wall_s = hours * 3600 / speed
        began = last = time.monotonic()
        while (now := time.monotonic()) - began < wall_s:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            house = sim.house
            tally.add((now - last) * speed, car.ev.power_w, house.pv_w - house.load_w)
            last = now
            is_closed = car.contactor.main_contacts_closed
            if is_closed != closed:
                tally.contactor_ops += 1
                closed = is_closed
        watch.close()
    allowed = 2 * 3600 / max(1.0, timing.min_run_s + timing.min_pause_s)
    begin = f"{int(start_s) // 3600:02d}:{int(start_s) // 60 % 60:02d}"
    print(
        f"day {day}, mode {mode}, {hours:g} simulated hours from {begin} at x{speed:g}, "
        f"grid meter read every {interval_s:g} s (wall); delays (simulated s): {timing}"
    )
    print(f"surplus over the day:              {tally.surplus_wh / 1000:7.2f} kWh")
    print(f"car energy:                        {tally.car_wh / 1000:7.2f} kWh")
    print(
        f"  of it from the surplus:          {tally.solar_wh / 1000:7.2f} kWh"
        f" ({100 * tally.solar_wh / max(tally.car_wh, 1e-9):.1f} % of the car's energy)"
    )
    print(f"ideal from the same surplus:       {tally.ideal_wh / 1000:7.2f} kWh")
    ratio = 100 * tally.solar_wh / max(tally.ideal_wh, 1e-9)
    print(f"solar energy versus the ideal:     {ratio:.1f} % (goal >= 90 % on a cloudy day)")
    print(
        f"contactor operations per hour:     {tally.contactor_ops / hours:7.1f}"
        f" (the delays allow {allowed:.0f})"
    )
    print(f"PWM changes per hour:              {len(watch.changes) / hours:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="cloudy")
    parser.add_argument("--mode", default="solar", choices=("solar", "min_solar"))
    parser.add_argument("--start", default="10:00", help="HH:MM of the simulated day")
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours")
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.2, help="grid meter poll (wall s)")
    defaults = Timing()
    for f in dataclasses.fields(Timing):
        name = "--" + f.name.removesuffix("_s").replace("_", "-")
        parser.add_argument(name, dest=f.name, type=float, default=getattr(defaults, f.name))
    args = parser.parse_args()
    timing = Timing(*(getattr(args, f.name) for f in dataclasses.fields(Timing)))
    hours, _, mins = args.start.partition(":")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        run(
            args.day,
            args.mode,
            int(hours) * 3600 + int(mins) * 60,
            args.hours,
            args.speed,
            args.interval,
            timing,
        )
    )


if __name__ == "__main__":
    main()
