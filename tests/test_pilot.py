"""CP duty formula, PWM generator, simulated CP line, PP ratings and pilot configuration."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ads1115 import Ads1115
from drivers.base import CpState, DriverEvent, PilotGenerator, SMBusLike
from drivers.errors import ConfigurationError
from drivers.pilot import PilotBoard, PwmPilot, duty_for_current, from_config
from drivers.pilot_levels import FrontEndCalibration, classify_high, pp_rating_for_ohms
from drivers.pilot_pp import AdcProximitySensor, TetheredCable
from drivers.pwm_sysfs import SysfsPwm
from drivers.seams import HardwareSeams
from hw_sim.ads1115 import SimAds1115
from hw_sim.pilot_frontend import adc_inputs, cp_levels, ev_current_limit_a
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus

# --- the duty formula (hardware-reference 1.4) -----------------------------------------------

REFERENCE_TABLE = [
    (6, 10.0),
    (10, 16.7),
    (13, 21.7),
    (16, 26.7),
    (20, 33.3),
    (25, 41.7),
    (32, 53.3),
    (40, 66.7),
    (48, 80.0),
    (51, 85.0),
    (63, 89.2),
    (70, 92.0),
    (80, 96.0),
]


@pytest.mark.parametrize(("current_a", "duty_pct"), REFERENCE_TABLE)
def test_duty_for_each_current_of_the_reference_table(current_a: float, duty_pct: float) -> None:
    assert duty_for_current(current_a) == pytest.approx(duty_pct, abs=0.05)


@pytest.mark.parametrize(
    ("current_a", "duty_pct"),
    [
        (0.0, 100.0),  # nothing offered: x1
        (-3.0, 100.0),
        (5.9, 100.0),
        (51.5, 85.0),  # the gap in the norm: clamped down to 51 A
        (52.49, 85.0),
        (52.5, 85.0),
        (55.0, 86.0),
        (80.1, 96.0),  # clamped to 80 A
        (500.0, 96.0),
        (math.inf, 96.0),
    ],
)
def test_duty_edges_offer_nothing_below_6a_and_never_more_than_80a(
    current_a: float, duty_pct: float
) -> None:
    assert duty_for_current(current_a) == pytest.approx(duty_pct)


def test_an_undefined_current_is_not_an_offer() -> None:
    with pytest.raises(ValueError):
        duty_for_current(math.nan)


@given(st.floats(min_value=6.0, max_value=200.0))
def test_an_ev_never_decodes_more_than_was_offered(current_a: float) -> None:
    decoded = ev_current_limit_a(duty_for_current(current_a))
    assert decoded is not None
    assert decoded <= min(current_a, 80.0) + 1e-9
    assert decoded >= min(current_a, 80.0) - 1.5  # only the 51-52.5 A gap loses anything


@pytest.mark.parametrize(
    ("duty_pct", "current_a"),
    [
        (0.0, None),
        (2.9, None),
        (5.0, None),  # digital communication, not a current
        (7.9, None),
        (8.0, 6.0),
        (9.9, 6.0),
        (10.0, 6.0),
        (53.3, 31.98),
        (85.0, 51.0),
        (90.0, 65.0),
        (96.0, 80.0),
        (96.5, 80.0),
        (97.5, None),
        (100.0, None),
    ],
)
def test_ev_side_decoding_of_the_duty(duty_pct: float, current_a: float | None) -> None:
    decoded = ev_current_limit_a(duty_pct)
    if current_a is None:
        assert decoded is None
    else:
        assert decoded == pytest.approx(current_a)


# --- the generator --------------------------------------------------------------------------


@pytest.fixture
def sim_pwm(tmp_path: Path) -> Iterator[SimPwmSysfs]:
    sim = SimPwmSysfs(tmp_path)
    yield sim
    sim.close()


def test_generator_starts_in_state_f_then_writes_the_offer_in_ns(sim_pwm: SimPwmSysfs) -> None:
    pilot = PwmPilot(SysfsPwm(sim_pwm.root, channel=0))
    generator: PilotGenerator = pilot
    assert generator.duty_pct == 0.0 and sim_pwm.duty_cycle_ns(0) == 0
    generator.offer_current(32.0)
    assert sim_pwm.duty_cycle_ns(0) == 533_333
    assert sim_pwm.period_ns(0) == 1_000_000 and sim_pwm.enabled(0)
    generator.offer_current(16.0)
    assert sim_pwm.duty_cycle_ns(0) == 266_666
    generator.offer_current(0.0)
    assert sim_pwm.duty_cycle_ns(0) == 1_000_000 and generator.duty_pct == 100.0
    pilot.set_duty_pct(5.0)
    assert sim_pwm.duty_cycle_ns(0) == 50_000
    generator.set_state_f()
    assert sim_pwm.duty_cycle_ns(0) == 0
    pilot.close()


def test_generator_behind_an_inverting_stage(sim_pwm: SimPwmSysfs) -> None:
    pilot = PwmPilot(SysfsPwm(sim_pwm.root, channel=1, inverted=True))
    assert sim_pwm.duty_cycle_ns(1) == 1_000_000  # F: pin high, CP -12 V
    pilot.offer_current(32.0)
    assert sim_pwm.duty_cycle_ns(1) == 1_000_000 - 533_333
    assert pilot.duty_pct == pytest.approx(53.333, abs=0.001)
    pilot.offer_current(3.0)
    assert sim_pwm.duty_cycle_ns(1) == 0  # x1: pin low, CP +12 V
    pilot.set_state_f()
    assert sim_pwm.duty_cycle_ns(1) == 1_000_000
    pilot.offer_current(10.0)
    pilot.close()
    pilot.close()
    assert sim_pwm.duty_cycle_ns(1) == 1_000_000 and sim_pwm.enabled(1)


# --- the simulated CP line and front end ----------------------------------------------------


@pytest.mark.parametrize(
    ("state", "nominal_high"),
    [(CpState.A, 12.0), (CpState.B, 9.0), (CpState.C, 6.0), (CpState.D, 3.0)],
)
def test_sim_cp_levels_match_the_reference_table(state: CpState, nominal_high: float) -> None:
    high, low = cp_levels(state, 53.3)
    assert high == pytest.approx(nominal_high, abs=0.1)
    assert low == -12.0
    assert cp_levels(state, 100.0) == (high, high)  # x1: no negative phase
    assert cp_levels(state, 0.0) == (-12.0, -12.0)  # F: steady -12 V
    assert classify_high(high) is state


def test_sim_shorted_diode_and_cp_short() -> None:
    high, low = cp_levels(CpState.B, 53.3, diode_ok=False)
    assert high + low == pytest.approx(0.0, abs=0.01)
    assert low == pytest.approx(-8.79, abs=0.01)
    assert cp_levels(CpState.C, 53.3, cp_short=True) == (0.0, 0.0)
    assert cp_levels(CpState.E, 100.0) == (0.0, 0.0)
    with pytest.raises(ValueError):
        cp_levels(CpState.F, 0.0)
    with pytest.raises(ValueError):
        cp_levels(CpState.A, 101.0)


def test_front_end_default_mapping_and_its_inverse() -> None:
    # The reference divider (909k/200k/255k, drivers/pilot_reference.py) maps about
    # -15..+15 V onto 0..3.3 V: E96 resistors land within 0.1 V of the round numbers.
    cal = FrontEndCalibration()
    assert cal.cp_high_v(2.64) == pytest.approx(9.0, abs=0.1)
    assert cal.cp_high_v(0.0) == pytest.approx(-15.0, abs=0.1)
    assert cal.cp_high_v(3.3) == pytest.approx(15.0, abs=0.1)
    assert cal.cp_high_v(cal.adc_for_high(9.0)) == pytest.approx(9.0)
    ain0, ain1, ain2, ain3 = adc_inputs(12.0, -12.0, 680.0, cal)
    assert ain0 == pytest.approx(2.97, abs=0.01) and ain1 == pytest.approx(0.33, abs=0.01)
    assert ain2 == pytest.approx(3.3 * 680 / 1680) and ain3 == 0.0
    assert cal.pp_ohms(ain2) == pytest.approx(680.0)
    assert adc_inputs(12.0, -12.0, None, cal)[2] == 3.3
    assert cal.pp_ohms(3.3) == math.inf
    assert adc_inputs(20.0, -20.0, None, cal)[:2] == (3.3, 0.0)  # clamped to the rails


@pytest.mark.parametrize(
    ("high_v", "state"),
    [
        (13.9, CpState.A),
        (10.5, CpState.A),
        (10.49, CpState.B),
        (7.5, CpState.B),
        (7.49, CpState.C),
        (4.5, CpState.C),
        (4.49, CpState.D),
        (1.5, CpState.D),
        (1.49, CpState.E),
        (-1.5, CpState.E),
        (-1.51, None),
        (-9.99, None),
        (-10.0, CpState.F),
        (-13.9, CpState.F),
    ],
)
def test_cut_points_between_the_states(high_v: float, state: CpState | None) -> None:
    assert classify_high(high_v) is state


# --- proximity pilot -----------------------------------------------------------------------


class PpBench:
    def __init__(self) -> None:
        self.ohms: float | None = None
        self.disturbed: list[float] = []  # AIN2 volts for the next conversions, one each
        self.events: list[DriverEvent] = []
        self.calibration = FrontEndCalibration()
        self.chip = SimAds1115(self.input_v)
        self.bus = SimSMBus()
        self.bus.attach(0x48, self.chip)
        self.adc = Ads1115(self.bus)
        self.sensor = AdcProximitySensor(self.adc, on_event=self.events.append)

    def input_v(self, channel: int) -> float:
        if channel == 2 and self.disturbed:
            return self.disturbed.pop(0)
        return adc_inputs(12.0, -12.0, self.ohms, self.calibration)[channel]


@pytest.mark.parametrize(
    ("ohms", "rating_a"),
    [(1500.0, 13), (1000.0, 13), (680.0, 20), (220.0, 32), (100.0, 63), (80.0, 63)],
)
async def test_pp_resistor_gives_the_cable_rating(ohms: float, rating_a: int) -> None:
    bench = PpBench()
    bench.ohms = ohms
    assert await bench.sensor.read_cable_rating_a() == rating_a
    assert bench.events == []


@pytest.mark.parametrize("ohms", [None, 2500.0, 1e6])
async def test_open_pp_means_no_cable_without_a_fault(ohms: float | None) -> None:
    bench = PpBench()
    bench.ohms = ohms
    assert await bench.sensor.read_cable_rating_a() is None
    assert bench.events == []


async def test_shorted_pp_is_no_valid_cable_and_an_event() -> None:
    bench = PpBench()
    bench.ohms = 40.0
    assert await bench.sensor.read_cable_rating_a() is None
    assert [(e.device, e.kind) for e in bench.events] == [("pp", "pp_short")]
    assert pp_rating_for_ohms(0.0)[1] is None


async def test_pp_read_survives_one_disturbed_conversion() -> None:
    bench = PpBench()
    bench.ohms = 220.0
    bench.disturbed.append(3.3)  # one conversion reads "open"
    assert await bench.sensor.read_cable_rating_a() == 32
    assert bench.disturbed == []


async def test_tethered_cable_reports_its_configured_rating() -> None:
    assert await TetheredCable(20).read_cable_rating_a() == 20


# --- configuration --------------------------------------------------------------------------


class Seams:
    """Simulated seams: a sysfs tree and an I2C bus opener handing out one SimSMBus."""

    def __init__(self, tmp_path: Path) -> None:
        self.sim_pwm = SimPwmSysfs(tmp_path / "pwm")
        cal = FrontEndCalibration()
        self.chip = SimAds1115(lambda ch: adc_inputs(12.0, 12.0, 220.0, cal)[ch])
        self.buses: list[SimSMBus] = []
        self.seams = HardwareSeams(open_i2c_bus=self.open_bus, pwm_sysfs_root=tmp_path / "pwm")

    def open_bus(self, number: int) -> SMBusLike:
        if number != 1:
            raise FileNotFoundError(2, f"/dev/i2c-{number}")
        bus = SimSMBus()
        bus.attach(0x48, self.chip)
        self.buses.append(bus)
        return bus


@pytest.fixture
def seams(tmp_path: Path) -> Iterator[Seams]:
    seams = Seams(tmp_path)
    yield seams
    seams.sim_pwm.close()


async def test_default_configuration_builds_a_working_pilot_board(seams: Seams) -> None:
    board = from_config({}, seams.seams)
    assert isinstance(board, PilotBoard)
    assert board.adc.address == 0x48
    assert seams.sim_pwm.exported(0) and seams.sim_pwm.duty_cycle_ns(0) == 0
    board.generator.offer_current(20.0)
    assert seams.sim_pwm.duty_cycle_ns(0) == 333_333
    assert await board.proximity.read_cable_rating_a() == 32
    board.close()
    board.close()
    assert seams.sim_pwm.duty_cycle_ns(0) == 0  # left in state F
    assert seams.buses[0].closed


def test_configured_values_reach_the_drivers(seams: Seams) -> None:
    board = from_config(
        {"pwm_chip": 0, "pwm_channel": 1, "pwm_inverted": True, "tethered_cable_a": 16},
        seams.seams,
    )
    assert seams.sim_pwm.duty_cycle_ns(1) == 1_000_000
    assert isinstance(board.proximity, TetheredCable) and board.proximity.rating_a == 16
    board.close()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"pwm_channel": "0"}, "pilot.pwm_channel"),
        ({"pwm_channel": 5}, "pilot.pwm_channel"),
        ({"pwm_chip": 7}, "pilot.pwm_chip"),
        ({"pwm_chip": -1}, "pilot.pwm_chip"),
        ({"pwm_inverted": "yes"}, "pilot.pwm_inverted"),
        ({"adc_bus": 3}, "pilot.adc_bus"),
        ({"adc_address": 0x50}, "pilot.adc_address"),
        ({"adc_address": True}, "pilot.adc_address"),
        ({"adc_full_scale_v": 5.0}, "pilot.adc_full_scale_v"),
        ({"adc_full_scale_v": 2.048}, "pilot.cp_adc_gain"),  # 3.3 V would not fit
        ({"adc_data_rate_sps": 100}, "pilot.adc_data_rate_sps"),
        ({"cp_adc_gain": 0}, "pilot.cp_adc_gain"),
        ({"cp_adc_gain": 5.0}, "pilot.cp_adc_gain"),
        ({"cp_adc_offset_v": math.nan}, "pilot.cp_adc_offset_v"),
        ({"cp_low_adc_offset_v": -5.0}, "pilot.cp_low_adc_gain"),
        ({"sample_period_s": 0.2}, "pilot.sample_period_s"),
        ({"debounce_fast_samples": 0}, "pilot.debounce_fast_samples"),
        ({"debounce_fast_samples": 6, "sample_period_s": 0.01}, "pilot.debounce_fast_samples"),
        ({"adc_data_rate_sps": 8}, "pilot.debounce_fast_samples"),
        ({"debounce_slow_samples": 1.5}, "pilot.debounce_slow_samples"),
        ({"debounce_diode_samples": 0}, "pilot.debounce_diode_samples"),
        ({"duty_settle_s": -1}, "pilot.duty_settle_s"),
        ({"pp_pullup_ohm": 0}, "pilot.pp_pullup_ohm"),
        ({"pp_supply_v": "3.3"}, "pilot.pp_supply_v"),
        ({"tethered_cable_a": 100}, "pilot.tethered_cable_a"),
    ],
)
def test_bad_configuration_names_the_key(seams: Seams, section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config(section, seams.seams)
    assert caught.value.key == key
    assert seams.buses == [] or seams.buses[-1].closed


def test_error_keys_follow_the_given_prefix(seams: Seams) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config({"adc_address": 1}, seams.seams, key_prefix="connector.1")
    assert caught.value.key == "connector.1.adc_address"
