"""Main fuse protection over a simulated stretch of a day (issue 16).

The whole controller as ``picharge run --sim --sim-house DAY`` builds it, standalone: one
car charging on three phases behind a 16 A main fuse (1 A margin), the house
following a built-in day at ``--speed`` times real time, the grid meter (a Carlo Gavazzi
EM24 served by the simulated meter server) read by the real driver over Modbus TCP every
``--interval`` wall seconds. The defaults (x5, 0.2 s) update the grid meter every simulated
second, as issue 16 states the fuse goal; the car's own meter is read every
``METER_POLL_S`` wall seconds (5 simulated at x5), which a real charger does in real time.
Measured:

- **seconds above the fuse per phase**: simulated seconds in which the grid current on a
  phase exceeded ``fuse_a`` (the margin is ours; the fuse is the limit), sampled every
  20 ms of wall time from the simulated grid meter's own measurement;
- **grid reading to PWM**: from the moment a grid reading arrived at the driver
  (``GridSample.taken_at``) that changed a connector's limit to the moment the simulated
  PWM output the car reads showed the new offer (a thread polls it every millisecond);
- **contactor operations per hour** (simulated time) and **PWM changes per hour**.

    .venv/bin/python bench/energy_day.py [--day sunny] [--start 17:45] [--minutes 45]
        [--speed 5] [--interval 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchlib import CARD, figure

from controller.app import ChargePointApp, RunOptions
from controller.app import running as running_app
from controller.config import parse_config
from controller.energy.fuse import GridSample
from controller.limits import LimitSource
from controller.supervisor import METER_POLL_S

FUSE_A = 16.0  # a small connection, so the dinner peak and the car meet at the fuse


class PwmWatch:
    """Stamps every change of connector 1's offered current (a thread; 1 ms polling)."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self.changes: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-pwm-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        c = self._sim.connector(1)
        last = None
        while not self._stop.wait(0.001):
            offered = self._sim.offered_a(c) or 0.0
            if offered != last:
                self.changes.append((time.monotonic(), offered))
                last = offered

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.asynccontextmanager
async def house_app(
    doc: dict[str, Any], day: str, start_s: float, speed: float
) -> AsyncIterator[ChargePointApp]:
    """The controller configured by ``doc`` on simulated hardware at ``speed``, the house
    following the built-in ``day`` from ``start_s`` (s of the day), in a fresh state
    directory; running until the block ends."""
    with tempfile.TemporaryDirectory(prefix="picharge-bench-") as state:
        config = dataclasses.replace(parse_config(doc), state_dir=Path(state))
        options = RunOptions(sim=True, sim_speed=speed, sim_house=day, sim_house_start_s=start_s)
        app = ChargePointApp(config, options)
        async with running_app(app):
            yield app


async def run(day: str, start_s: float, minutes: float, speed: float, interval_s: float) -> None:
    doc = {
        "authorization": {"cards": [CARD]},
        "site": {"fuse_a": FUSE_A, "margin_a": 1.0, "grid_max_age_s": 5.0},
        "grid_meter": {"model": "em24", "interval_s": interval_s},
    }
    async with house_app(doc, day, start_s, speed) as app:
        assert app.energy is not None and app.supervisor is not None
        sim, manager, feed = app.sim, app.energy.manager, app.energy.feed
        # Which grid sample each limit came from: the newest when the manager decided.
        limits: list[tuple[float, float]] = []  # (sample taken_at, offer A)
        sink = manager.sink

        class Recording:
            def set_limit(self, cid: int, source: LimitSource, current_a: float | None) -> None:
                latest: GridSample | None = feed.latest
                if cid == 1 and latest is not None and current_a is not None:
                    limits.append((latest.taken_at, current_a))
                sink.set_limit(cid, source, current_a)

        manager.sink = Recording()
        watch = PwmWatch(sim)
        await asyncio.sleep(1.0)
        await sim.handle({"action": "plug", "connector": 1})
        await sim.handle({"action": "tap", "uid": CARD})
        over_s = [0.0, 0.0, 0.0]
        peak_a = [0.0, 0.0, 0.0]
        contactor_ops = 0
        closed = False
        wall_s = minutes * 60 / speed
        began = last = time.monotonic()
        while (now := time.monotonic()) - began < wall_s:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            sim_dt = (now - last) * speed
            last = now
            grid = sim.house.grid_current_a
            for p in range(3):
                peak_a[p] = max(peak_a[p], grid[p])
                if grid[p] > FUSE_A:
                    over_s[p] += sim_dt
            is_closed = sim.connector(1).contactor.main_contacts_closed
            if is_closed != closed:
                contactor_ops += 1
                closed = is_closed
        watch.close()
    hours = minutes / 60
    reactions = []
    for taken_at, offer in limits:
        # Only while the PWM offers (a limit set before the car charges shows when it does).
        before = [a for t, a in watch.changes if t < taken_at]
        if not before or before[-1] <= 0.0:
            continue
        expected = offer if offer >= 6.0 else 0.0
        follow = next(
            (t for t, a in watch.changes if t >= taken_at and abs(a - expected) < 0.2), None
        )
        if follow is not None:
            reactions.append(follow - taken_at)
    print(
        f"day {day}, {minutes:g} simulated minutes from {int(start_s) // 3600:02d}:"
        f"{int(start_s) // 60 % 60:02d} at x{speed:g}: grid meter read every {interval_s:g} s"
        f" ({interval_s * speed:g} simulated s), the car's meter every {METER_POLL_S:g} s"
        f" ({METER_POLL_S * speed:g} simulated s)"
    )
    for p in range(3):
        print(
            f"seconds above the {FUSE_A:g} A fuse on L{p + 1}: {over_s[p]:.1f}"
            f" (highest grid current {peak_a[p]:.2f} A)"
        )
    print(f"contactor operations per hour: {contactor_ops / hours:.1f}")
    print(f"PWM changes per hour: {len(watch.changes) / hours:.0f}")
    print(figure("grid reading to PWM", reactions, target_ms=1000.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", default="sunny")
    parser.add_argument("--start", default="17:45", help="HH:MM of the simulated day")
    parser.add_argument("--minutes", type=float, default=45.0, help="simulated minutes")
    parser.add_argument("--speed", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.2, help="grid meter poll (wall s)")
    args = parser.parse_args()
    hours, _, mins = args.start.partition(":")
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        run(args.day, int(hours) * 3600 + int(mins) * 60, args.minutes, args.speed, args.interval)
    )


if __name__ == "__main__":
    main()
