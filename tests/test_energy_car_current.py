"""What a car draws now, judged between two readings of its own meter (issue 16): the grid's
change since is the car's in whichever direction errs safe. Properties over any house and
any car that never draws more than it is offered."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.energy.car_current import CarReading, estimate, grid_at
from controller.energy.fuse import ConnectorLoad, GridSample, Site, fuse_limits

THEN, NOW = 100.0, 100.8  # the car's meter reading, and the grid reading now
amps = st.floats(min_value=0.0, max_value=32.0, allow_nan=False)
ALL = frozenset({0, 1, 2})
SITE = Site(fuse_a=25.0, margin_a=1.0)


def grid(house_then: float, car_then: float, house_now: float, car_now: float) -> list[GridSample]:
    """The grid's readings: just before and just after the car's meter was read, and now
    (the same on all three phases)."""
    return [
        GridSample((house_then + car_then,) * 3, THEN - 0.1),
        GridSample((house_then + car_then,) * 3, THEN + 0.1),
        GridSample((house_now + car_now,) * 3, NOW),
    ]


def reading(car_then: float, below_offer: bool, offered: float) -> CarReading:
    return CarReading(1, (car_then,) * 3, THEN, ALL, below_offer, offered)


@settings(max_examples=300)
@given(amps, amps, amps, st.booleans(), st.booleans(), st.floats(min_value=0.0, max_value=1.0))
def test_with_the_house_steady_a_car_is_judged_at_what_it_draws_now(
    house: float, car_then: float, offered: float, below_offer: bool, rises: bool, follow: float
) -> None:
    """A car whose current fell since its meter was read (it followed a lowered offer, or
    stopped) is taken at what it draws now, never more: the house does not look lighter.
    One below its offer that rose towards it (a car ramping up) is taken at what it draws
    now too: its rise is not counted as house load, so its offer does not dip."""
    if below_offer and rises:
        car_now = car_then + (max(offered, car_then) - car_then) * follow
    else:
        car_now = car_then * follow
    history = grid(house, car_then, house, car_now)
    drawn = estimate([reading(car_then, below_offer, offered)], history)[1]
    for phase in range(3):
        assert drawn[phase] <= car_now + 1e-9
        assert math.isclose(drawn[phase], car_now, abs_tol=1e-6)


@settings(max_examples=300)
@given(amps, amps, amps, amps, amps, st.booleans())
def test_never_more_than_the_meter_read_unless_below_its_offer_and_never_above_the_offer(
    house_then: float,
    car_then: float,
    house_now: float,
    car_now: float,
    offered: float,
    below_offer: bool,
) -> None:
    history = grid(house_then, car_then, house_now, car_now)
    drawn = estimate([reading(car_then, below_offer, offered)], history)[1]
    for phase in range(3):
        assert drawn[phase] >= 0.0
        if not below_offer:
            assert drawn[phase] <= car_then + 1e-9  # never less safe than the meter alone
        assert drawn[phase] <= max(car_then, offered) + 1e-9  # never above what it may draw


@settings(max_examples=300)
@given(amps, st.lists(amps, min_size=2, max_size=4), amps, amps)
def test_cars_sharing_a_rise_are_together_never_credited_more_than_it(
    house: float, cars_then: list[float], rise: float, offered: float
) -> None:
    history = grid(house, sum(cars_then), house, sum(cars_then) + rise)
    readings = [CarReading(i, (a,) * 3, THEN, ALL, True, offered) for i, a in enumerate(cars_then)]
    drawn = estimate(readings, history)
    credited = sum(drawn[i][0] - a for i, a in enumerate(cars_then))
    assert credited <= rise + 1e-9


@settings(max_examples=300)
@given(amps, amps, amps, st.floats(min_value=0.0, max_value=1.0))
def test_a_falling_car_seen_late_never_lifts_the_offer_above_what_the_fuse_allows(
    house: float, car_then: float, lowered_to: float, follow: float
) -> None:
    """The offer was lowered; the car follows (within IEC 61851's 5 s) and its meter has
    not read it yet. The rule's offer is at most the one it makes knowing the car exactly."""
    car_now = car_then - (car_then - min(car_then, lowered_to)) * follow
    history = grid(house, car_then, house, car_now)
    drawn = estimate([reading(car_then, False, car_then)], history)[1]
    judged = fuse_limits(SITE, history[-1], [ConnectorLoad(1, ALL, drawn)], NOW)[1]
    exact = fuse_limits(SITE, history[-1], [ConnectorLoad(1, ALL, (car_now,) * 3)], NOW)[1]
    assert judged <= exact + 1e-9
    assert judged <= max(0.0, SITE.usable_a - house) + 1e-9


def test_the_grid_around_a_reading_is_the_higher_of_its_neighbours() -> None:
    history = [GridSample((5.0, 1.0, None), 1.0), GridSample((7.0, 0.5, 2.0), 2.0)]
    assert grid_at(history, 1.5, 0) == 7.0
    assert grid_at(history, 1.5, 1) == 1.0
    assert grid_at(history, 1.5, 2) is None  # a phase missing around it: no judgement
    assert grid_at(history, 9.0, 0) == 7.0
    assert grid_at([], 1.0, 0) is None
