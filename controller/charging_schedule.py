"""Charging schedules as functions of time, and the composite limit of stacked schedules.

Smart charging in OCPP 1.6 (and, with other names, 2.0.1) describes a current limit over
time: a :class:`Schedule` is a list of periods (offset in seconds, limit in A or W) from an
anchor, which is a fixed instant (Absolute), a fixed instant repeated every day or week
(Recurring) or the start of the transaction (Relative); it may end after ``duration_s`` and
holds only inside its validity window. Profiles stack: within one :data:`Layer` the active
schedule of highest :attr:`Ranked.rank` wins, and the composite limit is the minimum over
the layers (for OCPP 1.6: ChargePointMax and "TxProfile, else TxDefaultProfile").

This module is pure and version-neutral: no I/O, no clock (instants arrive as arguments),
no OCPP library. Instants are timezone-aware datetimes; offsets and durations are whole
seconds, as on the wire, so period boundaries are exact. Limits come out in amperes: a
limit in watts is divided by :data:`NOMINAL_VOLTAGE_V` and the number of phases (the
period's own ``phases`` when given, else the connector's). Any thread (no shared state).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

#: Nominal phase voltage (V) for converting a limit in W to A and back.
NOMINAL_VOLTAGE_V = 230.0
#: At most this many periods in a composite schedule (a week of half-hourly recurrences is
#: 336); a longer one is cut short rather than computed without bound.
MAX_COMPOSITE_PERIODS = 2_000


class RateUnit(StrEnum):
    """What a schedule's limits are in (OCPP ChargingRateUnitType)."""

    AMPS = "A"
    WATTS = "W"


class ScheduleKind(StrEnum):
    """What a schedule's offsets count from (OCPP ChargingProfileKindType)."""

    ABSOLUTE = "Absolute"  # from ``start``
    RECURRING = "Recurring"  # from ``start``, again every day or week
    RELATIVE = "Relative"  # from the start of the transaction


