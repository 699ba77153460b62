"""The simulated car behaves like a real one on the other end of the control pilot."""

import pytest

from drivers.base import CpState
from hw_sim.ev import EvSpec, SimEV


def run(ev: SimEV, seconds: float, offered_a: float | None, powered: bool) -> None:
    for _ in range(round(seconds / 0.1)):
        ev.step(0.1, offered_a, powered)


def test_unplugged_car_shows_state_a() -> None:
    assert SimEV().cp_state(16.0) is CpState.A


def test_plugged_car_waits_in_b_until_current_is_offered() -> None:
    ev = SimEV()
    ev.plug()
    assert ev.cp_state(None) is CpState.B
    assert ev.cp_state(16.0) is CpState.C


def test_car_needing_ventilation_asks_in_state_d() -> None:
    ev = SimEV(EvSpec(needs_ventilation=True))
    ev.plug()
    assert ev.cp_state(10.0) is CpState.D


def test_paused_or_full_car_goes_back_to_b() -> None:
    ev = SimEV()
    ev.plug()
    ev.pause()
    assert ev.cp_state(16.0) is CpState.B
    ev.charge()
    ev.soc_pct = 100.0
    assert ev.cp_state(16.0) is CpState.B


def test_car_draws_the_smaller_of_offer_and_own_maximum() -> None:
    ev = SimEV(EvSpec(max_current_a=16.0))
    ev.plug()
    run(ev, 6.0, 32.0, powered=True)
    assert ev.current_a == pytest.approx(16.0)
    run(ev, 6.0, 10.0, powered=True)
    assert ev.current_a == pytest.approx(10.0)


def test_car_follows_a_new_offer_within_five_seconds() -> None:
    ev = SimEV(EvSpec(max_current_a=32.0))
    ev.plug()
    run(ev, 10.0, 32.0, powered=True)
    run(ev, 5.0, 6.0, powered=True)
    assert ev.current_a == pytest.approx(6.0, abs=0.1)


def test_car_draws_nothing_without_mains() -> None:
    ev = SimEV()
    ev.plug()
    run(ev, 5.0, 16.0, powered=True)
    ev.step(0.1, 16.0, powered=False)
    assert ev.current_a == 0.0
    assert ev.power_w == 0.0


def test_single_phase_car_loads_only_l1() -> None:
    ev = SimEV(EvSpec(phases=1, max_current_a=16.0))
    ev.plug()
    run(ev, 8.0, 16.0, powered=True)
    assert ev.phase_currents_a == (pytest.approx(16.0), 0.0, 0.0)
    assert ev.power_w == pytest.approx(16.0 * 230.0)


def test_energy_charged_raises_state_of_charge() -> None:
    ev = SimEV(EvSpec(max_current_a=16.0, phases=3, battery_kwh=10.0, initial_soc_pct=50.0))
    ev.plug()
    run(ev, 3600.0, 16.0, powered=True)
    # about 11 kW for an hour into a 10 kWh battery: it fills up and stops asking
    assert ev.soc_pct == pytest.approx(100.0)
    assert ev.cp_state(16.0) is CpState.B
    assert 5000.0 < ev.energy_charged_wh < 5200.0
