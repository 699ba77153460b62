"""The ``schedule`` mode's rule: charge in the off-peak hours, or late enough to be ready.

Two ways a home user plans without a CSMS, alone or together:

- ``off_peak = "22:00-06:00"``: charge at full current inside the window (it may wrap
  around midnight), never outside it;
- ``departure = "07:00"`` with ``energy_kwh = 20``: have 20 kWh in the car by 07:00. The
  charger waits until the latest start that still makes it at the connector's full power,
  with :data:`MARGIN` to spare for a fuse or a car that takes less, then charges until the
  session holds the energy asked for. With a window as well, it charges in the window and
  late enough before departure, whichever comes first; once charging, the session goes
  on until it holds the energy asked for.

Pure: local time of day in, yes or no out. Times are the charger's local time (minute of
the day); the caller reads the clock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

DAY_MIN = 24 * 60
#: A departure plan starts this much earlier than full power would need (0.25: 25 %).
MARGIN = 0.25


@dataclass(frozen=True, slots=True)
class Schedule:
    """``off_peak``: (start, end) minute of the day, end before start wrapping midnight.
    ``departure``: minute of the day; ``energy_wh``: what a session should hold by then."""

    off_peak: tuple[int, int] | None = None
    departure: int | None = None
    energy_wh: float = 0.0

    def __post_init__(self) -> None:
        if self.departure is not None and not (
            math.isfinite(self.energy_wh) and self.energy_wh > 0
        ):
            raise ValueError("a departure needs an energy target > 0")

    @property
    def empty(self) -> bool:
        return self.off_peak is None and self.departure is None


def parse_time(text: str) -> int:
    """``"HH:MM"`` as the minute of the day; ValueError otherwise."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"must be a time HH:MM, got {text!r}")
    h, m = int(hours), int(minutes)
    if h > 23 or m > 59:
        raise ValueError(f"no such time of day {text!r}")
    return h * 60 + m


def parse_window(text: str) -> tuple[int, int]:
    """``"22:00-06:00"`` as (1320, 360); ValueError for anything else or an empty window."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"must be a window HH:MM-HH:MM, got {text!r}")
    window = (parse_time(start), parse_time(end))
    if window[0] == window[1]:
        raise ValueError(f"the window {text!r} is empty")
    return window


def minute_of_day(now: dt.datetime) -> float:
    return now.hour * 60 + now.minute + now.second / 60


def in_window(window: tuple[int, int], minute: float) -> bool:
    start, end = window
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def allows(
    schedule: Schedule,
    minute: float,
    session_wh: float,
    full_power_w: float,
    charging: bool = False,
) -> bool:
    """Whether to charge now (``minute`` of the local day), the session holding
    ``session_wh`` and the connector able to take ``full_power_w`` at most.

    ``charging``: the session is charging now. A departure plan that started goes on
    until the target is reached, even where a car faster than planned would allow a pause:
    a pause and a restart would cost two contactor operations and save nothing.
    """
    if schedule.off_peak is not None and in_window(schedule.off_peak, minute):
        return True
    if schedule.departure is None or full_power_w <= 0:
        return False
    remaining_wh = schedule.energy_wh - session_wh
    if remaining_wh <= 0:
        return False
    if charging:
        return True
    to_departure_min = (schedule.departure - minute) % DAY_MIN
    needed_min = remaining_wh / full_power_w * 60.0 * (1.0 + MARGIN)
    return to_departure_min <= needed_min
