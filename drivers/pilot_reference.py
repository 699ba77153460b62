"""The reference CP/PP front-end: component values and tolerances, described once.

This is the single source of truth for the circuit the pilot driver is calibrated for. The
driver's default ``cp_adc_gain``/``cp_adc_offset_v`` (:mod:`drivers.pilot_levels`) are
computed here from the divider's resistors, the simulator's CP model
(:mod:`hw_sim.pilot_frontend`) takes its supply, source resistor and diode drop from here, and
the SPICE netlist that ngspice simulates in the tests (:mod:`hw_sim.spice_frontend`) and the
schematic in ``docs/`` are generated from the same values. Changing a resistor here changes
all of them together; nothing else may hold a copy.

Circuit (docs/img/cp_frontend.svg):

* **CP generator**: the Pi's hardware PWM (GPIO18, 0/3.3 V) drives a rail-to-rail op-amp
  used as a comparator on the +-12 V supply; its output goes through ``r_source_ohm``
  (1 kOhm, IEC 61851-1) to the CP pin.
* **Peak detectors**: a Schottky diode and a capacitor per polarity follow the CP pin. The
  positive one holds the highest level (AIN0), the negative one the lowest (AIN1). Each
  capacitor has a bleeder to the opposite rail so the detector follows a falling level
  (an unplug, a short to PE) within milliseconds.
* **Divider into the ADS1115**: each detector feeds ``r_top_ohm`` into the ADC node, which
  ``r_ref_ohm`` pulls to the 3.3 V reference and ``r_bottom_ohm`` to GND: -15..+15 V maps
  onto about 0..3.3 V, so ``v_cp = v_adc * gain + offset``.
* **PP**: ``pp_pullup_ohm`` from 3.3 V to the PP pin; the plug's coding resistor to PE
  forms the divider read on AIN2.

Known limit, found by simulating it, and what the driver does about it: a passive peak
detector cannot both hold the positive level through the 0.9 ms gap of a 10 % duty (needs a
slow bleed) and fall to -12 V when the EVSE switches to state F (needs a fast one, and a
bleeder low enough to outweigh the divider's pull towards +1.9 V). With these values the
positive detector rests at :meth:`ReferenceFrontEnd.detector_rest_v` of the negative rail,
about -2.6 V, in F: AIN0 cannot show F. The negative detector (AIN1) follows a steady -12 V
exactly, so the driver reads its own state F on AIN1 and never classifies AIN0 while it drives
F (drivers/pilot_sensor.py, ``feed_state_f``). A hardware fix was weighed and rejected
(docs/safety.md, "State F on the reference board"): a bleeder of at most ~140 kOhm would let
AIN0 reach F, but the positive level then droops by ~1.4 V in the gap of a 10 % duty, and a
bigger capacitor to hide that takes ~0.3 s to fall into F; a discharge switch adds a part and
a GPIO for a reading the driver does not need.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Part:
    """A component value and its tolerance (fraction: 0.01 = +-1 %)."""

    nominal: float
    tolerance: float

    @property
    def low(self) -> float:
        """The lowest value within tolerance."""
        return self.nominal * (1.0 - self.tolerance)

    @property
    def high(self) -> float:
        """The highest value within tolerance."""
        return self.nominal * (1.0 + self.tolerance)


@dataclass(frozen=True, slots=True)
class ReferenceFrontEnd:
    """Values of the reference board (see the module docstring for the topology)."""

    supply_v: Part = Part(12.0, 0.03)  # +-12 V isolated DC/DC (e.g. Recom R05P212D), +-3 %
    reference_v: Part = Part(3.3, 0.01)  # ADC reference / 3.3 V rail, +-1 %
    r_source_ohm: Part = Part(1000.0, 0.01)  # IEC 61851-1 R1, 1 kOhm 1 %
    driver_rise_s: float = 2e-6  # op-amp edge (slew) at the CP pin
    r_top_ohm: Part = Part(909_000.0, 0.01)  # detector -> ADC node
    r_ref_ohm: Part = Part(200_000.0, 0.01)  # ADC node -> 3.3 V
    r_bottom_ohm: Part = Part(255_000.0, 0.01)  # ADC node -> GND
    c_hold_f: float = 100e-9  # peak detector hold capacitor
    r_bleed_ohm: float = 2_200_000.0  # hold capacitor -> opposite rail
    detector_diode_drop_v: float = 0.3  # Schottky (BAT54) at the detector's current
    ev_diode_drop_v: float = 0.7  # the car's silicon diode (IEC 61851-1 D1)
    ev_r_b_ohm: Part = Part(2740.0, 0.03)  # R2, state B
    ev_r_c_ohm: Part = Part(1300.0, 0.03)  # R3 for state C
    ev_r_d_ohm: Part = Part(270.0, 0.03)  # R3 for state D
    pp_pullup_ohm: Part = Part(1000.0, 0.01)
    pp_supply_v: float = 3.3

    def adc_transfer(
        self, r_top: float | None = None, r_ref: float | None = None, r_bottom: float | None = None
    ) -> tuple[float, float]:
        """``(k, c)`` of the divider: ``v_adc = k * v_detector + c`` (superposition)."""
        top = self.r_top_ohm.nominal if r_top is None else r_top
        ref = self.r_ref_ohm.nominal if r_ref is None else r_ref
        bottom = self.r_bottom_ohm.nominal if r_bottom is None else r_bottom
        conductance = 1.0 / top + 1.0 / ref + 1.0 / bottom
        k = (1.0 / top) / conductance
        c = self.reference_v.nominal * (1.0 / ref) / conductance
        return k, c

    def detector_rest_v(self, rail_v: float) -> float:
        """Where a peak detector's capacitor settles when its diode never conducts (V).

        Its bleeder pulls it towards ``rail_v`` (the opposite rail: -12 V for the positive
        detector, +12 V for the negative one) and the divider towards its own Thevenin
        voltage; the two meet at this level. The positive detector rests here in state F
        (about -2.6 V), the negative one with a steady positive line (about +5.1 V).
        """
        ref, bottom = self.r_ref_ohm.nominal, self.r_bottom_ohm.nominal
        r_divider = self.r_top_ohm.nominal + ref * bottom / (ref + bottom)
        v_divider = self.reference_v.nominal * bottom / (ref + bottom)
        return (rail_v * r_divider + v_divider * self.r_bleed_ohm) / (r_divider + self.r_bleed_ohm)

    @property
    def cp_gain(self) -> float:
        """The default ``cp_adc_gain``: volts on the CP per volt at the ADC."""
        k, _ = self.adc_transfer()
        return 1.0 / k

    @property
    def cp_offset_v(self) -> float:
        """The default ``cp_adc_offset_v``: the CP voltage that reads 0 V at the ADC."""
        k, c = self.adc_transfer()
        return -c / k


REFERENCE = ReferenceFrontEnd()
