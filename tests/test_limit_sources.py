"""Several current-limit sources per connector: each set and cleared on its own.

The offer the car sees is the minimum of the connector's maximum, the cable's rating and
every source that is set (CSMS smart charging, load management, the user's limit, thermal
derating), and nothing at all below 6 A. Checked on the pure value type, on random event
sequences through the connector state machine, and on the running charger.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.connector import ConnectorMachine
from controller.connector_types import (
    MIN_OFFER_A,
    Authorized,
    CableRatingChanged,
    Command,
    ConnectorSettings,
    ConnectorStatus,
    CpChanged,
    Event,
    IdPresented,
    LimitChanged,
    OfferCurrent,
    PilotVerified,
    SettingsChanged,
    Tick,
)
from controller.limits import CurrentLimits, FixedBound, LimitSource, compute_offer
from drivers.base import CpState
from tests.support.standalone import Charger, running
from tests.support.wait import until

CARD = "04A1B2C3"

sources = st.sampled_from(list(LimitSource))
#: A limit as the edges send it: None clears; 0-5.9 A pauses; up to beyond any rating.
limits = st.none() | st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
set_or_clear = st.tuples(sources, limits)


def model_min(model: dict[LimitSource, float]) -> float:
    return min(model.values(), default=math.inf)


# --- the value type -------------------------------------------------------------------------


@given(st.lists(set_or_clear, max_size=30))
def test_limits_hold_exactly_what_each_source_last_set(
    ops: list[tuple[LimitSource, float | None]],
) -> None:
    limits_now, model = CurrentLimits(), dict[LimitSource, float]()
    for source, current_a in ops:
        before = limits_now
        limits_now = limits_now.with_limit(source, current_a)
        if current_a is None:
            model.pop(source, None)
        else:
            model[source] = current_a
        assert dict(limits_now.active) == model
        # setting or clearing one source never touches another's limit
        for other in LimitSource:
            if other is not source:
                assert limits_now.get(other) == before.get(other)
    lowest = model_min(model)
    assert limits_now.limit_a == (None if not model else lowest)
    assert set(limits_now.binding) == {s for s, a in model.items() if a == lowest}


@given(
    st.floats(min_value=6.0, max_value=80.0),
    st.none() | st.floats(min_value=0.0, max_value=80.0),
    st.booleans(),
    st.lists(set_or_clear, max_size=12),
)
def test_the_offer_never_exceeds_a_bound_or_a_source_and_is_never_below_6a(
    max_a: float,
    cable_a: float | None,
    cable_required: bool,
    ops: list[tuple[LimitSource, float | None]],
) -> None:
    limits_now = CurrentLimits()
    for source, current_a in ops:
        limits_now = limits_now.with_limit(source, current_a)
    offer = compute_offer(max_a, cable_a, cable_required, limits_now)
    ceilings = [max_a, *limits_now.active.values()]
    if cable_a is not None:
        ceilings.append(cable_a)
    assert all(offer.current_a <= c for c in ceilings)
    assert offer.current_a == 0.0 or offer.current_a >= MIN_OFFER_A
    if cable_a is None and cable_required:
        assert offer.current_a == 0.0  # a socket with an unread cable offers nothing
        assert FixedBound.CABLE in offer.limited_by
    else:
        assert offer.limit_a == min(ceilings)
        if offer.limit_a >= MIN_OFFER_A:
            assert offer.current_a == offer.limit_a
    for name in offer.limited_by:
        if isinstance(name, LimitSource):
            assert limits_now.get(name) == offer.limit_a


def test_binding_names_the_source_at_the_minimum() -> None:
    limits_now = (
        CurrentLimits()
        .with_limit(LimitSource.CSMS, 16.0)
        .with_limit(LimitSource.USER, 10.0)
        .with_limit(LimitSource.LOAD_MANAGEMENT, 20.0)
    )
    assert compute_offer(32.0, 32.0, True, limits_now).limited_by == (LimitSource.USER,)
    assert compute_offer(8.0, 32.0, True, limits_now).limited_by == (FixedBound.CONNECTOR,)
    assert compute_offer(32.0, 10.0, True, limits_now).limited_by == (
        FixedBound.CABLE,
        LimitSource.USER,
    )
    with pytest.raises(ValueError):
        limits_now.with_limit(LimitSource.USER, -1.0)
    with pytest.raises(ValueError):
        limits_now.with_limit(LimitSource.USER, math.inf)


# --- through the connector state machine --------------------------------------------------

machine_steps = st.one_of(
    st.builds(lambda s, a: LimitChanged(a, s), sources, limits),
    st.builds(CableRatingChanged, st.sampled_from([None, 13.0, 20.0, 32.0, 63.0])),
    st.builds(
        lambda a: SettingsChanged(ConnectorSettings(max_current_a=a)),
        st.sampled_from([6.0, 10.0, 16.0, 32.0]),
    ),
)


def charging_machine() -> tuple[ConnectorMachine, list[Command]]:
    machine = ConnectorMachine(ConnectorSettings())
    commands: list[Command] = []
    events: list[Event] = [
        Tick(),
        CableRatingChanged(32.0),
        CpChanged(CpState.B),
        IdPresented(CARD),
        Authorized(CARD, True),
        PilotVerified(),
        CpChanged(CpState.C),
    ]
    for i, event in enumerate(events):
        commands += machine.handle(event, 1000.0 + i)
    assert machine.status.status is ConnectorStatus.CHARGING
    return machine, commands


@settings(max_examples=300)
@given(st.lists(machine_steps, min_size=1, max_size=25))
def test_the_machine_offers_the_minimum_of_every_source_and_pauses_below_6a(
    steps: list[Event],
) -> None:
    machine, _ = charging_machine()
    model: dict[LimitSource, float] = {}
    max_a, cable_a = 32.0, 32.0
    for i, step in enumerate(steps):
        commands = machine.handle(step, 2000.0 + i)
        match step:
            case LimitChanged(current_a, source) if current_a is None:
                model.pop(source, None)
            case LimitChanged(current_a, source) if current_a is not None:
                model[source] = current_a
            case CableRatingChanged(current_a):
                cable_a = 0.0 if current_a is None else current_a
            case SettingsChanged(new):
                max_a = new.max_current_a
        lowest = min(max_a, cable_a, model_min(model))
        offered = machine.pilot.offered_a
        # never above a bound or any source that is set; never a forbidden duty
        assert offered <= max_a and offered <= cable_a
        assert all(offered <= a for a in model.values())
        for command in commands:
            if isinstance(command, OfferCurrent):
                assert command.current_a == 0.0 or MIN_OFFER_A <= command.current_a <= lowest
        if lowest < MIN_OFFER_A:
            assert offered == 0.0 and not machine.contactor_closed
            assert machine.status.status is ConnectorStatus.SUSPENDED_EVSE
        else:
            assert offered == lowest and machine.contactor_closed
            assert machine.status.status is ConnectorStatus.CHARGING
        assert dict(machine.limits.active) == model


@given(sources, sources, st.floats(6.0, 31.0), st.floats(6.0, 31.0))
def test_clearing_one_source_never_lifts_another_sources_limit(
    first: LimitSource, second: LimitSource, first_a: float, second_a: float
) -> None:
    machine, _ = charging_machine()
    machine.handle(LimitChanged(first_a, first), 2000.0)
    machine.handle(LimitChanged(second_a, second), 2001.0)
    machine.handle(LimitChanged(None, first), 2002.0)
    if first is second:
        assert machine.pilot.offered_a == 32.0  # its own limit was the one cleared
    else:
        assert machine.pilot.offered_a == second_a
        assert machine.offer.limited_by == (second,)


def test_a_users_pause_outlasts_the_csms_clearing_its_limit() -> None:
    machine, _ = charging_machine()
    machine.handle(LimitChanged(16.0, LimitSource.CSMS), 2000.0)
    machine.handle(LimitChanged(0.0, LimitSource.USER), 2001.0)
    assert machine.status.status is ConnectorStatus.SUSPENDED_EVSE
    assert machine.handle(LimitChanged(None, LimitSource.CSMS), 2002.0) == []
    assert machine.status.status is ConnectorStatus.SUSPENDED_EVSE
    machine.handle(LimitChanged(None, LimitSource.USER), 2003.0)
    assert machine.status.status is ConnectorStatus.CHARGING
    assert machine.pilot.offered_a == 32.0


# --- on the running charger ---------------------------------------------------------------


async def test_sources_set_through_the_supervisor_each_hold_their_own_limit(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as charger:
        await charger.charging()
        supervisor = charger.supervisor
        supervisor.set_current_limit(1, 12.0)  # what the CSMS adapter calls
        supervisor.set_limit(1, LimitSource.USER, 8.0)
        await ev_draws(charger, 8.0)
        assert supervisor.connectors[1].machine.offer.limited_by == (LimitSource.USER,)
        supervisor.set_limit(0, LimitSource.USER, None)  # connector 0: every connector
        await ev_draws(charger, 12.0)
        supervisor.set_limit(1, LimitSource.LOAD_MANAGEMENT, 3.0)
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE)
        await ev_draws(charger, 0.0)
        supervisor.set_current_limit(1, None)
        await until(lambda: charger.hw("offered_current_a") == 0.0)
        assert charger.status() is ConnectorStatus.SUSPENDED_EVSE
        with pytest.raises(ValueError):
            supervisor.set_limit(1, LimitSource.USER, -2.0)
        with pytest.raises(LookupError):
            supervisor.set_limit(7, LimitSource.USER, 10.0)
        supervisor.set_limit(1, LimitSource.LOAD_MANAGEMENT, None)
        await until(lambda: charger.hw("offered_current_a") == 32.0)
        await ev_draws(charger, 16.0)  # all the simulated car takes


async def ev_draws(charger: Charger, current_a: float) -> None:
    await until(lambda: charger.hw("ev_current_a") == pytest.approx(current_a, abs=0.1))
