"""A day of a house: its own load and its PV over 24 hours, from a CSV file or built in.

A profile is a list of points (second of the day, load W, PV W), linearly interpolated and
repeating every day. The built-in days are made by formula, the same every run:

- ``sunny``: a clear June day, 8 kWp of PV from 05:30 to 21:30, peaking near 7 kW;
- ``cloudy``: the same sun behind passing clouds, the PV jumping between 15 % and 100 %
  every few minutes (a fixed seed: every run sees the same clouds);
- ``winter``: a short, low sun (08:30-16:30, peak 2.2 kW) and a heat pump's load.

The household load of every built-in day: 250 W standby, breakfast (kettle, 2 kW at 07:00),
lunch (oven, 3 kW at 12:00-12:45), dinner (cooktop and oven, 5 kW at 18:00-19:00).

A CSV file has a header ``time,load_w,pv_w``; ``time`` is ``HH:MM`` or ``HH:MM:SS``,
ascending. Pure: no I/O but reading the file.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from dataclasses import dataclass
from pathlib import Path

DAY_S = 86_400
BUILT_IN = ("sunny", "cloudy", "winter")


@dataclass(frozen=True, slots=True)
class HouseProfile:
    """Points of (second of day, load W, PV W), ascending by time."""

    name: str
    points: tuple[tuple[float, float, float], ...]

    def at(self, second_of_day: float) -> tuple[float, float]:
        """(load W, PV W) at that time of day, interpolated; the day repeats."""
        t = second_of_day % DAY_S
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t)
        before = self.points[i - 1] if i > 0 else _shift(self.points[-1], -DAY_S)
        after = self.points[i] if i < len(self.points) else _shift(self.points[0], DAY_S)
        span = after[0] - before[0]
        w = 0.0 if span <= 0 else (t - before[0]) / span
        return (
            before[1] + w * (after[1] - before[1]),
            before[2] + w * (after[2] - before[2]),
        )


def _shift(point: tuple[float, float, float], by_s: float) -> tuple[float, float, float]:
    return (point[0] + by_s, point[1], point[2])


def _household_w(t: float) -> float:
    load = 250.0
    for start_h, end_h, watts in ((7.0, 7.1, 2000.0), (12.0, 12.75, 3000.0), (18.0, 19.0, 5000.0)):
        if start_h * 3600 <= t < end_h * 3600:
            load += watts
    return load


def _sun_w(t: float, rise_h: float, set_h: float, peak_w: float) -> float:
    rise, fall = rise_h * 3600, set_h * 3600
    if not rise < t < fall:
        return 0.0
    return peak_w * math.sin(math.pi * (t - rise) / (fall - rise)) ** 1.5


def built_in(name: str, step_s: int = 60) -> HouseProfile:
    """One of :data:`BUILT_IN`, sampled every ``step_s`` seconds."""
    if name not in BUILT_IN:
        raise ValueError(f"unknown house day {name!r}; expected one of {', '.join(BUILT_IN)}")
    clouds = random.Random(16)  # a repeatable weather, not a secret
    factor = 1.0
    points = []
    for t in range(0, DAY_S, step_s):
        load = _household_w(t)
        if name == "winter":
            load += 1500.0 if (t // 1800) % 2 == 0 else 300.0  # the heat pump cycles
            pv = _sun_w(t, 8.5, 16.5, 2200.0)
        else:
            pv = _sun_w(t, 5.5, 21.5, 7000.0)
            if name == "cloudy":
                if t % 300 == 0:
                    factor = clouds.choice((0.15, 0.3, 0.6, 1.0))
                pv *= factor
        points.append((float(t), load, pv))
    return HouseProfile(name, tuple(points))


def _seconds(text: str, where: str) -> float:
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"{where}: time must be HH:MM or HH:MM:SS, got {text!r}")
    h, m, s = (int(p) for p in (*parts, "0")[:3])
    if h > 23 or m > 59 or s > 59:
        raise ValueError(f"{where}: no such time of day {text!r}")
    return float(h * 3600 + m * 60 + s)


def load(source: str) -> HouseProfile:
    """A built-in day by name, or a CSV file's; ValueError names the line that is wrong."""
    if source in BUILT_IN:
        return built_in(source)
    path = Path(source)
    points: list[tuple[float, float, float]] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or set(reader.fieldnames) != {"time", "load_w", "pv_w"}:
            raise ValueError(f"{path}: the header must be time,load_w,pv_w")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            t = _seconds(row["time"], where)
            try:
                load_w, pv_w = float(row["load_w"]), float(row["pv_w"])
            except ValueError:
                raise ValueError(f"{where}: load_w and pv_w must be numbers") from None
            if not (math.isfinite(load_w) and math.isfinite(pv_w)) or load_w < 0 or pv_w < 0:
                raise ValueError(f"{where}: load_w and pv_w must be powers >= 0 W")
            if points and t <= points[-1][0]:
                raise ValueError(f"{where}: times must ascend")
            points.append((t, load_w, pv_w))
    if not points:
        raise ValueError(f"{path}: no points")
    return HouseProfile(path.name, tuple(points))