class Recurrency(StrEnum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


_CYCLE = {Recurrency.DAILY: dt.timedelta(days=1), Recurrency.WEEKLY: dt.timedelta(weeks=1)}


class ScheduleError(ValueError):
    """A schedule that cannot be followed; the message says why."""


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """From ``start_s`` seconds after the anchor: at most ``limit`` (in the schedule's unit).

    ``phases`` is how many phases the EV may use (OCPP numberPhases); None means the
    connector's; it matters only for converting watts.
    """

    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """One profile's schedule and validity; construction checks it (:class:`ScheduleError`).

    ``start`` is required for Absolute and Recurring schedules and ignored for Relative
    ones. A Recurring schedule repeats in both directions of time from ``start`` (a daily
    schedule starting tomorrow at 22:00 also holds tonight at 22:00); its last period lasts
    until the next recurrence, or ``duration_s`` ends it earlier. ``valid_from`` and
    ``valid_to`` bound where the schedule holds at all (``valid_to`` excluded).
    """

    kind: ScheduleKind
    unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    start: dt.datetime | None = None
    duration_s: int | None = None
    recurrency: Recurrency | None = None
    valid_from: dt.datetime | None = None
    valid_to: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.periods:
            raise ScheduleError("a schedule needs at least one period")
        if self.periods[0].start_s != 0:
            raise ScheduleError(
                f"the first period must start at 0 s, not {self.periods[0].start_s} s"
            )
        for before, after in itertools.pairwise(self.periods):
            if after.start_s <= before.start_s:
                raise ScheduleError(
                    f"periods must start in increasing order ({before.start_s} s, then "
                    f"{after.start_s} s)"
                )
        for period in self.periods:
            if not (math.isfinite(period.limit) and period.limit >= 0):
                raise ScheduleError(f"a limit must be a number >= 0, not {period.limit!r}")
            if period.phases is not None and period.phases not in (1, 2, 3):
                raise ScheduleError(f"numberPhases must be 1, 2 or 3, not {period.phases}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ScheduleError(f"a duration must be > 0 s, not {self.duration_s} s")
        if self.kind is not ScheduleKind.RELATIVE and self.start is None:
            raise ScheduleError(f"a {self.kind} schedule needs a start")
        if self.kind is ScheduleKind.RECURRING and self.recurrency is None:
            raise ScheduleError("a Recurring schedule needs a recurrency kind")
        for name in ("start", "valid_from", "valid_to"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ScheduleError(f"{name} must be timezone-aware")
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ScheduleError("validTo must be after validFrom")


@dataclass(frozen=True, slots=True)
class Ranked:
    """A schedule in a layer: among the active ones, the highest ``rank`` wins.

    Ranks compare as tuples, e.g. (stack level,) or (TxProfile over TxDefault, stack level,
    connector's own over connector 0's). Of equal ranks, the first in the layer wins.
    """

    rank: tuple[int, ...]
    schedule: Schedule


#: Schedules that override one another by rank; the composite is the minimum over layers.
Layer = Sequence[Ranked]


@dataclass(frozen=True, slots=True)
class ConnectorRating:
    """What a connector delivers: ``phases`` (to convert limits in W) and at most
    ``max_current_a`` per phase."""

    phases: int = 3
    max_current_a: float = 32.0


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """From ``start_s`` seconds after the composite's start: at most ``limit_a`` (None: no
    schedule limits, and no cap was given)."""

    start_s: int
    limit_a: float | None
    #: The numberPhases of the schedule period that sets the limit (None: none given, which
    #: OCPP reads as 3; also where no schedule limits).
    phases: int | None = None


def to_amps(limit: float, unit: RateUnit, phases: int) -> float:
    """A limit in ``unit`` as amperes per phase (watts over ``phases`` x 230 V)."""
    if unit is RateUnit.AMPS:
        return limit
    return limit / (NOMINAL_VOLTAGE_V * phases)


def from_amps(amps: float, unit: RateUnit, phases: int) -> float:
    """Amperes per phase as a limit in ``unit`` (the inverse of :func:`to_amps`)."""
    if unit is RateUnit.AMPS:
        return amps
    return amps * NOMINAL_VOLTAGE_V * phases


def _anchor(schedule: Schedule, at: dt.datetime, relative_start: dt.datetime | None) -> dt.datetime:
    """The instant the schedule's offsets count from, as seen at ``at``.

    A Relative schedule without a ``relative_start`` (no transaction yet) floats: it is
    anchored at ``at`` itself, so it shows its first period and never ends.
    """
    if schedule.kind is ScheduleKind.RELATIVE:
        return relative_start if relative_start is not None else at
    assert schedule.start is not None  # checked at construction
    if schedule.kind is ScheduleKind.RECURRING:
        assert schedule.recurrency is not None
        cycle = _CYCLE[schedule.recurrency]
        return schedule.start + ((at - schedule.start) // cycle) * cycle
    return schedule.start


def _valid(schedule: Schedule, at: dt.datetime) -> bool:
    return (schedule.valid_from is None or schedule.valid_from <= at) and (
        schedule.valid_to is None or at < schedule.valid_to
    )


def period_at(
    schedule: Schedule, at: dt.datetime, *, relative_start: dt.datetime | None = None
) -> SchedulePeriod | None:
    """The period in force at ``at``, or None where the schedule does not hold."""
    if not _valid(schedule, at):
        return None
    offset = at - _anchor(schedule, at, relative_start)
    if offset < dt.timedelta(0):
        return None
    if schedule.duration_s is not None and offset >= dt.timedelta(seconds=schedule.duration_s):
        return None
    current = schedule.periods[0]
    for period in schedule.periods[1:]:
        if dt.timedelta(seconds=period.start_s) > offset:
            break
        current = period
    return current


def limit_at(
    schedule: Schedule,
    at: dt.datetime,
    *,
    phases: int,
    relative_start: dt.datetime | None = None,
) -> float | None:
    """The schedule's limit at ``at`` in amperes (``phases``: the connector's), or None."""
    period = period_at(schedule, at, relative_start=relative_start)
    if period is None:
        return None
    return to_amps(period.limit, schedule.unit, period.phases or phases)


def next_change(
    schedule: Schedule, after: dt.datetime, *, relative_start: dt.datetime | None = None
) -> dt.datetime | None:
    """The first instant later than ``after`` at which the schedule's limit may change
    (a period boundary, the end of its duration, a recurrence, its validity window), or
    None when it never changes again."""
    moments = [m for m in (schedule.valid_from, schedule.valid_to) if m is not None and m > after]
    if schedule.kind is not ScheduleKind.RELATIVE or relative_start is not None:
        anchor = _anchor(schedule, after, relative_start)
        moments += [anchor + dt.timedelta(seconds=p.start_s) for p in schedule.periods]
        if schedule.duration_s is not None:
            moments.append(anchor + dt.timedelta(seconds=schedule.duration_s))
        if schedule.kind is ScheduleKind.RECURRING:
            assert schedule.recurrency is not None
            moments.append(anchor + _CYCLE[schedule.recurrency])
    return min((m for m in moments if m > after), default=None)


def layer_limit_at(
    layer: Layer, at: dt.datetime, *, phases: int, relative_start: dt.datetime | None = None
) -> float | None:
    """The limit of the highest-ranked schedule of ``layer`` that holds at ``at``."""
    found = _layer_at(layer, at, phases=phases, relative_start=relative_start)
    return None if found is None else found[0]


def _layer_at(
    layer: Layer, at: dt.datetime, *, phases: int, relative_start: dt.datetime | None
) -> tuple[float, int | None] | None:
    """The limit (A) and numberPhases of the highest-ranked schedule holding at ``at``."""
    best: tuple[tuple[int, ...], float, int | None] | None = None
    for ranked in layer:
        period = period_at(ranked.schedule, at, relative_start=relative_start)
        if period is None or (best is not None and ranked.rank <= best[0]):
            continue
        limit = to_amps(period.limit, ranked.schedule.unit, period.phases or phases)
        best = (ranked.rank, limit, period.phases)
    return None if best is None else (best[1], best[2])


def composite_limit_at(
    layers: Sequence[Layer],
    at: dt.datetime,
    *,
    phases: int,
    relative_start: dt.datetime | None = None,
    cap_a: float | None = None,
) -> float | None:
    """The minimum over ``layers`` (and ``cap_a``) at ``at`` in amperes; None: unlimited."""
    return _composite_at(layers, at, phases=phases, relative_start=relative_start, cap_a=cap_a)[0]


def _composite_at(
    layers: Sequence[Layer],
    at: dt.datetime,
    *,
    phases: int,
    relative_start: dt.datetime | None,
    cap_a: float | None,
) -> tuple[float | None, int | None]:
    """The composite limit at ``at`` and the numberPhases of the period that sets it (the
    first layer's of equal limits; None when the cap or nothing sets it)."""
    found = [
        item
        for layer in layers
        if (item := _layer_at(layer, at, phases=phases, relative_start=relative_start)) is not None
    ]
    best: tuple[float | None, int | None] = (None, None)
    for limit, period_phases in found:
        if best[0] is None or limit < best[0]:
            best = (limit, period_phases)
    if cap_a is not None and (best[0] is None or cap_a < best[0]):
        best = (cap_a, None)
    return best


def next_boundary(
    layers: Sequence[Layer], after: dt.datetime, *, relative_start: dt.datetime | None = None
) -> dt.datetime | None:
    """The first instant later than ``after`` at which the composite may change, or None."""
    return min(
        (
            moment
            for layer in layers
            for ranked in layer
            if (moment := next_change(ranked.schedule, after, relative_start=relative_start))
            is not None
        ),
        default=None,
    )


def composite_schedule(
    layers: Sequence[Layer],
    start: dt.datetime,
    duration_s: int,
    *,
    phases: int,
    relative_start: dt.datetime | None = None,
    cap_a: float | None = None,
) -> list[CompositePeriod]:
    """The composite limit from ``start`` for ``duration_s`` seconds as periods.

    Consecutive periods with the same limit and the same number of phases (absent counts
    as 3, as in OCPP) are merged; periods that differ only in phases stay apart. A boundary
    that falls between two whole seconds after ``start`` begins its period at the next whole
    second (offsets on the wire are integers). At most :data:`MAX_COMPOSITE_PERIODS` periods.
    """
    end = start + dt.timedelta(seconds=duration_s)
    periods: list[CompositePeriod] = []
    at: dt.datetime | None = start
    while at is not None and at < end and len(periods) < MAX_COMPOSITE_PERIODS:
        limit, period_phases = _composite_at(
            layers, at, phases=phases, relative_start=relative_start, cap_a=cap_a
        )
        offset = math.ceil((at - start).total_seconds())
        if offset >= duration_s:
            break
        if periods and periods[-1].start_s == offset:
            periods.pop()  # two boundaries within one second: the later one stands
        if (
            not periods
            or periods[-1].limit_a != limit
            or (periods[-1].phases or 3) != (period_phases or 3)
        ):
            periods.append(CompositePeriod(offset, limit, period_phases))
        at = next_boundary(layers, at, relative_start=relative_start)
    return periods
