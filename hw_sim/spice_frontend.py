"""The reference CP/PP front-end as a SPICE netlist, simulated with ngspice in batch mode.

The netlist is generated from :data:`drivers.pilot_reference.REFERENCE`, so the circuit the
tests simulate, the driver's default calibration and the schematic in ``docs/`` share one set
of values. One ngspice run simulates every case side by side (each case is a copy of the
circuit with its own node names), which keeps the tests to a few seconds.

A case is an IEC 61851 state (A-F) at a PWM duty, or a diode fault, at one corner of the
component tolerances: ``nominal``, ``low`` (every tolerance pushing the ADC readings down) or
``high`` (every tolerance pushing them up). Everything in the circuit is monotone in its
parts, so these two corners bound the readings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from itertools import product
from pathlib import Path

from drivers.pilot_reference import REFERENCE, Part, ReferenceFrontEnd

PWM_PERIOD_S = 1e-3
#: Long enough for the hold capacitors to settle at the lowest duty (the readings are the
#: average over the last ``MEASURE_S``, about what one ADS1115 conversion integrates).
SIM_TIME_S = 0.03
MEASURE_S = 0.005
MAX_STEP_S = 5e-6

DIODE_MODELS = (
    # BAT54-like Schottky for the peak detectors.
    ".model DSCH D(IS=3e-8 N=1.05 RS=2 CJO=10p BV=30)\n"
    # 1N4148, a common choice for the car's D1 (and for an EV tester).
    ".model DEV D(IS=2.52n N=1.752 RS=0.568 CJO=4p TT=20n BV=100)\n"
)


class Corner(StrEnum):
    """Which way the tolerances push the ADC readings."""

    NOMINAL = "nominal"
    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class Case:
    """One circuit to simulate: the car's state, the EVSE's duty, faults, a tolerance corner.

    ``ev`` is what the car presents: "A" (nothing), "B", "C", "D", or "E" (CP shorted to PE).
    ``duty_pct`` is the positive phase: 100 = steady +12 V (x1), 0 = steady -12 V (state F).
    """

    ev: str
    duty_pct: float
    corner: Corner = Corner.NOMINAL
    diode_shorted: bool = False

    @property
    def label(self) -> str:
        fault = "_df" if self.diode_shorted else ""
        return f"{self.ev}{fault}_d{self.duty_pct:g}_{self.corner}"


@dataclass(frozen=True, slots=True)
class Reading:
    """The simulated ADS1115 inputs of one case, with the CP line and the hold capacitor (V)."""

    ain0_high: float
    ain1_low: float
    hold_high: float  # the positive detector's capacitor, which the divider scales
    cp_max: float  # the CP line's highest and lowest level over the window
    cp_min: float


def _pick(part: Part, up: bool | None) -> float:
    if up is None:
        return part.nominal
    return part.high if up else part.low


def _divider_corner(ref: ReferenceFrontEnd, reads_high: bool, level_v: float) -> tuple[float, ...]:
    """The divider's (r_top, r_ref, r_bottom, v_ref) that read ``level_v`` highest or lowest
    through the nominal calibration: the worst of the 16 combinations of their extremes."""
    k0, c0 = ref.adc_transfer()
    best: tuple[float, ...] | None = None
    best_v = 0.0
    for top, rref, bottom, vref in product(
        (ref.r_top_ohm.low, ref.r_top_ohm.high),
        (ref.r_ref_ohm.low, ref.r_ref_ohm.high),
        (ref.r_bottom_ohm.low, ref.r_bottom_ohm.high),
        (ref.reference_v.low, ref.reference_v.high),
    ):
        k, c = ref.adc_transfer(top, rref, bottom)
        c *= vref / ref.reference_v.nominal
        estimate = ((k * level_v + c) - c0) / k0
        if best is None or (estimate > best_v if reads_high else estimate < best_v):
            best, best_v = (top, rref, bottom, vref), estimate
    assert best is not None
    return best


def _ev_load(ref: ReferenceFrontEnd, ev: str, up: bool | None) -> list[tuple[str, float]]:
    """The car's resistors from its diode's cathode to PE (a higher load reads higher)."""
    loads = [("b", _pick(ref.ev_r_b_ohm, up))]
    if ev == "C":
        loads.append(("c", _pick(ref.ev_r_c_ohm, up)))
    if ev == "D":
        loads.append(("d", _pick(ref.ev_r_d_ohm, up)))
    return loads


def case_netlist(case: Case, n: int, ref: ReferenceFrontEnd = REFERENCE) -> str:
    """The SPICE lines of one case, nodes suffixed with ``n``."""
    up = {Corner.NOMINAL: None, Corner.LOW: False, Corner.HIGH: True}[case.corner]
    supply = _pick(ref.supply_v, up)
    r_source = _pick(ref.r_source_ohm, None if up is None else not up)
    lines = [f"* case {n}: {case.label}"]
    lines.append(f"Vp{n} vp{n} 0 DC {supply}")
    lines.append(f"Vn{n} vn{n} 0 DC {-supply}")
    if case.duty_pct >= 100.0:
        lines.append(f"Vdrv{n} drv{n} 0 DC {supply}")
    elif case.duty_pct <= 0.0:
        lines.append(f"Vdrv{n} drv{n} 0 DC {-supply}")
    else:
        rise = ref.driver_rise_s
        width = PWM_PERIOD_S * case.duty_pct / 100.0 - rise
        lines.append(
            f"Vdrv{n} drv{n} 0 PULSE({-supply} {supply} 0 {rise} {rise} {width} {PWM_PERIOD_S})"
        )
    lines.append(f"Rsrc{n} drv{n} cp{n} {r_source}")
    if case.ev == "E":
        lines.append(f"Rshort{n} cp{n} 0 0.01")
    elif case.ev in ("B", "C", "D"):
        if case.diode_shorted:
            lines.append(f"Rdiode{n} cp{n} ev{n} 0.01")
        else:
            lines.append(f"Dev{n} cp{n} ev{n} DEV")
        for name, ohms in _ev_load(ref, case.ev, up):
            lines.append(f"Rev{name}{n} ev{n} 0 {ohms}")
    for side, level in (("h", 12.0), ("l", -12.0)):
        nominal = (ref.r_top_ohm, ref.r_ref_ohm, ref.r_bottom_ohm, ref.reference_v)
        top, rref, bottom, vref = (
            tuple(part.nominal for part in nominal)
            if up is None
            else _divider_corner(ref, up, level)
        )
        hold, adc = f"hold{side}{n}", f"adc{side}{n}"
        if side == "h":
            lines.append(f"D{side}{n} cp{n} {hold} DSCH")
            lines.append(f"Rbl{side}{n} {hold} vn{n} {ref.r_bleed_ohm}")
        else:
            lines.append(f"D{side}{n} {hold} cp{n} DSCH")
            lines.append(f"Rbl{side}{n} {hold} vp{n} {ref.r_bleed_ohm}")
        lines.append(f"C{side}{n} {hold} 0 {ref.c_hold_f}")
        lines.append(f"Vr{side}{n} ref{side}{n} 0 DC {vref}")
        lines.append(f"Rt{side}{n} {hold} {adc} {top}")
        lines.append(f"Rr{side}{n} {adc} ref{side}{n} {rref}")
        lines.append(f"Rg{side}{n} {adc} 0 {bottom}")
    return "\n".join(lines) + "\n"


def pp_netlist(code_ohm: float | None, pullup_ohm: float, supply_v: float, n: int) -> str:
    """The PP divider: pull-up from 3.3 V against the plug's coding resistor (None = open)."""
    lines = [f"* pp {n}", f"Vpp{n} ppsup{n} 0 DC {supply_v}", f"Rpu{n} ppsup{n} pp{n} {pullup_ohm}"]
    if code_ohm is not None:
        lines.append(f"Rcode{n} pp{n} 0 {code_ohm}")
    else:
        lines.append(f"Rleak{n} pp{n} 0 1e12")
    return "\n".join(lines) + "\n"


