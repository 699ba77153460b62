"""The reference CP/PP front-end, simulated with ngspice, reads every IEC 61851 state right.

The circuit is drivers/pilot_reference.py (the single source of its values), turned into a
SPICE deck by hw_sim/spice_frontend.py and run with ``ngspice -b`` (deploy/system-packages.sh
installs it). Each state is simulated at the nominal values and at both worst-case corners
of the tolerances; the ADC voltages are turned back into CP volts with the driver's *default*
calibration, exactly as drivers/pilot.py does, and must land inside the band the driver
classifies with ``MARGIN_V`` to spare. One ngspice run simulates every case (a few seconds).
"""

from __future__ import annotations

import math

import pytest

from drivers.base import CpState
from drivers.pilot_levels import (
    CUT_A_V,
    CUT_B_V,
    CUT_C_V,
    CUT_D_V,
    CUT_E_V,
    CUT_F_V,
    DEFAULT_CP_GAIN,
    DEFAULT_CP_OFFSET_V,
    LOW_NOMINAL_V,
    LOW_TOLERANCE_V,
    FrontEndCalibration,
    PpVerdict,
    classify_high,
    low_level_ok,
    pp_rating_for_ohms,
)
from drivers.pilot_reference import REFERENCE
from drivers.pilot_sensor import CpSampleProcessor
from hw_sim import pilot_frontend
from hw_sim.spice_frontend import Case, Corner, Reading, simulate

#: Every simulated level keeps this far (V on the CP) from the driver's cut points.
MARGIN_V = 0.3
#: 6 A (the lowest duty: the shortest positive phase), 32 A, 51 A (85 %: the highest duty of
#: the 0.6 * D range; 63 A/80 A need a 16 mm2 cable and a higher margin budget, see docs).
DUTIES = (10.0, 53.3, 85.0)
#: (lowest, highest) CP level the driver reads as each state; the cut points of pilot_levels.
BANDS = {
    CpState.A: (CUT_A_V, 14.0),
    CpState.B: (CUT_B_V, CUT_A_V),
    CpState.C: (CUT_C_V, CUT_B_V),
    CpState.D: (CUT_D_V, CUT_C_V),
    CpState.E: (CUT_E_V, CUT_D_V),
}
#: Type 2 coding resistors (reference 2.1) and the rating each must read as; coding resistors
#: are taken at +-5 %.
PP_CODES = ((1500.0, 13), (680.0, 20), (220.0, 32), (100.0, 63))
PP_CODE_TOLERANCE = 0.05

CALIBRATION = FrontEndCalibration()

CP_CASES = (
    [Case(ev, 100.0, corner) for ev in "ABCD" for corner in Corner]  # x1: nothing offered
    + [Case(ev, duty, corner) for ev in "ABCD" for duty in DUTIES for corner in Corner]
    + [Case("E", duty, corner) for duty in (100.0, 53.3) for corner in Corner]
    # State F generated with no car and with a car plugged in, and F on a line shorted to PE.
    + [Case(ev, 0.0, corner) for ev in "ABE" for corner in Corner]
    + [Case(ev, duty, Corner.NOMINAL, True) for ev in "BCD" for duty in (10.0, 53.3)]
    + [Case(ev, 53.3, corner, True) for ev in "BCD" for corner in (Corner.LOW, Corner.HIGH)]
)


def _pp_cases() -> list[tuple[float | None, float, float]]:
    pull = REFERENCE.pp_pullup_ohm
    supply = REFERENCE.pp_supply_v
    cases: list[tuple[float | None, float, float]] = [(None, pull.nominal, supply)]
    for code, _ in PP_CODES:
        for scale in (1.0 - PP_CODE_TOLERANCE, 1.0 + PP_CODE_TOLERANCE):
            cases += [(code * scale, pull.low, supply), (code * scale, pull.high, supply)]
    return cases


PP_CASES = _pp_cases()


@pytest.fixture(scope="module")
def spice() -> tuple[dict[Case, Reading], list[float]]:
    readings, pp = simulate(list(CP_CASES), PP_CASES)
    return dict(zip(CP_CASES, readings, strict=True)), pp


def _high(reading: Reading) -> float:
    return CALIBRATION.cp_high_v(reading.ain0_high)


def _low(reading: Reading) -> float:
    return CALIBRATION.cp_low_v(reading.ain1_low)


def _cases(ev: str, *, fault: bool = False) -> list[Case]:
    return [c for c in CP_CASES if c.ev == ev and c.diode_shorted == fault and c.duty_pct > 0]


@pytest.mark.parametrize("ev", ["A", "B", "C", "D", "E"])
def test_each_state_reads_inside_its_band_with_margin_at_every_corner(
    spice: tuple[dict[Case, Reading], list[float]], ev: str
) -> None:
    readings, _ = spice
    state = CpState(ev)
    lowest, highest = BANDS[state]
    for case in _cases(ev):
        level = _high(readings[case])
        assert classify_high(level) is state, f"{case.label}: {level:+.2f} V"
        assert lowest + MARGIN_V <= level <= highest - MARGIN_V, f"{case.label}: {level:+.2f} V"


@pytest.mark.parametrize("ev", ["B", "C", "D"])
def test_the_diode_check_passes_with_margin_while_pwm_runs(
    spice: tuple[dict[Case, Reading], list[float]], ev: str
) -> None:
    readings, _ = spice
    for case in _cases(ev):
        if case.duty_pct >= 100.0:
            continue
        low = _low(readings[case])
        assert low_level_ok(low), f"{case.label}: {low:+.2f} V"
        assert abs(low - LOW_NOMINAL_V) <= LOW_TOLERANCE_V - MARGIN_V, f"{case.label}: {low:+.2f}"


