"""The simulated electric vehicle: what a car does on the other end of the control pilot.

A real car, once plugged in (state B), closes S2 and asks for energy (state C) as soon as
the PWM offers a current, unless its driver paused charging or its battery is full. It then
draws at most the offered current and at most its on-board charger's maximum, on one or
three phases, and follows a new offer within a few seconds (IEC 61851 allows it 5 s).

The model is a plain object stepped by the simulation clock; it does no I/O, so it can be
tested on its own and accelerated (a 60 kWh battery does not need an hour in a test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.base import CpState

NOMINAL_VOLTAGE_V = 230.0


@dataclass
class EvSpec:
    """What kind of car is plugged in."""

    max_current_a: float = 16.0
    phases: int = 3
    battery_kwh: float = 60.0
    initial_soc_pct: float = 30.0
    target_soc_pct: float = 100.0
    # Time constant (EV seconds) with which the drawn current approaches its target: a new
    # offer is followed to within 5 % after three time constants.
    response_tau_s: float = 0.8
    needs_ventilation: bool = False
    # Close S2 as soon as it wants energy, before any current is offered (IEC 61851-1 C1,
    # "EV ready, EVSE not ready"): such a car shows C while it waits for the card.
    closes_s2_early: bool = False


class SimEV:
    """One car, with its IEC 61851 S2 switch, battery and on-board charger."""

    def __init__(self, spec: EvSpec | None = None) -> None:
        self.spec = spec or EvSpec()
        self.plugged = False
        self.requesting = False  # the driver wants to charge (`sim charge` / `sim pause`)
        self.soc_pct = self.spec.initial_soc_pct
        self.current_a = 0.0
        self.energy_charged_wh = 0.0
        #: The phases the charger gives the car (a phase contactor may take L2 and L3 away);
        #: a three-phase car then draws on L1 alone, as its on-board charger allows.
        self.supplied_phases = 3
        #: Called after the car changed what it shows on the CP (plug, unplug, S2): the
        #: simulation's window comparator follows at once, on the caller's thread.
        self.on_change: Callable[[], None] = lambda: None

    # -- what the driver of the car does -------------------------------------------------

    def plug(self) -> None:
        self.plugged = True
        self.requesting = True  # a car asks for energy by default once the charger offers it
        self.on_change()

    def unplug(self) -> None:
        self.plugged = False
        self.requesting = False
        self.current_a = 0.0
        self.on_change()

    def charge(self) -> None:
        """Ask for energy (S2 closes once current is offered): `picharge sim charge`."""
        if not self.plugged:
            self.plug()
        self.requesting = True
        self.on_change()

    def pause(self) -> None:
        """Stop asking for energy (S2 opens: C -> B), as a car does from its app."""
        self.requesting = False
        self.on_change()

    # -- what the car shows on the pilot --------------------------------------------------

    @property
    def full(self) -> bool:
        return self.soc_pct >= self.spec.target_soc_pct

    def cp_state(self, offered_a: float | None) -> CpState:
        """The state the car's resistors put on the CP, given the current the PWM offers.

        ``offered_a`` is what the car decoded from the duty (None: nothing offered, as with
        a steady +12 V). A car closes S2 only while current is offered (when the charger
        stops the PWM, C2 -> C1, it goes back to B), unless ``spec.closes_s2_early``.
        """
        if not self.plugged:
            return CpState.A
        wants = self.requesting and not self.full
        if wants and (offered_a is not None or self.spec.closes_s2_early):
            return CpState.D if self.spec.needs_ventilation else CpState.C
        return CpState.B

    # -- physics --------------------------------------------------------------------------

    def step(self, dt_s: float, offered_a: float | None, powered: bool) -> None:
        """Advance ``dt_s`` EV seconds with the given offer and contactor state."""
        state = self.cp_state(offered_a)
        drawing = powered and state in (CpState.C, CpState.D) and offered_a is not None
        target = min(self.spec.max_current_a, offered_a or 0.0) if drawing else 0.0
        if not powered:
            self.current_a = 0.0  # no mains, no current: instantly
        elif dt_s > 0:
            alpha = min(1.0, dt_s / self.spec.response_tau_s)
            self.current_a += (target - self.current_a) * alpha
            if abs(self.current_a - target) < 0.05:
                self.current_a = target
        energy_wh = self.power_w * dt_s / 3600.0
        self.energy_charged_wh += energy_wh
        self.soc_pct = min(100.0, self.soc_pct + 100.0 * energy_wh / (self.spec.battery_kwh * 1000))

    @property
    def phase_currents_a(self) -> tuple[float, float, float]:
        if self.spec.phases == 1 or self.supplied_phases == 1:
            return (self.current_a, 0.0, 0.0)
        return (self.current_a, self.current_a, self.current_a)

    @property
    def power_w(self) -> float:
        return sum(self.phase_currents_a) * NOMINAL_VOLTAGE_V
