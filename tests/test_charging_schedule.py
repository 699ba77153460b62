"""The schedule math of smart charging (controller.charging_schedule): pure functions, checked
on random schedules with hypothesis and on hand-made cases where the answer is known."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.charging_schedule import (
    NOMINAL_VOLTAGE_V,
    CompositePeriod,
    Ranked,
    RateUnit,
    Recurrency,
    Schedule,
    ScheduleError,
    ScheduleKind,
    SchedulePeriod,
    composite_limit_at,
    composite_schedule,
    from_amps,
    layer_limit_at,
    limit_at,
    next_boundary,
    next_change,
    period_at,
    to_amps,
)

MONDAY = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)  # a Monday, 00:00 UTC
S = dt.timedelta(seconds=1)


def at(seconds: float) -> dt.datetime:
    return MONDAY + dt.timedelta(seconds=seconds)


def amps(*periods: tuple[int, float], **kwargs: object) -> Schedule:
    fields: dict[str, object] = {"kind": ScheduleKind.ABSOLUTE, "start": MONDAY, **kwargs}
    return Schedule(
        unit=RateUnit.AMPS,
        periods=tuple(SchedulePeriod(s, limit) for s, limit in periods),
        **fields,  # type: ignore[arg-type]
    )


# --- strategies ----------------------------------------------------------------------------

instants = st.integers(-3 * 86_400, 10 * 86_400).map(at)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    unit = draw(st.sampled_from(RateUnit))
    top = 80.0 if unit is RateUnit.AMPS else 80.0 * NOMINAL_VOLTAGE_V * 3
    later = draw(st.lists(st.integers(1, 7_200), max_size=5, unique=True))
    periods = tuple(
        SchedulePeriod(
            start_s,
            draw(st.floats(0, top).map(lambda v: round(v, 1))),
            draw(st.none() | st.integers(1, 3)),
        )
        for start_s in [0, *sorted(later)]
    )
    kind = draw(st.sampled_from(ScheduleKind))
    valid_from = draw(st.none() | instants)
    valid_to = draw(st.none() | instants)
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        valid_to = None
    return Schedule(
        kind=kind,
        unit=unit,
        periods=periods,
        start=draw(instants),
        duration_s=draw(st.none() | st.integers(1, 3 * 86_400)),
        recurrency=draw(st.sampled_from(Recurrency)) if kind is ScheduleKind.RECURRING else None,
        valid_from=valid_from,
        valid_to=valid_to,
    )


@st.composite
def layers(draw: st.DrawFn) -> list[list[Ranked]]:
    return [
        [
            Ranked((draw(st.integers(0, 3)),), schedule)
            for schedule in draw(st.lists(schedules(), min_size=1, max_size=3))
        ]
        for _ in range(draw(st.integers(1, 3)))
    ]


relative_starts = st.none() | instants
PHASES = st.integers(1, 3)


# --- properties ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(layers(), instants, relative_starts, PHASES)
def test_the_composite_never_exceeds_the_limit_of_any_layers_winning_profile(
    stack: list[list[Ranked]], moment: dt.datetime, relative: dt.datetime | None, phases: int
) -> None:
    composite = composite_limit_at(stack, moment, phases=phases, relative_start=relative)
    winners = []
    for layer in stack:
        active = [
            (r.rank, limit)
            for r in layer
            if (limit := limit_at(r.schedule, moment, phases=phases, relative_start=relative))
            is not None
        ]
        if active:
            top = max(rank for rank, _ in active)
            winners.append(next(limit for rank, limit in active if rank == top))
    if not winners:
        assert composite is None
    else:
        assert composite is not None
        assert all(composite <= limit for limit in winners)
        assert composite == min(winners)


@settings(max_examples=100, deadline=None)
@given(st.lists(schedules(), min_size=1, max_size=4), instants, relative_starts, PHASES)
def test_with_one_profile_per_layer_the_composite_is_within_every_active_profile(
    found: list[Schedule], moment: dt.datetime, relative: dt.datetime | None, phases: int
) -> None:
    stack = [[Ranked((0,), schedule)] for schedule in found]
    composite = composite_limit_at(stack, moment, phases=phases, relative_start=relative)
    for schedule in found:
        limit = limit_at(schedule, moment, phases=phases, relative_start=relative)
        if limit is not None:
            assert composite is not None and composite <= limit


@settings(max_examples=100, deadline=None)
@given(layers(), instants, relative_starts, PHASES, st.integers(1, 3 * 86_400), st.data())
def test_the_composite_schedule_gives_at_each_second_the_limit_in_force_then(
    stack: list[list[Ranked]],
    start: dt.datetime,
    relative: dt.datetime | None,
    phases: int,
    duration_s: int,
    data: st.DataObject,
) -> None:
    periods = composite_schedule(
        stack, start, duration_s, phases=phases, relative_start=relative, cap_a=32.0
    )
    assert periods[0].start_s == 0
    assert [p.start_s for p in periods] == sorted({p.start_s for p in periods})
    # Neighbours differ in their limit or in their number of phases (absent counts as 3):
    # periods that differ only in phases stay apart (GetCompositeSchedule keeps numberPhases).
    assert all(
        a.limit_a != b.limit_a or (a.phases or 3) != (b.phases or 3)
        for a, b in itertools.pairwise(periods)
    ), periods
    for offset in data.draw(st.lists(st.integers(0, duration_s - 1), min_size=1, max_size=10)):
        covering = [p for p in periods if p.start_s <= offset][-1]
        expected = composite_limit_at(
            stack, start + offset * S, phases=phases, relative_start=relative, cap_a=32.0
        )
        assert covering.limit_a == expected


@settings(max_examples=100, deadline=None)
@given(layers(), instants, relative_starts, PHASES, st.data())
def test_the_composite_holds_still_until_the_next_boundary(
    stack: list[list[Ranked]],
    moment: dt.datetime,
    relative: dt.datetime | None,
    phases: int,
    data: st.DataObject,
) -> None:
    boundary = next_boundary(stack, moment, relative_start=relative)
    assert boundary is None or boundary > moment
    span = 86_400 if boundary is None else int((boundary - moment).total_seconds())
    now = composite_limit_at(stack, moment, phases=phases, relative_start=relative)
    for offset in data.draw(st.lists(st.integers(0, max(span - 1, 0)), max_size=8)):
        later = composite_limit_at(
            stack, moment + offset * S, phases=phases, relative_start=relative
        )
        assert later == now


@settings(max_examples=100, deadline=None)
@given(schedules(), PHASES)
def test_each_period_starts_exactly_at_its_boundary(schedule: Schedule, phases: int) -> None:
    anchor = schedule.start if schedule.kind is not ScheduleKind.RELATIVE else MONDAY
    assert anchor is not None
    relative = MONDAY if schedule.kind is ScheduleKind.RELATIVE else None
    plain = Schedule(
        kind=schedule.kind,
        unit=schedule.unit,
        periods=schedule.periods,
        start=schedule.start,
        recurrency=schedule.recurrency,
    )
    for before, period in itertools.pairwise(plain.periods):
        boundary = anchor + period.start_s * S
        assert period_at(plain, boundary, relative_start=relative) == period
        assert period_at(plain, boundary - S, relative_start=relative) == before
        assert next_change(plain, boundary - S, relative_start=relative) == boundary


@settings(max_examples=100, deadline=None)
@given(schedules(), instants, PHASES)
def test_a_recurring_schedule_repeats_every_day_or_week(
    schedule: Schedule, moment: dt.datetime, phases: int
) -> None:
    recurring = Schedule(
        kind=ScheduleKind.RECURRING,
        unit=schedule.unit,
        periods=schedule.periods,
        start=schedule.start,
        duration_s=schedule.duration_s,
        recurrency=schedule.recurrency or Recurrency.DAILY,
    )
    cycle = dt.timedelta(days=1 if recurring.recurrency is Recurrency.DAILY else 7)
    now = limit_at(recurring, moment, phases=phases)
    assert limit_at(recurring, moment + cycle, phases=phases) == now
    assert limit_at(recurring, moment - 3 * cycle, phases=phases) == now


@given(st.floats(0, 80), PHASES)
def test_watts_and_amps_convert_with_the_phases_and_230_v(current: float, phases: int) -> None:
    watts = from_amps(current, RateUnit.WATTS, phases)
    assert watts == pytest.approx(current * 230.0 * phases)
    assert to_amps(watts, RateUnit.WATTS, phases) == pytest.approx(current)
    assert to_amps(current, RateUnit.AMPS, phases) == current


# --- known cases ---------------------------------------------------------------------------


def test_a_limit_in_watts_uses_the_periods_phases_else_the_connectors() -> None:
    schedule = Schedule(
        kind=ScheduleKind.ABSOLUTE,
        unit=RateUnit.WATTS,
        start=MONDAY,
        periods=(SchedulePeriod(0, 11_040.0), SchedulePeriod(60, 11_040.0, phases=1)),
    )
    assert limit_at(schedule, at(0), phases=3) == pytest.approx(16.0)
    assert limit_at(schedule, at(0), phases=1) == pytest.approx(48.0)
    assert limit_at(schedule, at(60), phases=3) == pytest.approx(48.0)


def test_a_daily_schedule_wraps_from_its_last_period_to_its_first_at_the_start_time() -> None:
    evening = MONDAY + dt.timedelta(hours=22)
    night = Schedule(
        kind=ScheduleKind.RECURRING,
        recurrency=Recurrency.DAILY,
        unit=RateUnit.AMPS,
        start=evening,  # 22:00: 16 A, from 06:00 (8 h later) 6 A
        periods=(SchedulePeriod(0, 16.0), SchedulePeriod(8 * 3600, 6.0)),
    )
    tuesday = dt.timedelta(days=1)
    assert limit_at(night, evening + tuesday - S, phases=3) == 6.0  # Tuesday 21:59:59
    assert limit_at(night, evening + tuesday, phases=3) == 16.0
    assert limit_at(night, MONDAY + dt.timedelta(hours=3), phases=3) == 16.0  # Sunday's night
    assert next_change(night, evening + tuesday - S) == evening + tuesday


def test_a_weekly_schedule_with_a_duration_holds_only_inside_it_each_week() -> None:
    weekend = Schedule(
        kind=ScheduleKind.RECURRING,
        recurrency=Recurrency.WEEKLY,
        unit=RateUnit.AMPS,
        start=MONDAY + dt.timedelta(days=5),  # Saturday 00:00, for two days
        duration_s=2 * 86_400,
        periods=(SchedulePeriod(0, 32.0),),
    )
    assert limit_at(weekend, MONDAY + dt.timedelta(days=12, hours=5), phases=3) == 32.0
    assert limit_at(weekend, MONDAY + dt.timedelta(days=14, hours=5), phases=3) is None
    assert limit_at(weekend, MONDAY - dt.timedelta(days=1), phases=3) == 32.0  # last Sunday


def test_a_relative_schedule_counts_from_the_transaction_and_floats_without_one() -> None:
    ramp = Schedule(
        kind=ScheduleKind.RELATIVE,
        unit=RateUnit.AMPS,
        periods=(SchedulePeriod(0, 6.0), SchedulePeriod(600, 16.0)),
        duration_s=3600,
    )
    started = at(1000)
    assert limit_at(ramp, at(1599), phases=3, relative_start=started) == 6.0
    assert limit_at(ramp, at(1600), phases=3, relative_start=started) == 16.0
    assert limit_at(ramp, at(4600), phases=3, relative_start=started) is None  # duration over
    assert limit_at(ramp, at(99_999), phases=3) == 6.0  # no transaction: the first period
    assert next_change(ramp, at(99_999)) is None


def test_a_higher_stack_level_wins_and_the_lower_returns_when_it_ends() -> None:
    base = Ranked((0,), amps((0, 20.0)))
    boost = Ranked((1,), amps((0, 32.0), duration_s=60))
    assert layer_limit_at([base, boost], at(10), phases=3) == 32.0  # higher wins, even higher
    assert layer_limit_at([base, boost], at(60), phases=3) == 20.0
    assert next_boundary([[base, boost]], at(10)) == at(60)


def test_validity_window_and_a_future_start_leave_the_schedule_without_effect() -> None:
    window = amps((0, 10.0), valid_from=at(100), valid_to=at(200))
    assert [limit_at(window, at(s), phases=3) for s in (99, 100, 199, 200)] == [
        None,
        10.0,
        10.0,
        None,
    ]
    future = amps((0, 10.0), start=at(500))
    assert limit_at(future, at(499), phases=3) is None
    assert next_change(future, at(0)) == at(500)


def test_the_composite_schedule_merges_equal_limits_and_fills_gaps_with_the_cap() -> None:
    cpmax = [Ranked((0,), amps((0, 16.0), (60, 16.0), (120, 10.0)))]
    tx = [Ranked((0,), amps((0, 20.0), (30, 8.0), duration_s=90))]
    periods = composite_schedule([cpmax, tx], at(0), 300, phases=3, cap_a=32.0)
    assert periods == [
        CompositePeriod(0, 16.0),
        CompositePeriod(30, 8.0),
        CompositePeriod(90, 16.0),
        CompositePeriod(120, 10.0),
    ]
    nothing = composite_schedule([], at(0), 300, phases=3)
    assert nothing == [CompositePeriod(0, None)]


def test_a_boundary_between_whole_seconds_starts_its_period_at_the_next_second() -> None:
    half = amps((0, 16.0), (10, 8.0), start=at(0.5))
    assert composite_schedule([[Ranked((0,), half)]], at(0), 20, phases=3) == [
        CompositePeriod(0, None),
        CompositePeriod(1, 16.0),
        CompositePeriod(11, 8.0),
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"periods": ()}, "at least one period"),
        ({"periods": (SchedulePeriod(5, 1.0),)}, "start at 0"),
        ({"periods": (SchedulePeriod(0, 1.0), SchedulePeriod(0, 2.0))}, "increasing"),
        ({"periods": (SchedulePeriod(0, -1.0),)}, ">= 0"),
        ({"periods": (SchedulePeriod(0, float("nan")),)}, ">= 0"),
        ({"periods": (SchedulePeriod(0, 1.0, phases=4),)}, "numberPhases"),
        ({"duration_s": 0}, "duration"),
        ({"start": None}, "needs a start"),
        ({"kind": ScheduleKind.RECURRING}, "recurrency"),
        ({"start": dt.datetime(2024, 1, 1)}, "timezone-aware"),
        ({"valid_from": at(10), "valid_to": at(10)}, "after validFrom"),
    ],
)
def test_a_schedule_that_cannot_be_followed_is_refused_saying_why(
    changes: dict[str, object], problem: str
) -> None:
    fields: dict[str, object] = {
        "kind": ScheduleKind.ABSOLUTE,
        "unit": RateUnit.AMPS,
        "periods": (SchedulePeriod(0, 1.0),),
        "start": MONDAY,
        **changes,
    }
    with pytest.raises(ScheduleError, match=problem):
        Schedule(**fields)  # type: ignore[arg-type]