@pytest.mark.parametrize("ev", ["B", "C", "D"])
def test_a_shorted_diode_fails_the_diode_check_by_a_wide_margin(
    spice: tuple[dict[Case, Reading], list[float]], ev: str
) -> None:
    readings, _ = spice
    for case in _cases(ev, fault=True):
        low = _low(readings[case])
        assert not low_level_ok(low), f"{case.label}: {low:+.2f} V"
        assert low >= LOW_NOMINAL_V + LOW_TOLERANCE_V + MARGIN_V, f"{case.label}: {low:+.2f} V"


def test_state_f_holds_the_negative_detector_at_minus_12_v(
    spice: tuple[dict[Case, Reading], list[float]],
) -> None:
    readings, _ = spice
    for case in (c for c in CP_CASES if c.duty_pct <= 0.0 and c.ev != "E"):
        low = _low(readings[case])
        assert low <= CUT_F_V - MARGIN_V, f"{case.label}: {low:+.2f} V"
        assert readings[case].cp_max <= CUT_F_V, "F: the line itself never goes positive"


def test_every_pp_coding_resistor_reads_its_cable_rating_and_no_plug_reads_open(
    spice: tuple[dict[Case, Reading], list[float]],
) -> None:
    _, pp = spice
    for (code, _pull, _supply), volts in zip(PP_CASES, pp, strict=True):
        verdict, rating = pp_rating_for_ohms(CALIBRATION.pp_ohms(volts))
        if code is None:
            assert verdict is PpVerdict.NO_CABLE
            continue
        nominal = min(PP_CODES, key=lambda item: abs(math.log(item[0] / code)))
        assert (verdict, rating) == (PpVerdict.RATED, nominal[1]), f"{code:.0f} Ohm: {volts} V"


def test_the_default_calibration_is_the_simulated_divider(
    spice: tuple[dict[Case, Reading], list[float]],
) -> None:
    """The driver's default gain and offset turn the simulated ADC voltage back into the
    simulated detector voltage: change a divider resistor in pilot_reference.py (or the
    defaults in pilot_levels.py) alone and this fails."""
    readings, _ = spice
    nominal = [c for c in CP_CASES if c.corner is Corner.NOMINAL]
    for case in nominal:
        reading = readings[case]
        back = reading.ain0_high * DEFAULT_CP_GAIN + DEFAULT_CP_OFFSET_V
        assert back == pytest.approx(reading.hold_high, abs=0.02), case.label
    # About -15..+15 V onto 0..3.3 V, as the ADC's range needs.
    assert pytest.approx(30.0 / 3.3, rel=0.01) == DEFAULT_CP_GAIN
    assert pytest.approx(-15.0, abs=0.05) == DEFAULT_CP_OFFSET_V


@pytest.mark.parametrize("ev", ["A", "B", "C", "D"])
def test_the_simulators_cp_model_matches_the_simulated_circuit(
    spice: tuple[dict[Case, Reading], list[float]], ev: str
) -> None:
    """hw_sim's CP levels are the nominal circuit's: within the detectors' load (0.25 V)."""
    readings, _ = spice
    state = CpState(ev)
    for duty in DUTIES:
        reading = readings[Case(ev, duty, Corner.NOMINAL)]
        high, low = pilot_frontend.cp_levels(state, duty)
        assert reading.cp_max == pytest.approx(high, abs=0.25), f"{ev} {duty} %"
        assert reading.cp_min == pytest.approx(low, abs=0.25), f"{ev} {duty} %"


def _state_f_verdict(level_v: float) -> CpState | None:
    """What the driver reports for a line level read while it drives F (debounced twice)."""
    processor = CpSampleProcessor()
    processor.feed_state_f(level_v, now=0.0)
    processor.feed_state_f(level_v, now=0.01)
    return processor.state


def test_our_own_state_f_is_read_on_the_negative_detector_because_ain0_cannot_show_it(
    spice: tuple[dict[Case, Reading], list[float]],
) -> None:
    """The finding and the driver's answer to it: in F the positive detector rests near
    -2.6 V (fits no state) at every corner, the negative one shows -12 V, and the driver,
    reading AIN1 while it drives F, reports F; a line shorted to PE in F reads E."""
    readings, _ = spice
    for case in (c for c in CP_CASES if c.duty_pct <= 0.0):
        reading = readings[case]
        if case.ev != "E":
            level = _high(reading)
            assert classify_high(level) is None, f"{case.label}: {level:+.2f} V"
            assert -3.5 < level < -2.0, f"{case.label}: {level:+.2f} V"
        expected = CpState.E if case.ev == "E" else CpState.F
        assert _state_f_verdict(_low(reading)) is expected, f"{case.label}: {_low(reading):+.2f}"


def test_the_simulators_detectors_rest_where_the_circuits_do(
    spice: tuple[dict[Case, Reading], list[float]],
) -> None:
    """Where a detector has nothing to follow (AIN0 in F, AIN1 on a steady positive line),
    hw_sim's board reads what ngspice finds: the driver's tests see the real circuit's F."""
    readings, _ = spice
    for ev, duty in (("A", 0.0), ("B", 0.0), ("A", 100.0), ("B", 100.0)):
        reading = readings[Case(ev, duty, Corner.NOMINAL)]
        high, low = pilot_frontend.cp_levels(CpState(ev), duty)
        ain0, ain1, _, _ = pilot_frontend.adc_inputs(high, low, None, CALIBRATION)
        assert CALIBRATION.cp_high_v(ain0) == pytest.approx(_high(reading), abs=0.25), ev
        assert CALIBRATION.cp_low_v(ain1) == pytest.approx(_low(reading), abs=0.25), ev
