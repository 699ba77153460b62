"""Main fuse protection per phase (issue 16): the pure rule that turns a grid reading into
each connector's limit. The properties hold for any house, any readings, any cars."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.energy.fuse import (
    ConnectorLoad,
    GridSample,
    Site,
    fuse_limits,
    grid_phases_of,
    is_fresh,
    on_grid,
)

NOW = 1000.0
amps = st.floats(min_value=0.0, max_value=80.0, allow_nan=False)
signed_amps = st.floats(min_value=-60.0, max_value=120.0, allow_nan=False)


@st.composite
def sites(draw: st.DrawFn) -> Site:
    return Site(
        fuse_a=draw(st.floats(min_value=10.0, max_value=100.0)),
        margin_a=draw(st.floats(min_value=0.0, max_value=5.0)),
        phases=draw(st.sampled_from((1, 3))),
        fallback_a=draw(st.floats(min_value=0.0, max_value=16.0)),
        max_age_s=draw(st.floats(min_value=1.0, max_value=10.0)),
    )


@st.composite
def houses(draw: st.DrawFn) -> tuple[Site, GridSample, list[ConnectorLoad]]:
    """A site, its fresh grid reading, and the connectors behind it with what they draw."""
    site = draw(sites())
    phases = sorted(site.grid_phases)
    connectors = []
    for cid in range(1, draw(st.integers(min_value=1, max_value=4)) + 1):
        used = draw(st.sets(st.sampled_from(phases), min_size=1))
        current = [draw(amps) if p in phases else 0.0 for p in range(3)]
        connectors.append(ConnectorLoad(cid, frozenset(used), (current[0], current[1], current[2])))
    # The grid sees the chargers plus the house's other load (negative: PV exporting).
    grid: list[float | None] = [None, None, None]
    for p in phases:
        other = draw(signed_amps)
        grid[p] = other + math.fsum(c.current_a[p] for c in connectors)
    return site, GridSample((grid[0], grid[1], grid[2]), NOW - 0.5), connectors


@settings(max_examples=400)
@given(houses(), st.data())
def test_no_phase_exceeds_the_fuse_less_margin_whatever_the_cars_then_draw(
    house: tuple[Site, GridSample, list[ConnectorLoad]], data: st.DataObject
) -> None:
    site, sample, connectors = house
    limits = fuse_limits(site, sample, connectors, NOW)
    for p in site.grid_phases:
        grid_a = sample.current_a[p]
        assert grid_a is not None
        others = grid_a - math.fsum(c.current_a[p] for c in connectors)
        # Each car may follow its new limit to any draw up to it on the phases it is
        # limited on; what a car draws elsewhere stays what it was.
        after = others
        untouched = others
        for c in connectors:
            if p in c.grid_phases:
                after += data.draw(st.floats(min_value=0.0, max_value=limits[c.connector_id]))
            else:
                after += c.current_a[p]
                untouched += c.current_a[p]
        # Over the fuse only if the load we do not steer is over it by itself.
        assert after <= max(site.usable_a, untouched) + 1e-6


@given(houses())
def test_a_limit_is_never_below_zero_nor_infinite(
    house: tuple[Site, GridSample, list[ConnectorLoad]],
) -> None:
    site, sample, connectors = house
    for limit in fuse_limits(site, sample, connectors, NOW).values():
        assert 0.0 <= limit < math.inf


@given(houses(), st.floats(min_value=0.001, max_value=1e6))
def test_a_stale_reading_gives_every_connector_the_safe_fallback(
    house: tuple[Site, GridSample, list[ConnectorLoad]], late_s: float
) -> None:
    site, sample, connectors = house
    now = sample.taken_at + site.max_age_s + late_s
    assert not is_fresh(site, sample, now)
    assert fuse_limits(site, sample, connectors, now) == {
        c.connector_id: site.fallback_a for c in connectors
    }
    assert fuse_limits(site, None, connectors, NOW) == {
        c.connector_id: site.fallback_a for c in connectors
    }


@given(houses(), st.sampled_from((None, math.nan, math.inf)))
def test_a_garbled_or_missing_phase_gives_the_fallback(
    house: tuple[Site, GridSample, list[ConnectorLoad]], bad: float | None
) -> None:
    site, sample, connectors = house
    current = list(sample.current_a)
    current[max(site.grid_phases)] = bad
    garbled = GridSample((current[0], current[1], current[2]), sample.taken_at)
    assert fuse_limits(site, garbled, connectors, NOW) == {
        c.connector_id: site.fallback_a for c in connectors
    }


def test_recovers_from_the_fallback_with_the_next_fresh_reading() -> None:
    site = Site(fuse_a=25.0, margin_a=1.0, fallback_a=6.0, max_age_s=5.0)
    car = ConnectorLoad(1, frozenset({0, 1, 2}))
    old = GridSample((4.0, 4.0, 4.0), NOW - 6.0)
    assert fuse_limits(site, old, [car], NOW) == {1: 6.0}
    assert fuse_limits(site, GridSample((4.0, 4.0, 4.0), NOW), [car], NOW) == {1: 20.0}


def test_a_one_phase_car_on_l2_is_limited_by_l2_alone() -> None:
    site = Site(fuse_a=25.0, margin_a=1.0)
    # Connector wired L2-L3-L1: its own L1 is the grid's L2. The car draws 10 A there.
    rotation = (1, 2, 0)
    car_a = (10.0, 0.0, 0.0)
    assert grid_phases_of(rotation, car_a) == frozenset({1})
    car = ConnectorLoad(1, grid_phases_of(rotation, car_a), on_grid(rotation, car_a))
    # The oven loads L1 with 20 A; L2 carries 5 A of other load plus the car's 10 A.
    sample = GridSample((20.0, 15.0, 2.0), NOW)
    assert fuse_limits(site, sample, [car], NOW) == {1: pytest.approx(19.0)}  # 24 - 5
    # Before the car draws, it may draw on all three: the oven's L1 bounds it.
    idle = ConnectorLoad(1, grid_phases_of(rotation, (0.0, 0.0, 0.0)))
    assert fuse_limits(site, GridSample((20.0, 5.0, 2.0), NOW), [idle], NOW) == {1: 4.0}


def test_two_cars_on_one_phase_share_its_headroom_equally() -> None:
    site = Site(fuse_a=32.0, margin_a=2.0)
    a = ConnectorLoad(1, frozenset({0, 1, 2}), (10.0, 10.0, 10.0))
    b = ConnectorLoad(2, frozenset({0}), (8.0, 0.0, 0.0))
    sample = GridSample((24.0, 12.0, 12.0), NOW)  # other load: 6 A on L1, 2 A on L2 and L3
    limits = fuse_limits(site, sample, [a, b], NOW)
    assert limits == {1: pytest.approx(12.0), 2: pytest.approx(12.0)}  # (30 - 6) / 2 on L1


def test_the_house_alone_over_the_fuse_pauses_every_car() -> None:
    site = Site(fuse_a=25.0, margin_a=1.0)
    car = ConnectorLoad(1, frozenset({0, 1, 2}), (6.0, 6.0, 6.0))
    assert fuse_limits(site, GridSample((40.0, 10.0, 10.0), NOW), [car], NOW) == {1: 0.0}


def test_a_connector_on_a_phase_the_site_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="connector 1 uses phases"):
        fuse_limits(Site(fuse_a=40.0, phases=1), None, [ConnectorLoad(1, frozenset({1}))], NOW)


@pytest.mark.parametrize("field", ["fuse_a", "margin_a", "fallback_a", "max_age_s"])
def test_a_site_refuses_negative_or_non_finite_settings(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Site(**{"fuse_a": 25.0, field: -1.0})
    with pytest.raises(ValueError, match=field):
        Site(**{"fuse_a": 25.0, field: math.nan})


def test_pv_exporting_on_a_phase_never_lifts_the_limit_above_the_fuse_less_margin() -> None:
    site = Site(fuse_a=16.0, margin_a=1.0)
    car = ConnectorLoad(1, frozenset({0, 1, 2}), (10.0, 10.0, 10.0))
    # PV exports 8 A per phase more than the house uses: a cloud could take it any second.
    assert fuse_limits(site, GridSample((2.0, 2.0, 2.0), NOW), [car], NOW) == {1: 15.0}