def netlist(cases: list[Case], pp_cases: list[tuple[float | None, float, float]]) -> str:
    """One deck with every case and the ``.meas`` lines that report their ADC inputs."""
    body = [f"* picharge reference CP/PP front-end, {len(cases)} CP cases\n", DIODE_MODELS]
    meas = []
    start, stop = SIM_TIME_S - MEASURE_S, SIM_TIME_S
    for n, case in enumerate(cases):
        body.append(case_netlist(case, n))
        meas.append(f".meas tran ainh{n} AVG v(adch{n}) FROM={start} TO={stop}")
        meas.append(f".meas tran ainl{n} AVG v(adcl{n}) FROM={start} TO={stop}")
        meas.append(f".meas tran holdh{n} AVG v(holdh{n}) FROM={start} TO={stop}")
        meas.append(f".meas tran cpmax{n} MAX v(cp{n}) FROM={start} TO={stop}")
        meas.append(f".meas tran cpmin{n} MIN v(cp{n}) FROM={start} TO={stop}")
    for n, (code, pullup, supply) in enumerate(pp_cases):
        body.append(pp_netlist(code, pullup, supply, n))
        meas.append(f".meas tran ainpp{n} AVG v(pp{n}) FROM={start} TO={stop}")
    body.append(f".tran {MAX_STEP_S} {SIM_TIME_S} 0 {MAX_STEP_S}\n")
    body.append(".options noacct\n")
    body.append("\n".join(meas) + "\n.end\n")
    return "".join(body)


_MEAS = re.compile(r"^((?:ainh|ainl|ainpp|holdh|cpmax|cpmin)\d+)\s*=\s*([-+0-9.eE]+)", re.MULTILINE)


def ngspice_available() -> bool:
    """True when the ``ngspice`` binary is on PATH (deploy/system-packages.sh installs it)."""
    return shutil.which("ngspice") is not None


def simulate(
    cases: list[Case], pp_cases: list[tuple[float | None, float, float]] | None = None
) -> tuple[list[Reading], list[float]]:
    """Run ngspice in batch mode: the ADC inputs of each CP case and each PP case."""
    pp_cases = pp_cases or []
    with tempfile.TemporaryDirectory(prefix="picharge-spice-") as tmp:
        deck = Path(tmp) / "frontend.cir"
        deck.write_text(netlist(cases, pp_cases))
        done = subprocess.run(
            ["ngspice", "-b", str(deck)], capture_output=True, text=True, timeout=120, check=False
        )
    values = {name.lower(): float(v) for name, v in _MEAS.findall(done.stdout.lower())}
    expected = 5 * len(cases) + len(pp_cases)
    if len(values) != expected:
        raise RuntimeError(
            f"ngspice reported {len(values)} of {expected} measurements "
            f"(exit {done.returncode}): {done.stderr[-2000:]}"
        )
    readings = [
        Reading(*(values[f"{name}{n}"] for name in ("ainh", "ainl", "holdh", "cpmax", "cpmin")))
        for n in range(len(cases))
    ]
    return readings, [values[f"ainpp{n}"] for n in range(len(pp_cases))]
