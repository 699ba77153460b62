"""What a car draws now, judged from its own meter, what it was offered and the grid (issue 16).

The fuse rule (:mod:`controller.energy.fuse`) takes the house's other load on a phase as the
grid's current less what our cars draw. The grid meter is read every 0.2 s, a car's own
meter about once a second, so between two readings of the car's meter the grid sees the
car change first. Taking the car's last meter reading as what it draws now errs both ways:

- unsafe when the car's current fell since (it followed a lowered offer): the house looks
  lighter by the fall and the rule would offer more than the fuse allows;
- safe but costly when it rose since (it ramps up to a raised offer): the car's rise is
  counted as house load and its offer dips (24 A to 8 A in one run) until its meter
  catches up.

So the grid's change on a phase since the car's reading (:func:`grid_at`: the higher of
the grid readings around that moment) is given to the car in whichever direction errs
safe:

- a fall is the car's, down to zero: counting less current as the car's counts more as the
  house's, so the estimate is never above the meter's reading when nothing was raised;
- a rise is the house's, unless the car may be ramping up: it charges, read below what
  it has been offered since, and its offer rose (or its charging began) a few seconds ago
  at most (the manager judges it: ``RAMP_S``). Then the rise is the car's ramp, up to the
  most it has been offered within the time a car may take to follow a lowered offer (IEC
  61851: 5 s; a car never draws above what it is offered). Several such cars on one phase
  share that phase's rise, so together they are never credited more than the rise itself.

What remains: a house load that rises on a phase in the few seconds a car may ramp up on
it (a car not drawing yet may draw on any phase it is wired to) is seen at the car's next
meter reading (within a second) rather than at the next grid reading, as far as it fits in
the car's offer less its last reading; a car steadily below its offer is not ramping, and
every rise of the grid beside it is the house's at once.

Pure: no I/O, no clock (``taken_at`` times come with the readings). Grid phases 0-2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.energy.fuse import GridSample, Phases

#: How long a car may take to follow a lowered offer (IEC 61851-1: 5 s): within it, it may
#: still draw what it was offered before.
FOLLOW_S = 5.0


@dataclass(frozen=True, slots=True)
class CarReading:
    """One connector's last meter reading as the estimate needs it.

    ``current_a``: what its meter measured on each grid phase (:func:`fuse.on_grid`);
    ``taken_at``: when (monotonic s); ``phases``: the grid phases its car draws or may
    draw on; ``below_offer``: whether it may still ramp up (it charges, read below what it
    has been offered since, and its offer rose or its charging began moments ago);
    ``most_offered_a``: the most it has been offered (A a phase) within :data:`FOLLOW_S`
    up to now, the reading's own offer included.
    """

    connector_id: int
    current_a: Phases
    taken_at: float
    phases: frozenset[int]
    below_offer: bool = False
    most_offered_a: float = 0.0


def grid_at(history: Sequence[GridSample], at: float, phase: int) -> float | None:
    """The grid's current on ``phase`` around the moment ``at``: the higher of the last
    reading taken at or before it and the first one after it (the higher errs towards the
    house: a smaller change is then given to the car). None when no reading is kept, or
    one around it lacks the phase."""
    before = [s for s in history if s.taken_at <= at]
    after = [s for s in history if s.taken_at > at]
    around = [*before[-1:], *after[:1]]
    if not around:
        return None
    values = [s.current_a[phase] for s in around]
    if any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def estimate(readings: Sequence[CarReading], history: Sequence[GridSample]) -> dict[int, Phases]:
    """What each car draws now on each grid phase (A, >= 0), ``history`` the grid's
    readings oldest first, its last one now's."""
    if not history:
        return {r.connector_id: r.current_a for r in readings}
    now = history[-1]
    change: dict[tuple[int, int], float] = {}
    for r in readings:
        for p in r.phases:
            then, current = grid_at(history, r.taken_at, p), now.current_a[p]
            change[r.connector_id, p] = 0.0 if then is None or current is None else current - then
    rising = [0, 0, 0]  # per phase: the cars that may have ramped up while the grid rose
    for r in readings:
        for p in r.phases:
            rising[p] += r.below_offer and change[r.connector_id, p] > 0.0
    out: dict[int, Phases] = {}
    for r in readings:
        car = list(r.current_a)
        for p in r.phases:
            delta, measured = change[r.connector_id, p], r.current_a[p]
            if delta < 0.0:
                car[p] = max(0.0, measured + delta)
            elif delta > 0.0 and r.below_offer:
                ceiling = max(measured, r.most_offered_a)
                car[p] = min(ceiling, measured + delta / rising[p])
        out[r.connector_id] = (car[0], car[1], car[2])
    return out
