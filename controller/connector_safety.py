"""The safety rules of a connector, as pure functions and tables.

:func:`may_close_contactor` is the single place that decides whether mains may reach the
car; the state machine sends no ``CloseContactor`` that did not pass it, and opens the
contactor as soon as it no longer holds. :data:`FAULT_POLICY` says, per fault, what the
control pilot shows and how the fault clears. Both are small enough to read at once and
to review against the hardware reference (sections 1.5, 5.2 and 5.3).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from controller.connector_types import MIN_OFFER_A, OfferCurrent, SetStateF
from controller.limits import CurrentLimits, LimitSource, compute_offer
from drivers.base import CpState
from drivers.errors import FaultKind

#: CP states in which the EV asks for energy (S2 closed).
EV_READY_STATES = frozenset({CpState.C, CpState.D})
#: CP states in which a car is known to be connected and the PWM may be offered.
EV_CONNECTED_STATES = frozenset({CpState.B, CpState.C, CpState.D})


def may_close_contactor(
    cp_state: CpState | None,
    authorized: bool,
    available: bool,
    faults: Collection[FaultKind],
    offered_a: float,
    *,
    pilot_verified: bool,
    state_d_allowed: bool = True,
    lock_engaged: bool = True,
) -> bool:
    """True only when mains may be switched to the car (design.md, "State machines").

    All must hold: the EV asks for energy (C, or D when ``state_d_allowed``: the site
    ventilates), a transaction of an authorized session runs (``authorized``), the connector
    is operative (``available``), no fault is active, the PWM offers at least 6 A and the
    EV's diode was judged good with the PWM running since the car arrived
    (``pilot_verified``: :class:`~controller.connector_types.PilotVerified`).
    ``cp_state`` None (unknown: no reading yet, or our own state F hides the car) is never
    enough. A socket with a lock actuator needs its latch engaged (``lock_engaged``, from
    the actuator's feedback; IEC 61851-1: a socket outlet is locked before it is energized);
    a tethered cable or a socket without an actuator passes True.
    """
    ready = cp_state is CpState.C or (cp_state is CpState.D and state_d_allowed)
    offering = offered_a >= MIN_OFFER_A
    return (
        ready
        and authorized
        and available
        and not faults
        and offering
        and pilot_verified
        and lock_engaged
    )


def effective_offer_a(
    max_current_a: float,
    cable_rating_a: float | None,
    cable_rating_required: bool,
    limit_a: float | None,
) -> float:
    """The current to offer: min(connector maximum, cable rating, limit), 0 below 6 A.

    One ``limit_a`` standing for all sources; :func:`controller.limits.compute_offer` is
    the rule (an unknown cable rating limits nothing on a tethered cable and everything on
    a socket: a 13 A cable must never see a 32 A offer).
    """
    limits = CurrentLimits().with_limit(LimitSource.CSMS, limit_a)
    return compute_offer(max_current_a, cable_rating_a, cable_rating_required, limits).current_a


# --- what the pilot shows -----------------------------------------------------------------


class PilotMode(StrEnum):
    """The three things the CP generator can do (hardware reference 1.3, 1.4)."""

    OFF = "off"  # x1: steady +12 V, nothing offered (B1 / C1)
    PWM = "pwm"  # x2: 1 kHz PWM offering a current (B2 / C2)
    STATE_F = "state_f"  # steady -12 V: EVSE not available


@dataclass(frozen=True, slots=True)
class PilotOutput:
    """What the machine commanded the pilot generator to do."""

    mode: PilotMode
    current_a: float = 0.0

    @property
    def offered_a(self) -> float:
        """The current the EV may draw: 0 unless the PWM runs."""
        return self.current_a if self.mode is PilotMode.PWM else 0.0

    def command(self) -> OfferCurrent | SetStateF:
        """The command that makes the generator do this."""
        if self.mode is PilotMode.STATE_F:
            return SetStateF()
        return OfferCurrent(self.offered_a)


PILOT_OFF = PilotOutput(PilotMode.OFF)
PILOT_F = PilotOutput(PilotMode.STATE_F)


def pwm(current_a: float) -> PilotOutput:
    """The PWM offering ``current_a``, or PWM off when that is below 6 A."""
    if current_a < MIN_OFFER_A:
        return PILOT_OFF
    return PilotOutput(PilotMode.PWM, float(current_a))


# --- faults -------------------------------------------------------------------------------


class FaultResponse(StrEnum):
    """What the pilot shows while a fault is active (the contactor is open in every case)."""

    # State F for as long as the fault lasts (and at least ``state_f_after_fault_s``):
    # hazards on the charger's side whose end the charger itself detects.
    HOLD_F = "hold_f"
    # An F pulse of ``state_f_after_fault_s``, then PWM off (B1/C1) while it lasts: faults
    # seen on the CP line, which must be watched again to see them end (or the EV leave).
    PULSE_F = "pulse_f"
    # PWM off while it lasts; an F pulse only when the fault interrupted charging (C/D),
    # as IEC 61851-1 Table A.5 asks ("CX -> F -> C1/B1"; EVerest does the same).
    PWM_OFF = "pwm_off"


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """How a fault kind is handled; ``latches`` faults only end with a new machine."""

    response: FaultResponse
    latches: bool = False
    clears_on_unplug: bool = False


#: The fault -> CP output mapping (see each line's reason). A fault kind missing here is
#: handled as the strictest entry (tests check the table covers every FaultKind).
FAULT_POLICY: Mapping[FaultKind, FaultPolicy] = MappingProxyType(
    {
        # Reference 5.2: a welded main contact latches a fault, never re-energizes and keeps
        # CP in F (the EV must not draw through contacts we cannot open).
        FaultKind.CONTACTOR_WELDED: FaultPolicy(FaultResponse.HOLD_F, latches=True),
        # Reference 5.3: on a residual-current trip open at once, stop PWM, go to E/F.
        FaultKind.RCD_TRIP: FaultPolicy(FaultResponse.HOLD_F),
        # Reference 5.3: a failed RCM self-test means "do not charge" until a test passes.
        FaultKind.RCD_SELFTEST: FaultPolicy(FaultResponse.HOLD_F),
        # The contactor did not close (the driver already de-energized the coil): tell the
        # EV with F, then wait in B1/C1; the next plug-in gets a new attempt.
        FaultKind.CONTACTOR_FAILED_CLOSE: FaultPolicy(FaultResponse.PULSE_F, clears_on_unplug=True),
        # CP short (E), an F level we did not make, or unclassifiable voltages: F pulse,
        # then watch the line again (a derived CP error ends with the next valid state).
        FaultKind.CP_ERROR: FaultPolicy(FaultResponse.PULSE_F),
        # Reference 1.1: no -12 V low half under PWM = no EV diode (a resistor or a finger
        # is not a car). It belongs to what is plugged in, so unplugging ends it.
        FaultKind.DIODE_FAULT: FaultPolicy(FaultResponse.PULSE_F, clears_on_unplug=True),
        # The window comparator saw the CP leave C/D and the ADC did not (drivers.cp_window):
        # one of them is wrong or the line glitched. The coil already dropped; F pulse, then
        # PWM off until the car is unplugged (no retry loop of closes that trip again).
        FaultKind.CP_MISMATCH: FaultPolicy(FaultResponse.PULSE_F, clears_on_unplug=True),
        # Not electrical hazards on the CP side: stop offering, keep watching the EV.
        FaultKind.OVERTEMPERATURE: FaultPolicy(FaultResponse.PWM_OFF),
        # An unlocked socket must not be energized; the next plug-in retries the lock.
        FaultKind.LOCK_FAILURE: FaultPolicy(FaultResponse.PWM_OFF, clears_on_unplug=True),
        # Energy would go unbilled. (EVerest makes this configurable: fail_on_powermeter_errors.)
        FaultKind.METER_OFFLINE: FaultPolicy(FaultResponse.PWM_OFF),
        # Shared by all connectors and harmless to a running charge: the supervisor may
        # report it at charge-point level instead of feeding it to connectors.
        FaultKind.READER_FAILURE: FaultPolicy(FaultResponse.PWM_OFF),
        # The state database failed (issue 5): a session could not be recorded, so none may
        # run. No hazard at the car: PWM off; it clears when the database works again.
        FaultKind.INTERNAL_ERROR: FaultPolicy(FaultResponse.PWM_OFF),
        # Mains outside 230 V +-10 % (drivers.mains): no charging on a supply the car's
        # charger is not rated for; PWM off, and the judge clears it when the mains is back.
        FaultKind.UNDER_VOLTAGE: FaultPolicy(FaultResponse.PWM_OFF),
        FaultKind.OVER_VOLTAGE: FaultPolicy(FaultResponse.PWM_OFF),
        # The charger runs on its UPS reserve: transactions were stopped; nothing starts
        # until the supply is back.
        FaultKind.POWER_FAIL: FaultPolicy(FaultResponse.PWM_OFF),
    }
)

_STRICTEST = FaultPolicy(FaultResponse.HOLD_F, latches=True)

#: Which active fault a Faulted status names first: the most serious.
FAULT_PRIORITY: tuple[FaultKind, ...] = (
    FaultKind.CONTACTOR_WELDED,
    FaultKind.RCD_TRIP,
    FaultKind.RCD_SELFTEST,
    FaultKind.CONTACTOR_FAILED_CLOSE,
    FaultKind.CP_ERROR,
    FaultKind.CP_MISMATCH,
    FaultKind.DIODE_FAULT,
    FaultKind.OVERTEMPERATURE,
    FaultKind.LOCK_FAILURE,
    FaultKind.OVER_VOLTAGE,
    FaultKind.UNDER_VOLTAGE,
    FaultKind.POWER_FAIL,
    FaultKind.METER_OFFLINE,
    FaultKind.INTERNAL_ERROR,
    FaultKind.READER_FAILURE,
)


def policy_for(kind: FaultKind) -> FaultPolicy:
    """The policy of ``kind``; an unknown kind gets the strictest one (F, latched)."""
    return FAULT_POLICY.get(kind, _STRICTEST)


def primary_fault(faults: Collection[FaultKind]) -> FaultKind | None:
    """The most serious of ``faults`` (None when there are none)."""
    for kind in FAULT_PRIORITY:
        if kind in faults:
            return kind
    return min(faults, default=None)  # a kind missing from the priority list: stable pick
