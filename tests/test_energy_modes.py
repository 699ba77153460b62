"""The charging modes as pure rules (issue 16): fast, solar, min+solar and schedule.

The mode machine (controller/energy/modes.py) is fed readings and times as a day would feed
it; the properties hold for any sequence hypothesis finds: never above the fuse rule's
offer, no start or stop sooner than the delays, the minimum run and the minimum pause
allow, and a steady surplus never moves the PWM twice.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager
from controller.energy.mode_config import parse_energy
from controller.energy.mode_runner import ModeRunner
from controller.energy.modes import Mode, ModeState, Timing, follow, step, surplus_a
from controller.energy.schedule import Schedule, allows, parse_window
from controller.limits import LimitSource
from drivers.errors import ConfigurationError

TIMING = Timing(start_delay_s=60, stop_delay_s=180, min_run_s=300, min_pause_s=300)


def run(
    mode: Mode, readings: list[tuple[float, float | None, float]], timing: Timing = TIMING
) -> list[tuple[float, float | None, ModeState]]:
    """(time, limit, state) for each (time, available A, fuse A) reading, in order."""
    state = ModeState()
    out = []
    for now, available, fuse in readings:
        state, limit = step(mode, timing, state, available, fuse, now)
        out.append((now, limit, state))
    return out


def every_second(
    start: float, end: float, available: float | None, fuse: float = 32.0
) -> list[tuple[float, float | None, float]]:
    return [(float(t), available, fuse) for t in range(int(start), int(end))]


# --- the surplus ---------------------------------------------------------------------------


def test_the_surplus_is_what_the_house_exports_plus_what_the_car_already_takes() -> None:
    # Exporting 10 A on every phase while the car takes 6 A on each: 16 A for it.
    assert surplus_a([-4.0, -4.0, -4.0], [6.0, 6.0, 6.0], 3) == pytest.approx(10.0)
    # Net metering: a one-phase car on L1 may use what L2 and L3 export.
    assert surplus_a([2.0, -5.0, -5.0], [6.0, 0.0, 0.0], 1) == pytest.approx(14.0)
    # Importing more than the car takes: no surplus, below zero.
    assert surplus_a([5.0, 5.0, 5.0], [2.0, 2.0, 2.0], 3) < 0


# --- solar ------------------------------------------------------------------------------


def test_solar_starts_only_after_the_surplus_covered_6_a_for_the_start_delay() -> None:
    out = run(Mode.SOLAR, every_second(0, 120, 8.0))
    first_on = next(t for t, limit, _ in out if limit)
    assert first_on == 60.0
    assert all(limit == 0.0 for t, limit, _ in out if t < 60)
    assert out[-1][1] == 8.0


def test_solar_stays_paused_when_the_surplus_dips_before_the_start_delay() -> None:
    readings = every_second(0, 50, 8.0) + every_second(50, 51, 3.0) + every_second(51, 200, 8.0)
    out = run(Mode.SOLAR, readings)
    assert next(t for t, limit, _ in out if limit) == 111.0  # 60 s after the dip


def test_a_passing_cloud_shorter_than_the_stop_delay_costs_no_contactor_operation() -> None:
    readings = (
        every_second(0, 400, 10.0) + every_second(400, 550, 2.0) + every_second(550, 700, 10.0)
    )
    out = run(Mode.SOLAR, readings)
    on = [t for t, limit, _ in out if limit]
    assert on[0] == 60.0 and on[-1] == 699.0
    assert len(on) == 700 - 60  # never paused: the cloud lasted 150 s < 180 s
    # Under the cloud the car takes the minimum, not more than the surplus above it.
    assert {limit for t, limit, _ in out if 400 <= t < 550} == {6.0}


def test_solar_pauses_after_the_stop_delay_and_not_before_the_minimum_run() -> None:
    # The surplus goes at 100 s, just after the start at 60 s: stop delay over at 280 s,
    # but the minimum run (300 s from the start) holds the car on until 360 s.
    readings = every_second(0, 100, 10.0) + every_second(100, 500, 0.0)
    out = run(Mode.SOLAR, readings)
    off = next(t for t, limit, _ in out if t > 60 and limit == 0.0)
    assert off == 360.0


def test_solar_waits_the_minimum_pause_before_starting_again() -> None:
    readings = every_second(0, 100, 10.0) + every_second(100, 370, 0.0)
    readings += every_second(370, 800, 10.0)
    out = run(Mode.SOLAR, readings)
    restart = next(t for t, limit, _ in out if t > 360 and limit)
    assert restart == 360.0 + 300.0  # the surplus was back at 370 (+60 s), the pause rules


def test_solar_without_a_fresh_grid_reading_counts_no_surplus() -> None:
    readings = every_second(0, 100, 10.0) + every_second(100, 600, None)
    out = run(Mode.SOLAR, readings)
    assert out[-1][1] == 0.0


def test_min_solar_charges_6_a_at_least_and_more_with_the_surplus() -> None:
    out = run(Mode.MIN_SOLAR, every_second(0, 10, -5.0) + every_second(10, 20, 11.6))
    assert out[0][1] == 6.0
    assert out[-1][1] == 11.0


def test_fast_sets_no_limit_and_schedule_pauses_outside_its_hours() -> None:
    state, limit = step(Mode.FAST, TIMING, ModeState(), None, 32.0, 0.0)
    assert limit is None and state.charging
    _, limit = step(Mode.SCHEDULE, TIMING, ModeState(), 10.0, 32.0, 0.0, scheduled=False)
    assert limit == 0.0
    _, limit = step(Mode.SCHEDULE, TIMING, ModeState(), None, 32.0, 0.0, scheduled=True)
    assert limit is None


def test_the_current_follows_the_surplus_down_at_once_and_up_with_hysteresis() -> None:
    assert follow(10.0, 9.7) == 9.0  # down: never more than the surplus
    assert follow(10.0, 9.9) == 10.0  # ... beyond what two meters may disagree by
    assert follow(10.0, 11.2) == 10.0  # up only 0.3 A past the next step
    assert follow(10.0, 11.3) == 11.0
    assert follow(0.0, 3.0) == 6.0  # never below the minimum


# --- properties -------------------------------------------------------------------------

# Weather as spans: each a duration (s), a surplus per car phase (None: no fresh grid
# reading) and a fuse offer, read every ``tick`` seconds; spans make the runs of surplus
# and cloud a delay needs to see, which independent readings almost never would.
span_strategy = st.tuples(
    st.floats(1.0, 600.0),
    st.one_of(st.none(), st.floats(-40.0, 40.0)),
    st.floats(0.0, 40.0),
)
readings_strategy = st.builds(
    lambda tick, spans: _expand(tick, spans),
    st.floats(2.0, 30.0),
    st.lists(span_strategy, min_size=1, max_size=10),
)


def _expand(
    tick: float, spans: list[tuple[float, float | None, float]]
) -> list[tuple[float, float | None, float]]:
    """(time, available, fuse) every ``tick`` seconds through the spans, in order."""
    out = []
    now = 0.0
    for duration, available, fuse in spans:
        end = now + duration
        while now < end:
            out.append((now, available, fuse))
            now += tick
    return out


timing_strategy = st.builds(
    Timing,
    st.floats(0.0, 600.0),
    st.floats(0.0, 600.0),
    st.floats(0.0, 900.0),
    st.floats(0.0, 900.0),
    st.floats(0.0, 60.0),
)


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from([Mode.SOLAR, Mode.MIN_SOLAR]),
    timing=timing_strategy,
    gaps=readings_strategy,
)
def test_the_mode_never_offers_more_than_the_fuse_rule(
    mode: Mode, timing: Timing, gaps: list[tuple[float, float | None, float]]
) -> None:
    readings = gaps
    for (_, _, fuse), (_, limit, _) in zip(readings, run(mode, readings, timing), strict=True):
        assert limit is not None and limit <= fuse
        assert limit == 0.0 or limit >= 6.0 or limit == fuse  # paused, or a real offer


@settings(max_examples=200, deadline=None)
@given(timing=timing_strategy, gaps=readings_strategy)
def test_solar_never_starts_or_stops_sooner_than_the_delays_allow(
    timing: Timing, gaps: list[tuple[float, float | None, float]]
) -> None:
    readings = gaps
    out = run(Mode.SOLAR, readings, timing)
    on = False
    switched = -math.inf
    for i, ((now, _, _), (_, _, state)) in enumerate(zip(readings, out, strict=True)):
        if state.charging == on:
            continue
        # Every reading of the last delay's span (and this one) agreed with the switch.
        delay = timing.start_delay_s if state.charging else timing.stop_delay_s
        span = [a for t, a, _ in readings[: i + 1] if t >= now - delay]
        earlier = [t for t, _, _ in readings[: i + 1]]
        assert earlier[0] <= now - delay, "switched before a whole delay had been seen"
        covered = [a is not None and a >= 6.0 for a in span]
        assert all(covered) if state.charging else not any(covered)
        least = timing.min_pause_s if state.charging else timing.min_run_s
        assert now - switched >= least
        on, switched = state.charging, now


@settings(max_examples=200, deadline=None)
@given(
    mode=st.sampled_from([Mode.SOLAR, Mode.MIN_SOLAR]),
    timing=timing_strategy,
    gaps=readings_strategy,
)
def test_the_current_is_held_for_the_settle_time_after_each_change(
    mode: Mode, timing: Timing, gaps: list[tuple[float, float | None, float]]
) -> None:
    out = run(mode, gaps, timing)
    for (_, _, before), (now, _, after) in itertools.pairwise(out):
        moved = after.level_a != before.level_a
        if moved and before.level_a >= 6.0 and after.level_a >= 6.0:  # not a start or stop
            assert now - before.level_at >= timing.settle_s


@settings(max_examples=100, deadline=None)
@given(
    mode=st.sampled_from([Mode.SOLAR, Mode.MIN_SOLAR]),
    available=st.floats(-20.0, 40.0),
    noise=st.lists(st.floats(-0.25, 0.25), min_size=20, max_size=60),
)
def test_a_steady_surplus_with_noise_moves_the_pwm_at_most_once_after_settling(
    mode: Mode, available: float, noise: list[float]
) -> None:
    # Settled: long past every delay at the steady value.
    readings = [(float(t), available, 32.0) for t in range(0, 2000, 10)]
    readings += [(2000.0 + i, available + n, 32.0) for i, n in enumerate(noise)]
    limits = [limit for _, limit, _ in run(mode, readings, TIMING)[199:]]
    changes = sum(1 for a, b in itertools.pairwise(limits) if a != b)
    assert changes <= 1


@settings(max_examples=100, deadline=None)
@given(gaps=readings_strategy)
def test_min_solar_never_pauses_while_the_fuse_allows_6_a(
    gaps: list[tuple[float, float | None, float]],
) -> None:
    readings = gaps
    for (_, _, fuse), (_, limit, _) in zip(readings, run(Mode.MIN_SOLAR, readings), strict=True):
        if fuse >= 6.0:
            assert limit is not None and limit >= 6.0


# --- schedule ---------------------------------------------------------------------------


def test_off_peak_hours_wrap_around_midnight() -> None:
    night = Schedule(off_peak=parse_window("22:00-06:00"))
    assert allows(night, 23 * 60, 0.0, 11_000.0)
    assert allows(night, 5 * 60 + 59, 0.0, 11_000.0)
    assert not allows(night, 6 * 60, 0.0, 11_000.0)
    assert not allows(night, 12 * 60, 0.0, 11_000.0)


def test_a_departure_plan_starts_late_enough_and_stops_at_the_target() -> None:
    plan = Schedule(departure=7 * 60, energy_wh=22_000.0)
    # 22 kWh at 11 kW is 2 h; with a quarter to spare, 2.5 h: from 04:30.
    assert not allows(plan, 4 * 60 + 29, 0.0, 11_000.0)
    assert allows(plan, 4 * 60 + 30, 0.0, 11_000.0)
    # Half-way there at 05:00 (a car faster than planned): charging goes on, no pause
    # and restart; once the target is in the car, it stops.
    assert allows(plan, 5 * 60, 11_000.0, 11_000.0, charging=True)
    assert not allows(plan, 5 * 60, 22_000.0, 11_000.0, charging=True)
    # Outside a session's run (a new session at 05:00) the plan starts when it must.
    assert not allows(plan, 5 * 60, 11_000.0, 11_000.0, charging=False)


# --- configuration ------------------------------------------------------------------------


def test_energy_table_sets_each_connectors_mode_and_the_delays() -> None:
    parsed = parse_energy(
        {"mode": "solar", "start_delay_s": 30, "settle_s": 5, "off_peak": "22:00-06:00"},
        {1: None, 2: "schedule"},
        [1, 2],
    )
    assert parsed.modes == {1: Mode.SOLAR, 2: Mode.SCHEDULE}
    timing = parsed.thresholds(1).timing
    assert timing.start_delay_s == 30.0
    assert timing.settle_s == 5.0
    assert timing.stop_delay_s == Timing().stop_delay_s


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"mode": "eco"}, "energy.mode"),
        ({"start_delay_s": -1}, "energy.start_delay_s"),
        ({"min_run_s": "5 min"}, "energy.min_run_s"),
        ({"off_peak": "22:00"}, "energy.off_peak"),
        ({"departure": "7:60", "energy_kwh": 10}, "energy.departure"),
        ({"departure": "07:00"}, "energy.energy_kwh"),
        ({"mode": "schedule"}, "energy.off_peak"),
    ],
)
def test_a_bad_energy_table_is_refused_naming_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_energy(section, {1: None}, [1])
    assert refused.value.key == key


# --- the 1-or-3 phase choice --------------------------------------------------------------


class NoSink:
    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        pass


@pytest.mark.parametrize(
    ("mode", "on_three", "on_one"),
    [(Mode.SOLAR, 3.0, 9.0), (Mode.MIN_SOLAR, 3.0, 9.0), (Mode.FAST, None, None)],
)
def test_the_phase_choice_is_capped_by_the_surplus_in_the_solar_modes_only(
    mode: Mode, on_three: float | None, on_one: float | None
) -> None:
    """9 A exported in all covers 6 A on one phase but not on three: the solar modes tell
    the phase switch so; fast mode takes no account of the surplus."""
    feed = GridFeed()
    manager = FuseManager(Site(fuse_a=25.0), [ConnectorWiring(1)], feed, NoSink())
    settings_ = parse_energy({"mode": str(mode)}, {1: None}, [1])
    runner = ModeRunner(settings_, manager, feed, NoSink(), {1: 11_040.0})
    feed.push([-3.0, -3.0, -3.0])
    assert runner.surplus_cap_a(1, 3) == on_three
    assert runner.surplus_cap_a(1, 1) == on_one
