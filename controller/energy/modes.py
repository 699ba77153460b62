"""Charging modes (issue 16): how much of what the fuse allows a connector takes, and when.

- ``fast``: everything the limits allow (the mode sets no limit);
- ``solar``: the surplus only. It starts after the surplus has covered the minimum current
  (6 A on each of the car's phases) for ``start_delay_s`` and stops after it has not for
  ``stop_delay_s``; a run lasts at least ``min_run_s`` and a pause at least
  ``min_pause_s``, so a passing cloud never costs a contactor operation;
- ``min_solar``: 6 A always, more when the surplus covers more;
- ``schedule``: fast inside the schedule (:mod:`controller.energy.schedule`), paused outside.

The solar modes need a grid meter (:data:`NEEDS_GRID`); fast and schedule do not (the
schedule reads the clock and the connector's own meter), so a charger without ``[site]``
has them too.

Pure: a :class:`ModeState` and the readings in, the next state and the mode's limit out; no
I/O and no clock (the caller passes ``now``, monotonic seconds). The limit is a limit
source of its own (``LimitSource.MODE``): pausing is a limit of 0 A, which the core turns
into a paused PWM (SuspendedEVSE; the car stops drawing and the contactor opens on C->B),
and the fuse rule's offer still applies on top, as every source does.

The surplus is counted on the sum of the phases (:func:`surplus_a`): that is what a
net-metering grid meter bills, so a car on one phase may use PV exported on the others.

The current follows the surplus in whole amperes with a hysteresis: it goes down as soon as
the surplus is below the current offered (beyond what two meters may disagree by), and up
only once the surplus is half an ampere above the next whole ampere, so a surplus that
wobbles around a step does not move the PWM at every grid reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from controller.limits import MIN_OFFER_A

#: The surplus must exceed the next whole ampere by this much before the current goes up.
RAISE_MARGIN_A = 0.3
#: What two meters may disagree by (A per phase): a car taking 10 A of a 9.9 A surplus
#: is not lowered to 9 A for it (at most 0.2 A a phase comes from the grid). With
#: :data:`RAISE_MARGIN_A`, a step down and the step back up are half an ampere apart.
TOLERANCE_A = 0.2


class Mode(StrEnum):
    """A connector's charging mode, as the config, the page, the API and MQTT name it."""

    FAST = "fast"
    SOLAR = "solar"
    MIN_SOLAR = "min_solar"
    SCHEDULE = "schedule"


#: The modes that follow the surplus: they need a grid meter (``[site]`` and ``[grid_meter]``).
#: Without one the surplus is unknown, and such a mode would hold the car paused for ever.
NEEDS_GRID = frozenset({Mode.SOLAR, Mode.MIN_SOLAR})
#: Why such a mode is refused without one (the configuration, the page, the API and MQTT).
NO_GRID_METER = "needs a grid meter ([site] fuse_a and [grid_meter]) to measure the surplus"


class ModeControl(Protocol):
    """What the page, the API and MQTT may do with the modes (the runner implements it)."""

    @property
    def modes(self) -> Mapping[int, Mode]:
        """Each connector's mode now."""
        ...

    async def set_mode(self, connector_id: int, mode: Mode) -> None:
        """The user's choice; KeyError: no such connector; ValueError: not possible here."""
        ...

    async def set_thresholds(self, connector_id: int, values: Mapping[str, Any]) -> None:
        """A change of some of the connector's thresholds (None: back to the configured
        value); KeyError: no such connector; ConfigurationError names the bad key."""
        ...

    def status(self) -> dict[str, Any]:
        """The grid reading, the surplus and each connector's mode and thresholds
        (JSON-ready)."""
        ...


@dataclass(frozen=True, slots=True)
class Timing:
    """The delays of the solar modes, in seconds.

    The defaults allow at most one start and one stop in seven minutes: 17 operations an
    hour at worst, about 50,000 a year at eight hours a day. The contactor switches no load
    (the car has stopped drawing when it opens), so its mechanical life counts, typically
    a million operations or more; the simulated cloudy day needed 5.3 an hour. A
    five-minute pause instead of two cost a seventh of the solar energy on that day
    (docs/benchmarks.md, ``bench/solar_day.py``).
    """

    start_delay_s: float = 60.0
    stop_delay_s: float = 180.0
    min_run_s: float = 300.0
    min_pause_s: float = 120.0
    settle_s: float = 10.0  # the current is held this long after each change

    def __post_init__(self) -> None:
        for name in ("start_delay_s", "stop_delay_s", "min_run_s", "min_pause_s", "settle_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite time >= 0 s, got {value!r}")


