"""Several connectors on one circuit (issue 16): fair shares under the circuit's limit.

The rule alone first (controller/energy/circuits.py), as properties over random circuits:
no phase above the limit, no offer between 0 and 6 A, equal shares, nobody paused who could
run, nobody starved; then through the fuse manager, where the circuit's offer and the main
fuse's limit meet and lowered connectors are set before raised ones; then the config.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ConfigError, parse_config
from controller.connector_types import ConnectorStatus
from controller.energy.circuits import (
    Circuit,
    Circuits,
    CircuitSharing,
    Claim,
    fair_fill,
    parse_circuits,
    share,
)
from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager
from controller.events import StatusEvent
from controller.limits import MIN_OFFER_A, LimitSource
from drivers.errors import ConfigurationError
from tests.support.standalone import running
from tests.support.wait import until

TOLERANCE_A = 1e-6
PHASE_SETS = st.sampled_from(
    [frozenset({0, 1, 2}), frozenset({0}), frozenset({1}), frozenset({2}), frozenset({0, 1})]
)


@st.composite
def claims(draw: st.DrawFn, most: int = 5) -> list[Claim]:
    n = draw(st.integers(1, most))
    return [
        Claim(
            cid,
            draw(PHASE_SETS),
            draw(st.one_of(st.just(math.inf), st.floats(0.0, 40.0))),
            draw(st.booleans()) or cid == 1,
        )
        for cid in range(1, n + 1)
    ]


def phase_sums(offers: dict[int, float], cs: list[Claim]) -> dict[int, float]:
    return {p: sum(offers[c.connector_id] for c in cs if p in c.grid_phases) for p in range(3)}


# --- the rule -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(limit_a=st.floats(0.0, 80.0), cs=claims())
def test_no_phase_of_a_circuit_is_ever_offered_more_than_its_limit(
    limit_a: float, cs: list[Claim]
) -> None:
    offers = share(limit_a, cs)
    for phase, total in phase_sums(offers, cs).items():
        assert total <= limit_a + TOLERANCE_A, f"L{phase + 1}: {total} A on a {limit_a} A circuit"
    for c in cs:
        offer = offers[c.connector_id]
        assert offer <= c.cap_a + TOLERANCE_A, "more than the connector's cap"
        assert offer == 0.0 or offer >= MIN_OFFER_A - TOLERANCE_A, f"offered {offer} A"
        assert c.wants or offer == 0.0, "a share for a connector without a session"


@settings(max_examples=300, deadline=None)
@given(limit_a=st.floats(6.0, 80.0), cs=claims())
def test_running_connectors_share_equally_unless_capped_or_on_a_fuller_phase(
    limit_a: float, cs: list[Claim]
) -> None:
    offers = share(limit_a, cs)
    running = [c for c in cs if offers[c.connector_id] > 0]
    sums = phase_sums(offers, cs)
    for low in running:
        for high in running:
            if offers[low.connector_id] < offers[high.connector_id] - TOLERANCE_A:
                # Max-min fairness: the lower one could not get more, it is at its cap or a
                # phase of its is full.
                capped = offers[low.connector_id] >= low.cap_a - TOLERANCE_A
                full = any(sums[p] >= limit_a - TOLERANCE_A for p in low.grid_phases)
                assert capped or full, (offers, low, high)


@settings(max_examples=300, deadline=None)
@given(cs=claims(), spare_a=st.floats(0.0, 20.0))
def test_nobody_is_paused_when_every_session_can_have_6_a(cs: list[Claim], spare_a: float) -> None:
    able = [c for c in cs if c.wants and c.cap_a >= MIN_OFFER_A]
    most_on_a_phase = max(sum(1 for c in able if p in c.grid_phases) for p in range(3))
    offers = share(MIN_OFFER_A * most_on_a_phase + spare_a, cs)
    assert all(offers[c.connector_id] >= MIN_OFFER_A - TOLERANCE_A for c in able)


@settings(max_examples=300, deadline=None)
@given(limit_a=st.floats(6.0, 60.0), cs=claims())
def test_a_paused_session_could_not_have_run_beside_the_others(
    limit_a: float, cs: list[Claim]
) -> None:
    offers = share(limit_a, cs)
    running = [c for c in cs if offers[c.connector_id] > 0]
    for c in cs:
        if c.wants and c.cap_a >= MIN_OFFER_A and offers[c.connector_id] == 0.0:
            trial = fair_fill(limit_a, [*running, c])
            assert min(trial.values()) < MIN_OFFER_A - TOLERANCE_A, f"{c} paused needlessly"


def test_a_connector_that_cannot_get_6_a_is_paused_and_the_others_share_the_rest() -> None:
    three = frozenset({0, 1, 2})
    cs = [Claim(i, three, math.inf, True) for i in (1, 2, 3)]
    # 16 A for three: 5.3 A each is no offer at all; two run on 8 A, the third waits.
    assert share(16.0, cs) == {1: 8.0, 2: 8.0, 3: 0.0}
    assert share(18.0, cs) == {1: 6.0, 2: 6.0, 3: 6.0}


def test_one_phase_cars_on_different_phases_do_not_take_from_each_other() -> None:
    cs = [
        Claim(1, frozenset({0}), math.inf, True),
        Claim(2, frozenset({1}), math.inf, True),
        Claim(3, frozenset({0, 1, 2}), 10.0, True),
    ]
    # L1 and L2 each carry a one-phase car and the capped three-phase one.
    assert fair_fill(20.0, cs) == pytest.approx({1: 10.0, 2: 10.0, 3: 10.0})
    assert fair_fill(30.0, cs) == pytest.approx({1: 20.0, 2: 20.0, 3: 10.0})


def test_a_higher_priority_runs_first_and_the_other_still_gets_its_turn() -> None:
    circuit = Circuit("garage", 10.0, (1, 2), priorities=(0, 2), rotation_s=100.0)
    sharing = CircuitSharing(circuit)
    cs = [Claim(1, frozenset({0, 1, 2}), math.inf, True), Claim(2, frozenset({0, 1, 2}), 16, True)]
    ran: list[int] = []
    for t in range(0, 1000, 10):
        offers = sharing.step(cs, float(t))
        [running] = [cid for cid, a in offers.items() if a > 0]
        ran.append(running)
    assert ran[0] == 2  # priority
    assert 1 in ran  # but no starvation: 2 + 1 intervals waited outrank priority 2
    assert ran.count(2) > ran.count(1)
    switches = sum(1 for a, b in itertools.pairwise(ran) if a != b)
    assert switches <= 1000 / circuit.rotation_s  # each turn lasts a rotation interval


@settings(max_examples=150, deadline=None)
@given(
    cs=claims(most=4),
    limit_a=st.floats(6.0, 30.0),
    priorities=st.lists(st.integers(0, 2), min_size=4, max_size=4),
)
def test_every_waiting_session_gets_its_turn(
    cs: list[Claim], limit_a: float, priorities: list[int]
) -> None:
    """Steady demand for longer than the worst wait: every session that could run alone
    (a cap of 6 A or more) ran at some point, whatever the priorities."""
    rotation_s = 60.0
    ids = tuple(c.connector_id for c in cs)
    circuit = Circuit("c", limit_a, ids, tuple(priorities[: len(ids)]), rotation_s)
    sharing = CircuitSharing(circuit)
    ran: set[int] = set()
    worst_wait_s = rotation_s * (len(ids) + 2) * (1 + max(priorities))
    for step in range(int(worst_wait_s * len(ids) / 10) + 1):
        offers = sharing.step(cs, step * 10.0)
        ran |= {cid for cid, a in offers.items() if a > 0}
    able = {c.connector_id for c in cs if c.wants and c.cap_a >= MIN_OFFER_A}
    assert able <= ran


# --- through the fuse manager ---------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float | None]] = []

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        assert source is LimitSource.LOAD_MANAGEMENT
        self.calls.append((connector_id, current_a))


def wanting(manager: FuseManager, *ids: int, status: ConnectorStatus) -> None:
    for cid in ids:
        asyncio.run(manager.on_event(StatusEvent(cid, status, None)))


@settings(max_examples=200, deadline=None)
@given(
    grid_a=st.lists(st.floats(-20.0, 60.0), min_size=3, max_size=3),
    limit_a=st.floats(6.0, 40.0),
    rotations=st.lists(st.sampled_from([(0, 1, 2), (1, 2, 0), (2,), (1,)]), min_size=3, max_size=3),
)
def test_the_manager_keeps_each_phase_under_the_circuit_and_the_fuse(
    grid_a: list[float], limit_a: float, rotations: list[tuple[int, ...]]
) -> None:
    site = Site(fuse_a=40.0, margin_a=1.0)
    wiring = [ConnectorWiring(i, r) for i, r in enumerate(rotations, start=1)]
    feed, sink = GridFeed(), Sink()
    circuits = Circuits([Circuit("garage", limit_a, (1, 2, 3))])
    manager = FuseManager(site, wiring, feed, sink, circuits=circuits)
    wanting(manager, 1, 2, 3, status=ConnectorStatus.CHARGING)
    feed.push(grid_a)
    limits = manager.step()
    for phase in range(3):
        on_phase = [limits[w.connector_id] for w in wiring if phase in w.rotation]
        assert sum(on_phase) <= limit_a + TOLERANCE_A
        # The cars draw nothing yet: every grid amp is the house's, the rest is headroom.
        headroom = site.usable_a - max(0.0, grid_a[phase])
        assert sum(on_phase) <= max(0.0, headroom) + TOLERANCE_A
    assert all(a == 0.0 or a >= MIN_OFFER_A for a in limits.values())


def test_the_manager_lowers_the_paused_connector_before_it_raises_the_other() -> None:
    site = Site(fuse_a=63.0, margin_a=1.0)
    feed, sink = GridFeed(), Sink()
    circuits = Circuits([Circuit("garage", 16.0, (1, 2), rotation_s=60.0)])
    manager = FuseManager(
        site,
        [ConnectorWiring(1), ConnectorWiring(2)],
        feed,
        sink,
        clock=lambda: now,
        circuits=circuits,
    )
    now = 0.0
    wanting(manager, 1, status=ConnectorStatus.CHARGING)
    feed.push([0.0, 0.0, 0.0])
    manager.step()
    assert dict(sink.calls) == {1: 16.0, 2: 0.0}  # no session on 2: no share
    wanting(manager, 2, status=ConnectorStatus.SUSPENDED_EVSE)
    sink.calls.clear()
    now = 1.0
    feed.push([0.0, 0.0, 0.0])
    manager.step()
    assert sink.calls == [(1, 8.0), (2, 8.0)]  # 1 goes down first, then 2 up
    circuits3 = Circuits([Circuit("garage", 16.0, (1, 2, 3), rotation_s=60.0)])
    manager = FuseManager(
        site,
        [ConnectorWiring(1), ConnectorWiring(2), ConnectorWiring(3)],
        feed,
        sink,
        clock=lambda: now,
        circuits=circuits3,
    )
    wanting(manager, 1, 2, 3, status=ConnectorStatus.CHARGING)
    sink.calls.clear()
    manager.step()
    assert dict(sink.calls) == {1: 8.0, 2: 8.0, 3: 0.0}
    now = 61.0  # a rotation interval later, 3 takes the place of 2 (which goes down first)
    sink.calls.clear()
    feed.push([0.0, 0.0, 0.0])
    manager.step()
    assert sink.calls == [(2, 0.0), (3, 8.0)]


# --- end to end -------------------------------------------------------------------------------


async def test_two_cars_on_a_16_a_circuit_share_it_and_one_alone_gets_it_all(
    tmp_path: Path,
) -> None:
    """The whole controller on the simulated house, two connectors behind a 16 A breaker."""
    async with running(
        tmp_path,
        sim_connectors=2,
        authorization={"free_charging_id": "FREE"},
        site={"fuse_a": 63.0, "grid_max_age_s": 2.0},
        grid_meter={"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0},
        circuit=[{"name": "garage", "limit_a": 16, "connectors": [1, 2]}],
    ) as charger:
        await charger.act("house", load_w=0.0, pv_w=0.0)
        await charger.act("plug", connector=1)
        await until(lambda: charger.hw("ev_current_a", 1) > 15.0, what="car 1 alone: 16 A")
        await charger.act("plug", connector=2)
        await until(
            lambda: (
                charger.status(2) is ConnectorStatus.CHARGING
                and charger.hw("offered_current_a", 1) == 8.0 == charger.hw("offered_current_a", 2)
            ),
            what="8 A each",
        )
        await until(lambda: charger.hw("ev_current_a", 1) <= 8.0, what="car 1 following")
        # Car 1 leaves: car 2 gets the whole circuit.
        await charger.act("unplug", connector=1)
        await until(lambda: charger.hw("offered_current_a", 2) == 16.0, what="16 A for car 2")


# --- configuration ----------------------------------------------------------------------------


def config_with(*circuits: dict[str, object]) -> dict[str, object]:
    return {
        "connector": [{}, {}],
        "site": {"fuse_a": 35},
        "grid_meter": {"source": "push"},
        "circuit": list(circuits),
    }


def test_circuits_are_read_from_circuit_tables() -> None:
    config = parse_config(
        config_with({"name": "garage", "limit_a": 20, "connectors": [1, 2], "priorities": [1, 0]})
    )
    [circuit] = parse_circuits(config.circuits, [c.id for c in config.connectors])
    assert circuit == Circuit("garage", 20.0, (1, 2), (1, 0), 900.0)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"name": "g", "limit_a": 20, "connectors": [1, 2], "limit": 3}, "circuit.1.limit"),
        ({"name": "g", "limit_a": 2, "connectors": [1, 2]}, "circuit.1.limit_a"),
        ({"name": "g", "limit_a": 20, "connectors": [1, 7]}, "circuit.1.connectors"),
        (
            {"name": "g", "limit_a": 20, "connectors": [1], "priorities": [1, 2]},
            "circuit.1.priorities",
        ),
        ({"name": "g", "limit_a": 20, "connectors": [1], "rotation_s": 5}, "circuit.1.rotation_s"),
    ],
)
def test_a_wrong_circuit_table_is_refused_naming_the_key(
    table: dict[str, object], key: str
) -> None:
    with pytest.raises((ConfigError, ConfigurationError)) as refused:
        config = parse_config(config_with(table))
        parse_circuits(config.circuits, [c.id for c in config.connectors])
    assert refused.value.key == key


def test_a_connector_on_two_circuits_is_refused() -> None:
    config = parse_config(
        config_with(
            {"name": "a", "limit_a": 20, "connectors": [1]},
            {"name": "b", "limit_a": 20, "connectors": [1, 2]},
        )
    )
    with pytest.raises(ConfigurationError) as refused:
        parse_circuits(config.circuits, [1, 2])
    assert refused.value.key == "circuit.2.connectors"
