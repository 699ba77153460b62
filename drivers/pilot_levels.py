"""IEC 61851 control pilot and proximity numbers as pure functions, shared by driver and simulator.

Everything here is arithmetic on volts, ohms, amperes and percent: no I/O, no threads. The
driver (:mod:`drivers.pilot`) and the simulated front end (:mod:`hw_sim.pilot_frontend`) both
use :class:`FrontEndCalibration`, so the simulator produces exactly the ADC voltages the
driver's calibration expects and the two cannot drift apart.

Sources: ``/work/shared/hardware-reference.md`` sections 1.2 (levels), 1.4 (duty formula) and
2.1 (PP resistors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from drivers.base import CpState
from drivers.pilot_reference import REFERENCE

# --- Duty cycle (EVSE side, reference 1.4) -------------------------------------------------

#: Duty that offers nothing: a steady positive level (x1, "PWM off").
DUTY_NOTHING_OFFERED_PCT = 100.0
#: Duty of state F: a steady -12 V, no positive phase at all.
DUTY_STATE_F_PCT = 0.0
MIN_OFFER_A = 6.0
MAX_OFFER_A = 80.0
# 0.6 * D reaches 51 A at 85 %; (D - 64) * 2.5 starts at 52.5 A at 85 %: currents in between
# cannot be encoded ("gap in the norm"). EVerest clamps them to 51 A, so do we: the EV then
# draws a little less than asked, never more.
_GAP_LOW_A = 51.0
_GAP_HIGH_A = 52.5


def duty_for_current(current_a: float) -> float:
    """The PWM duty (% of the positive phase) that offers ``current_a`` to the EV.

    6-51 A: ``I / 0.6``; 51-80 A: ``I / 2.5 + 64`` (51-52.5 A clamped to 51 A, see above);
    above 80 A: clamped to 80 A (96 %); below 6 A nothing can be offered: 100 % (x1).
    NaN raises ``ValueError``: an undefined limit must not become an offer.
    """
    if math.isnan(current_a):
        raise ValueError("current_a is NaN")
    if current_a < MIN_OFFER_A:
        return DUTY_NOTHING_OFFERED_PCT
    current_a = min(current_a, MAX_OFFER_A)
    if _GAP_LOW_A < current_a < _GAP_HIGH_A:
        current_a = _GAP_LOW_A
    if current_a <= _GAP_LOW_A:
        return current_a / 0.6
    return current_a / 2.5 + 64.0


class Waveform(StrEnum):
    """What the EVSE puts on the CP for a duty: it decides what the peak detectors can see."""

    F = "f"  # 0 %: steady -12 V
    X1 = "x1"  # 100 %: steady positive level, nothing offered
    PWM = "pwm"  # a 1 kHz square wave (x2): a positive and a negative phase


def waveform(duty_pct: float) -> Waveform:
    """The waveform generated at ``duty_pct``."""
    if duty_pct <= 0.0:
        return Waveform.F
    if duty_pct >= 100.0:
        return Waveform.X1
    return Waveform.PWM


# --- CP levels (reference 1.2) ---------------------------------------------------------------

#: Lower edges of the positive level for A, B, C, D, E (V). Cut points halfway between the
#: nominal 12/9/6/3/0 V, the "simple" scheme of the reference.
CUT_A_V = 10.5
CUT_B_V = 7.5
CUT_C_V = 4.5
CUT_D_V = 1.5
CUT_E_V = -1.5
#: At or below this the line sits at -12 V: state F.
CUT_F_V = -10.0
#: Beyond +-14 V no EVSE with a +-12 V supply can drive the line: the measurement is wrong.
PLAUSIBLE_LIMIT_V = 14.0
#: While PWM runs, the negative level must be -12 V +- 1 V (the EV's diode blocks it).
LOW_NOMINAL_V = -12.0
LOW_TOLERANCE_V = 1.0


def classify_high(high_v: float) -> CpState | None:
    """The CP state for a positive level (V); None for -10..-1.5 V, which fits no state.

    The caller rejects implausible values (beyond +-14 V) before classifying.
    """
    if high_v >= CUT_A_V:
        return CpState.A
    if high_v >= CUT_B_V:
        return CpState.B
    if high_v >= CUT_C_V:
        return CpState.C
    if high_v >= CUT_D_V:
        return CpState.D
    if high_v >= CUT_E_V:
        return CpState.E
    if high_v <= CUT_F_V:
        return CpState.F
    return None


def plausible(cp_v: float) -> bool:
    """False for levels no +-12 V pilot can produce (a saturated ADC, a broken divider)."""
    return -PLAUSIBLE_LIMIT_V <= cp_v <= PLAUSIBLE_LIMIT_V


def low_level_ok(low_v: float) -> bool:
    """The diode check: with PWM on, the negative level is -12 V +- 1 V in B, C and D.

    A shorted diode loads the negative half like the positive one (hi + lo ~ 0, EVerest "DF").
    """
    return abs(low_v - LOW_NOMINAL_V) <= LOW_TOLERANCE_V


# --- Proximity pilot (reference 2.1) ---------------------------------------------------------


class PpVerdict(StrEnum):
    """What the PP resistance says about the plug."""

    NO_CABLE = "no_cable"  # open or > 2 kOhm
    RATED = "rated"
    SHORT = "short"  # < 75 Ohm: a fault, not a rating


PP_OPEN_ABOVE_OHM = 2000.0
PP_SHORT_BELOW_OHM = 75.0
#: (lowest resistance, rating in A), checked in order: the Tinkerforge thresholds, which sit
#: between the nominal 1.5 k / 680 / 220 / 100 Ohm coding resistors.
PP_RATINGS: tuple[tuple[float, int], ...] = ((1000.0, 13), (330.0, 20), (150.0, 32), (75.0, 63))


def pp_rating_for_ohms(ohms: float) -> tuple[PpVerdict, int | None]:
    """Classify the PP-PE resistance (Ohm, ``math.inf`` for open) into a cable rating in A."""
    if ohms > PP_OPEN_ABOVE_OHM:
        return PpVerdict.NO_CABLE, None
    for lowest_ohm, rating_a in PP_RATINGS:
        if ohms >= lowest_ohm:
            return PpVerdict.RATED, rating_a
    return PpVerdict.SHORT, None


# --- The board's analogue front end ----------------------------------------------------------

#: Default divider: about -15..+15 V on the CP maps linearly onto 0..3.3 V at the ADC input.
#: Computed from the reference front-end's resistors (drivers/pilot_reference.py), the
#: circuit tests/test_frontend_spice.py simulates with ngspice: never typed in here.
DEFAULT_CP_GAIN = REFERENCE.cp_gain
DEFAULT_CP_OFFSET_V = REFERENCE.cp_offset_v
DEFAULT_PP_PULLUP_OHM = REFERENCE.pp_pullup_ohm.nominal
DEFAULT_PP_SUPPLY_V = REFERENCE.pp_supply_v


@dataclass(frozen=True, slots=True)
class FrontEndCalibration:
    """How CP and PP voltages reach the ADS1115 inputs on our board.

    CP: two peak detectors, each followed by a divider with an offset, so that
    ``v_cp = v_adc * gain + offset_v`` (``high_*`` for AIN0, the positive peak; ``low_*`` for
    AIN1, the negative peak). The defaults map -15..+15 V onto 0..3.3 V, so +-12 V sits well
    inside the ADC's +-4.096 V range with margin for the detectors' diode drops; ``picharge check-hw
    --calibrate`` measures a board (+12 V on AIN0, -12 V on AIN1) and writes its gain and offset.

    PP: a pull-up of ``pp_pullup_ohm`` to ``pp_supply_v`` against the plug's PP-PE resistor:
    ``v_adc = supply * R / (R + pullup)``.
    """

    high_gain: float = DEFAULT_CP_GAIN
    high_offset_v: float = DEFAULT_CP_OFFSET_V
    low_gain: float = DEFAULT_CP_GAIN
    low_offset_v: float = DEFAULT_CP_OFFSET_V
    pp_pullup_ohm: float = DEFAULT_PP_PULLUP_OHM
    pp_supply_v: float = DEFAULT_PP_SUPPLY_V

    def cp_high_v(self, adc_v: float) -> float:
        """CP positive level (V) from the AIN0 voltage."""
        return adc_v * self.high_gain + self.high_offset_v

    def cp_low_v(self, adc_v: float) -> float:
        """CP negative level (V) from the AIN1 voltage."""
        return adc_v * self.low_gain + self.low_offset_v

    def adc_for_high(self, cp_v: float) -> float:
        """The AIN0 voltage the board produces for a CP positive level (the inverse)."""
        return (cp_v - self.high_offset_v) / self.high_gain

    def adc_for_low(self, cp_v: float) -> float:
        """The AIN1 voltage the board produces for a CP negative level (the inverse)."""
        return (cp_v - self.low_offset_v) / self.low_gain

    def pp_ohms(self, adc_v: float) -> float:
        """PP-PE resistance (Ohm) from the AIN2 voltage; ``math.inf`` when it reads open."""
        if adc_v >= self.pp_supply_v:
            return math.inf
        return self.pp_pullup_ohm * max(adc_v, 0.0) / (self.pp_supply_v - adc_v)

    def adc_for_pp(self, ohms: float) -> float:
        """The AIN2 voltage for a PP-PE resistance (``math.inf`` = no plug)."""
        if math.isinf(ohms):
            return self.pp_supply_v
        return self.pp_supply_v * ohms / (ohms + self.pp_pullup_ohm)