@dataclass(frozen=True, slots=True)
class ModeState:
    """One connector's mode state.

    ``charging``: the mode offers current (False: it holds the car paused).
    ``switched_at``: when it last started or paused (-inf: never).
    ``covered_since`` / ``short_since``: since when the surplus has (not) covered the
    minimum without a break (None while the opposite holds).
    ``level_a``: the current the surplus gave at the last step (0 while paused), and
    ``level_at`` when it last changed.
    ``kept_s``: the least this run or pause lasts whatever the timing says now: a change of
    the thresholds keeps the minimum run (or pause) the run began with (0: the timing's).
    """

    charging: bool = False
    switched_at: float = -math.inf
    covered_since: float | None = None
    short_since: float | None = None
    level_a: float = 0.0
    level_at: float = -math.inf
    kept_s: float = 0.0


def surplus_a(grid_a: Sequence[float], car_grid_a: Sequence[float], car_phases: int) -> float:
    """The current per car phase (A) the surplus could give the car, its own draw included.

    ``grid_a``: the grid's signed current on each phase (import positive); ``car_grid_a``:
    what the car draws on each grid phase; ``car_phases``: how many phases it draws on (or
    may draw on, before it draws). Summed over the phases at one voltage: what the house
    exports plus what the car already takes, shared over the car's phases. Negative when
    the house imports more than the car takes.
    """
    if car_phases < 1:
        raise ValueError(f"car_phases must be 1 or more, got {car_phases}")
    return (math.fsum(car_grid_a) - math.fsum(grid_a)) / car_phases


def follow(level_a: float, available_a: float) -> float:
    """The whole-ampere current for ``available_a``, moved from ``level_a`` with hysteresis:
    down at once to the whole amperes available (within the meters' :data:`TOLERANCE_A`),
    up only with :data:`RAISE_MARGIN_A` to spare; never below the minimum (6 A)."""
    if level_a < MIN_OFFER_A or available_a < level_a - TOLERANCE_A:
        return max(MIN_OFFER_A, float(math.floor(available_a + TOLERANCE_A)))
    raised = float(math.floor(available_a - RAISE_MARGIN_A))
    return max(level_a, raised)


def _track(state: ModeState, available_a: float | None, now: float) -> ModeState:
    covered = available_a is not None and available_a >= MIN_OFFER_A
    if covered:
        since = state.covered_since if state.covered_since is not None else now
        return replace(state, covered_since=since, short_since=None)
    since = state.short_since if state.short_since is not None else now
    return replace(state, covered_since=None, short_since=since)


def _switch(state: ModeState, charging: bool, now: float) -> ModeState:
    if state.charging == charging:
        return state
    return replace(state, charging=charging, switched_at=now, kept_s=0.0)


def step(
    mode: Mode,
    timing: Timing,
    state: ModeState,
    available_a: float | None,
    fuse_a: float,
    now: float,
    scheduled: bool = True,
) -> tuple[ModeState, float | None]:
    """The next state and the mode's limit (A; None: no limit) for one connector.

    ``available_a``: :func:`surplus_a` now, None when the grid reading is not fresh (then
    the surplus counts as not covering the minimum). ``fuse_a``: the fuse rule's offer;
    the limit is never above it. ``scheduled``: whether the schedule allows charging now
    (``schedule`` mode only).
    """
    state = _track(state, available_a, now)
    if mode is Mode.FAST or mode is Mode.SCHEDULE:
        on = mode is Mode.FAST or scheduled
        state = replace(_switch(state, on, now), level_a=0.0)
        return state, (None if on else 0.0)
    if mode is Mode.MIN_SOLAR:
        state = _switch(state, True, now)
    elif state.charging:
        assert state.short_since is not None or state.covered_since is not None
        if (
            state.short_since is not None
            and now - state.short_since >= timing.stop_delay_s
            and now - state.switched_at >= max(timing.min_run_s, state.kept_s)
        ):
            state = _switch(state, False, now)
    elif (
        state.covered_since is not None
        and now - state.covered_since >= timing.start_delay_s
        and now - state.switched_at >= max(timing.min_pause_s, state.kept_s)
    ):
        state = _switch(state, True, now)
    if not state.charging:
        return replace(state, level_a=0.0), 0.0
    level = state.level_a
    if level < MIN_OFFER_A or now - state.level_at >= timing.settle_s:
        level = follow(level, available_a if available_a is not None else 0.0)
    if level != state.level_a:
        state = replace(state, level_a=level, level_at=now)
    return state, min(level, fuse_a)
