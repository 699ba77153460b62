"""Random lives of one connector against an independent oracle of the safety rules.

Hypothesis plays a car, a card reader, drivers and a CSMS at random against one
:class:`ConnectorMachine`. The test keeps its OWN account of the world, built only from the
events it sent and the commands the machine gave back (what the hardware and the CSMS would
have seen), and states the rules from the specification (design.md, "State machines";
hardware reference 1.1, 5.2, 5.3) without calling the code under test:

- **Safety and liveness of the contactor** (:meth:`RandomConnectorLife.check_contactor`):
  after EVERY event, also inside the multi-event rules, the contactor is closed exactly when
  the car is seen in C (or D where the site ventilates), an authorized transaction runs,
  the connector is available, no fault is active, the PWM offers at least 6 A and the car's
  diode was judged good since it arrived. "Exactly" makes it a liveness check too: the close
  is due in the very call that makes the conditions hold, so a charger that never charges
  fails as surely as one that closes on a fault.
- **The pilot** (:meth:`RandomConnectorLife.check_pilot`): state F is held while a hazard
  of the charger's own side lasts and ends at most ``state_f_after_fault_s`` after the last
  fault appeared; otherwise the PWM offers exactly min(connector, cable, limit) to a car in
  B/C/D(ventilated) with a transaction and no fault, 0 below 6 A, and nothing else.

The strategies are weighted so that most examples close the contactor and then throw a
hazard at it (while closed, and in the middle of a session about to close); the
configuration is drawn too (state-F pulse 0 or 0.3 s, ventilation, socket or tethered).

Profiles (``PICHARGE_PROOF``): ``ci`` (default) is derandomized and takes seconds; ``long``
(``make proof``) runs many more, longer examples and keeps failures in ``.hypothesis/``.
``pytest --hypothesis-show-statistics`` prints how often examples close the contactor and
which hazards met it closed.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from controller.connector import ConnectorMachine
from controller.connector_safety import may_close_contactor
from controller.connector_types import (
    Authorized,
    AvailabilityChanged,
    CableRatingChanged,
    CloseContactor,
    Command,
    ConnectorSettings,
    ConnectorStatus,
    CpChanged,
    Event,
    FaultCleared,
    FaultRaised,
    IdPresented,
    LimitChanged,
    OfferCurrent,
    OpenContactor,
    PilotVerified,
    RemoteStart,
    RequestAuthorization,
    ReservationAnswered,
    ReservationCancelled,
    ReservationEnd,
    ReservationEnded,
    ReservationOutcome,
    Reserved,
    SetStateF,
    SettingsChanged,
    StartTransaction,
    StatusChanged,
    StopReason,
    StopRequested,
    StopTransaction,
    Tick,
)
from controller.limits import LimitSource
from drivers.base import CpState
from drivers.errors import FaultKind

# --- the specification, written down here and not imported from the code under test ----

#: IEC 61851-1 Annex A: below 6 A the PWM cannot offer current.
MIN_OFFER_A = 6.0
#: The car asks for energy in C, and in D when the site ventilates.
CAR_PRESENT = (CpState.B, CpState.C, CpState.D)
#: Reference 5.2: a weld never ends without a repair (and a restart).
LATCHING = frozenset({FaultKind.CONTACTOR_WELDED})
#: Hazards of the charger's own side hold state F while they last (reference 5.2, 5.3).
HOLD_F = frozenset({FaultKind.CONTACTOR_WELDED, FaultKind.RCD_TRIP, FaultKind.RCD_SELFTEST})
#: Not hazards at the car: the PWM stops, and state F pulses only when the fault interrupts
#: a car asking for energy (IEC 61851-1 Table A.5, "CX -> F -> C1/B1").
NO_F_UNLESS_CHARGING = frozenset(
    {
        FaultKind.OVERTEMPERATURE,
        FaultKind.LOCK_FAILURE,
        FaultKind.METER_OFFLINE,
        FaultKind.READER_FAILURE,
        FaultKind.INTERNAL_ERROR,
        # issue 13: the mains out of tolerance and the UPS HAT's power-fail warning stop the
        # offer; nothing is wrong at the car
        FaultKind.UNDER_VOLTAGE,
        FaultKind.OVER_VOLTAGE,
        FaultKind.POWER_FAIL,
    }
)
#: Faults that belong to what is plugged in: unplugging (A seen) ends them.
CLEARS_ON_UNPLUG = frozenset(
    {
        FaultKind.CONTACTOR_FAILED_CLOSE,
        FaultKind.DIODE_FAULT,
        FaultKind.LOCK_FAILURE,
        # issue 12: the window comparator and the ADC disagreed about this car's CP
        FaultKind.CP_MISMATCH,
    }
)
#: An F read this soon after our own F ended is our F seen late, not the car.
F_ECHO_S = 1.0

# --- profiles -------------------------------------------------------------------------

PROFILE = os.environ.get("PICHARGE_PROOF", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"PICHARGE_PROOF must be 'ci' or 'long', not {PROFILE!r}")
LONG = PROFILE == "long"
# Hypothesis stops shrinking after 300 s (MAX_SHRINKING_SECONDS), whatever the settings; the
# test's own timeout leaves room for generation plus that, so a failure is always reported
# with its shrunk counterexample instead of being cut off by pytest-timeout.
SHRINK_CAP_S = 300
TIMEOUT_S = (1800 if LONG else 120) + SHRINK_CAP_S

IDS = st.sampled_from(["04A1B2C3", "04a1b2c3", "DEADBEEF", "CAFE0001"])
PARENTS = st.sampled_from([None, "FAMILY", "family", "FLEET"])
# Steps around the interesting times: none, debounce-sized, the F hold edge, the F echo
# edge, the connection timeout edge, and long waits.
STEP_S = st.one_of(
    st.just(0.0),
    st.floats(0.0, 0.5, allow_nan=False),
    st.sampled_from([0.29, 0.3, 0.31, 0.99, 1.0, 59.9, 60.0, 61.0, 600.0]),
)
NON_LATCHING = sorted(set(FaultKind) - LATCHING)
CURRENTS = st.one_of(st.none(), st.floats(0.0, 80.0, allow_nan=False))
LOW_CURRENTS = st.one_of(st.sampled_from([0.0, 5.9, 5.99]), st.floats(0.0, 5.999))
RESERVATION_S = st.sampled_from([0.0, 0.3, 30.0, 60.0, 600.0])
F_HOLDS_S = st.sampled_from([0.0, 0.3])


def limit_event(current_a: float | None, source: LimitSource = LimitSource.CSMS) -> Event:
    """The one place this test builds a limit event."""
    return LimitChanged(current_a, source)


SOURCES = st.sampled_from(LimitSource)


def hazards(*, weld: bool = False) -> st.SearchStrategy[Event]:
    """Everything that must open a closed contactor (or keep it from closing).

    A weld latches for good, ending the example's chances to charge again: it is drawn
    rarely (``weld``), only where the contactor is already closed.
    """
    kinds = NON_LATCHING * 3 + ([FaultKind.CONTACTOR_WELDED] if weld else [])
    return st.one_of(
        st.sampled_from(kinds).map(FaultRaised),
        st.builds(limit_event, LOW_CURRENTS, SOURCES),
        st.just(AvailabilityChanged(False)),
        st.sampled_from(StopReason).map(StopRequested),
        st.sampled_from([CpState.A, CpState.B, CpState.E, CpState.F]).map(CpChanged),
        st.just(FaultRaised(FaultKind.DIODE_FAULT)),
        st.just(CableRatingChanged(None)),
    )


#: What may meet a charging car without being a hazard (the oracle says what it does).
BENIGN: st.SearchStrategy[Event] = st.one_of(
    st.builds(limit_event, st.floats(MIN_OFFER_A, 80.0), SOURCES),
    st.sampled_from([CableRatingChanged(20.0), CableRatingChanged(63.0)]),
    st.sampled_from([Tick(), PilotVerified(), CpChanged(CpState.C)]),
    st.sampled_from([IdPresented("CAFE0001"), Authorized("CAFE0001", True, "FLEET")]),
    st.sampled_from([Reserved(1, "DEADBEEF", None, 1e6), ReservationCancelled(1)]),
    st.sampled_from([FaultCleared(kind) for kind in FaultKind]),
)


@dataclass(frozen=True)
class Session:
    """How one driver's session goes (see :meth:`RandomConnectorLife.play`)."""

    id_tag: str
    parent_id: str | None
    recover: bool  # the site is mended first: faults cleared, available, no limit, car away
    arrive_in: CpState  # B, or C/D for a car that asks at once (C1)
    ask_in: CpState  # C or D to charge, B to stay paused
    hazard_at: int | None  # the step a hazard strikes at, None for none
    hazard: Event
    step_s: float
    then: list[Event]  # what happens while it charges (a minute apart at most)


SESSIONS = st.builds(
    Session,
    id_tag=IDS,
    parent_id=PARENTS,
    recover=st.sampled_from([True, True, True, False]),
    arrive_in=st.sampled_from([CpState.B, CpState.B, CpState.C, CpState.D]),
    ask_in=st.sampled_from([CpState.C, CpState.C, CpState.C, CpState.D, CpState.B]),
    hazard_at=st.one_of(st.none(), st.none(), st.integers(0, 5)),
    hazard=hazards(),
    step_s=STEP_S,
    then=st.lists(BENIGN, min_size=4, max_size=16),
)


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def _settings(
    *,
    max_current_a: float = 32.0,
    free: str | None = None,
    stop_on_ev_disconnect: bool = True,
    ventilation: bool = False,
    socket: bool = True,
    f_hold_s: float = 0.3,
) -> ConnectorSettings:
    return ConnectorSettings(
        max_current_a=max_current_a,
        free_charging_id=free,
        stop_on_ev_disconnect=stop_on_ev_disconnect,
        connection_timeout_s=60.0,
        state_f_after_fault_s=f_hold_s,
        cable_rating_required=socket,
        ventilation=ventilation,
    )


class RandomConnectorLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = _settings()
        self.machine = ConnectorMachine(self.config)
        self.now = 0.0
        # What the hardware and the CSMS saw, from the commands alone.
        self.closed = False
        self.pilot: OfferCurrent | SetStateF = SetStateF()  # the pilot driver boots in F
        self.f_since: float | None = None
        self.f_min_s = 0.0  # the F pulse asked for when our F began
        self.f_ended_at = -math.inf
        self.tx_id: str | None = None
        self.tx_parent: str | None = None
        self.status = self.machine.status
        self.commands: list[Command] = []
        self.requested: list[str] = []
        self.reservation: Reserved | None = None  # accepted and not yet ended
        # What the world said, from the events alone.
        self.last_cp: CpState | None = None  # the last reading that could see the car
        self.cp_fault = False  # the car was last seen in E or F
        self.verified = False  # a diode verdict for the car now seen (PilotVerified)
        self.raised: set[FaultKind] = set()
        self.f_due_end = -math.inf  # an F pulse may last until then (hold after a new fault)
        self.wanted_available = True
        self.available = True  # a change waits for the running transaction to end
        self.cable_a: float | None = None
        self.limits_a: dict[LimitSource, float] = {}  # each source's limit, set on its own
        self.accepted_ids: set[str] = set()  # casefolded ids the world authorized
        self.tapped_in_session: set[str] = set()  # casefolded cards tapped while a tx ran
        self.said: set[tuple[str, str | None]] = set()  # (id, parent) the world accepted
        self.named: set[tuple[str, str | None]] = set()  # (id, parent) in any answer
        # Reach figures, reported with --hypothesis-show-statistics.
        self.events = 0
        self.events_while_closed = 0
        self.ever_closed = False

    # --- the oracle ---------------------------------------------------------------------

    @property
    def faults(self) -> set[FaultKind]:
        """The active faults: raised by drivers, and the CP error of a car seen in E or F."""
        return self.raised | ({FaultKind.CP_ERROR} if self.cp_fault else set())

    def car_asks_for_energy(self) -> bool:
        return self.last_cp is CpState.C or (self.last_cp is CpState.D and self.config.ventilation)

    def offer_allowed_a(self) -> float:
        """min(connector, cable, every source's limit); an unrated socket cable allows nothing;
        0 below 6 A."""
        cable = self.cable_a
        if cable is None:
            cable = 0.0 if self.config.cable_rating_required else math.inf
        offer = min(self.config.max_current_a, cable, *self.limits_a.values())
        return offer if offer >= MIN_OFFER_A else 0.0

    def why_not_close(self) -> list[str]:
        """Every condition of closing that does not hold now (empty: the contactor is due)."""
        pilot = self.pilot
        offering = isinstance(pilot, OfferCurrent) and pilot.current_a >= MIN_OFFER_A
        checks = {
            f"car not asking (seen {self.last_cp}, ventilation {self.config.ventilation})": (
                self.car_asks_for_energy()
            ),
            "no transaction": self.tx_id is not None,
            "unavailable": self.available,
            f"faults {sorted(self.faults)}": not self.faults,
            f"pilot {pilot}": offering,
            "diode not checked": self.verified,
        }
        return [why for why, holds in checks.items() if not holds]

    def check_contactor(self) -> None:
        """Closed exactly when every condition holds: safety and liveness in one."""
        blocked = self.why_not_close()
        if self.closed:
            assert not blocked, f"contactor closed although: {blocked}"
        else:
            assert blocked, "every condition of closing holds, yet the contactor is open"
        assert self.machine.contactor_closed == self.closed

    def check_pilot(self) -> None:
        """State F while it must be and no longer; otherwise exactly the offer due."""
        if self.faults & HOLD_F:
            assert isinstance(self.pilot, SetStateF), f"{sorted(self.faults)} without F"
        elif isinstance(self.pilot, SetStateF):
            # The pilot driver boots in F; the machine's first event ends that F.
            booting = self.events == 0
            assert booting or self.now < self.f_due_end, "state F held past its time"
        else:
            car = self.last_cp in CAR_PRESENT and (
                self.last_cp is not CpState.D or self.config.ventilation
            )
            due = car and self.tx_id is not None and not self.faults
            expected = OfferCurrent(self.offer_allowed_a() if due else 0.0)
            assert self.pilot == expected, f"pilot {self.pilot}, due {expected}"

    def check_model_and_machine_agree(self) -> None:
        machine = self.machine
        assert machine.transaction_id_tag == self.tx_id
        assert machine.pilot.command() == self.pilot
        assert machine.status == self.status
        assert machine.cp_state == self.last_cp
        assert machine.active_faults == self.faults
        assert machine.available == self.available
        if self.closed:
            assert machine.status.status is ConnectorStatus.CHARGING
        assert (machine.status.status is ConnectorStatus.FAULTED) == bool(self.faults)

    # --- sending events and checking the commands ---------------------------------------

    def send(self, event: Event, step_s: float) -> None:
        """Send one event and check everything the oracle knows right after it."""
        closed_before = self.closed
        pilot_was_f = isinstance(self.pilot, SetStateF)
        tx_before = self.tx_id
        faults_before = self.faults
        charging_before = closed_before or self.last_cp in (CpState.C, CpState.D)
        self.now += step_s
        self.learn(event, pilot_was_f)
        self.commands = self.machine.handle(event, self.now)
        self.check_order(self.commands)
        for command in self.commands:
            self.follow(command)
            self.follow_reservation(command, event)
        if isinstance(self.pilot, SetStateF):
            self.last_cp = None  # the car is hidden behind our -12 V
            self.verified = False
        if tx_before is None or self.tx_id is None:
            self.available = self.wanted_available
        if isinstance(event, FaultRaised) and closed_before:
            assert self.commands[0] == OpenContactor(), "a fault must open the contactor first"
        new = self.faults - faults_before
        pulse = charging_before or bool(new - NO_F_UNLESS_CHARGING)
        if new and pulse and self.config.state_f_after_fault_s > 0:
            assert isinstance(self.pilot, SetStateF), f"no F pulse on {sorted(new)}"
        if isinstance(event, IdPresented) and self.tx_id is not None:
            self.tapped_in_session.add(event.id_tag.casefold())
        self.events += 1
        self.events_while_closed += closed_before
        self.ever_closed |= self.closed
        self.check_contactor()
        self.check_pilot()
        self.check_model_and_machine_agree()

    def check_order(self, commands: list[Command]) -> None:
        kinds = [type(c) for c in commands]
        assert kinds.count(OpenContactor) + kinds.count(CloseContactor) <= 1
        if OpenContactor in kinds:
            assert kinds.index(OpenContactor) == 0, f"OpenContactor not first: {commands}"
        tail = [k for k in kinds if k is not StatusChanged]
        if CloseContactor in kinds:
            assert tail[-1] is CloseContactor, f"CloseContactor not last: {commands}"
        if StatusChanged in kinds:
            assert kinds.index(StatusChanged) == len(kinds) - 1
        # Meter start before any energy; power off before the meter stop.
        offers = [i for i, c in enumerate(commands) if isinstance(c, OfferCurrent) and c.current_a]
        closes = [i for i, c in enumerate(commands) if isinstance(c, CloseContactor)]
        offs = [i for i, c in enumerate(commands) if c in (OfferCurrent(0.0), SetStateF())]
        if StartTransaction in kinds:
            assert all(i > kinds.index(StartTransaction) for i in offers + closes), commands
        if StopTransaction in kinds:
            assert all(i < kinds.index(StopTransaction) for i in offs), commands

    def follow(self, command: Command) -> None:
        """Play the command on the model hardware, checking it makes sense there."""
        match command:
            case OpenContactor():
                assert self.closed
                self.closed = False
            case CloseContactor():
                assert not self.closed
                self.closed = True
            case OfferCurrent(current_a):
                assert current_a == 0.0 or current_a >= MIN_OFFER_A
                assert current_a <= self.offer_allowed_a(), "offer above connector/cable/limit"
                assert not (self.closed and current_a < MIN_OFFER_A), "PWM off under load"
                if self.f_since is not None:
                    assert self.now >= self.f_since + self.f_min_s - 1e-9, "F left too early"
                if isinstance(self.pilot, SetStateF):
                    self.f_ended_at = self.now
                self.f_since = None
                self.pilot = command
            case SetStateF():
                assert not self.closed, "state F with the contactor closed"
                self.f_since = self.now
                self.f_min_s = self.config.state_f_after_fault_s
                self.pilot = command
            case StartTransaction(id_tag, parent_id):
                assert self.tx_id is None, "two starts without a stop"
                free = self.config.free_charging_id
                assert id_tag.casefold() in self.accepted_ids or id_tag == free, (
                    f"{id_tag} started a transaction nobody authorized"
                )
                if parent_id is not None:
                    assert (id_tag.casefold(), parent_id.casefold()) in self.said
                self.tx_id, self.tx_parent = id_tag, parent_id
            case StopTransaction(_, id_tag):
                assert self.tx_id is not None, "stop without a start"
                if id_tag != self.tx_id:  # a card of the same parent, tapped, as an answer said
                    parent = self.tx_parent
                    assert parent is not None and (id_tag.casefold(), parent.casefold()) in (
                        self.named
                    ), f"{id_tag} stopped the session of {self.tx_id} ({parent})"
                    assert id_tag.casefold() in self.tapped_in_session, f"{id_tag} never tapped"
                self.tx_id = None
                self.tapped_in_session = set()
            case RequestAuthorization(id_tag):
                self.requested.append(id_tag)
            case StatusChanged():
                assert command != self.status, "a status reported twice"
                self.status = command

    def follow_reservation(self, command: Command, event: Event) -> None:
        """A reserved connector starts a session only for its id or an id of its parent."""
        res = self.reservation
        match command:
            case ReservationAnswered(reservation_id, outcome):
                assert isinstance(event, Reserved) and event.reservation_id == reservation_id
                if outcome is ReservationOutcome.ACCEPTED:
                    assert res is None or res.reservation_id == reservation_id, "two reservations"
                    self.reservation = event
            case ReservationEnded(reservation_id, reason):
                assert res is not None and res.reservation_id == reservation_id
                if reason is ReservationEnd.EXPIRED:
                    assert self.now >= res.expires_at, "a reservation ended early"
                self.reservation = None
            case StartTransaction(id_tag, parent_id, reservation_id):
                if res is None:
                    assert reservation_id is None, "a reservation id out of nowhere"
                    return
                assert self.now < res.expires_at, "an expired reservation was used"
                by_id = id_tag.casefold() == res.id_tag.casefold()
                by_parent = (
                    res.parent_id is not None
                    and parent_id is not None
                    and parent_id.casefold() == res.parent_id.casefold()
                    and (id_tag.casefold(), parent_id.casefold()) in self.said
                )
                assert by_id or by_parent, f"{id_tag} ({parent_id}) started on {res}"
                assert reservation_id == res.reservation_id
                assert ReservationEnded(reservation_id, ReservationEnd.USED) in self.commands

    def learn(self, event: Event, pilot_was_f: bool) -> None:
        """Track the inputs from the specification, before the machine hears them."""
        match event:
            case CpChanged(state):
                # Behind our own -12 V the car cannot be seen, and an F read within 1 s
                # after it is our own F seen late: neither says where the car is.
                echo = state is CpState.F and self.now - self.f_ended_at < F_ECHO_S
                if pilot_was_f or echo:
                    self.last_cp = None
                else:
                    self.last_cp = state
                    car_error = state in (CpState.E, CpState.F)
                    if car_error and not self.cp_fault:
                        self.fault_appears()
                    self.cp_fault = car_error
                if self.last_cp not in CAR_PRESENT:
                    self.verified = False  # gone, broken or hidden: check the next car
                if self.last_cp is CpState.A:
                    self.raised -= CLEARS_ON_UNPLUG - LATCHING
            case PilotVerified():
                if self.last_cp in CAR_PRESENT and not pilot_was_f:
                    self.verified = True
            case FaultRaised(kind):
                self.raised.add(kind)
                self.fault_appears()
                if kind is FaultKind.DIODE_FAULT:
                    self.verified = False  # judged afresh when the PWM runs again
            case FaultCleared(kind):
                if kind not in LATCHING:
                    self.raised.discard(kind)
            case AvailabilityChanged(available):
                self.wanted_available = available
            case CableRatingChanged(current_a):
                self.cable_a = current_a
            case LimitChanged(current_a, source):
                if current_a is None:
                    self.limits_a.pop(source, None)  # that source's limit only
                else:
                    self.limits_a[source] = current_a
            case SettingsChanged(new):
                self.config = new
            case Authorized(id_tag, accepted, parent_id):
                pair = (id_tag.casefold(), _fold(parent_id))
                self.named.add(pair)
                if accepted:
                    self.said.add(pair)
                    self.accepted_ids.add(id_tag.casefold())
            case RemoteStart(id_tag, True):
                self.accepted_ids.add(id_tag.casefold())

    def fault_appears(self) -> None:
        """A new fault may start (or stretch) an F pulse of the configured length."""
        self.f_due_end = max(self.f_due_end, self.now + self.config.state_f_after_fault_s)

    # --- the configuration --------------------------------------------------------------

    @initialize(
        max_current_a=st.sampled_from([6.0, 16.0, 32.0]),
        free=st.sampled_from([None, None, "FREE"]),
        stop_on_ev_disconnect=st.booleans(),
        ventilation=st.booleans(),
        socket=st.booleans(),
        f_hold_s=F_HOLDS_S,
        charging=st.sampled_from([True, True, True, False]),
        session=SESSIONS,
    )
    def configure(
        self,
        max_current_a: float,
        free: str | None,
        stop_on_ev_disconnect: bool,
        ventilation: bool,
        socket: bool,
        f_hold_s: float,
        charging: bool,
        session: Session,
    ) -> None:
        """A new connector of a random kind (F pulse or none, ventilated, socket or tethered),
        most often charging already when the rest of the random world begins."""
        self.config = _settings(
            max_current_a=max_current_a,
            free=free,
            stop_on_ev_disconnect=stop_on_ev_disconnect,
            ventilation=ventilation,
            socket=socket,
            f_hold_s=f_hold_s,
        )
        self.machine = ConnectorMachine(self.config)
        event(f"config: F pulse {f_hold_s} s")
        event(f"config: {'socket' if socket else 'tethered'}")
        event(f"config: ventilation {ventilation}")
        if charging:
            self.play(session)

    @rule(
        max_current_a=st.sampled_from([6.0, 16.0, 32.0]),
        free=st.sampled_from([None, "FREE"]),
        stop_on_ev_disconnect=st.booleans(),
        ventilation=st.booleans(),
        socket=st.booleans(),
        f_hold_s=F_HOLDS_S,
        step_s=STEP_S,
    )
    def reconfigure(
        self,
        max_current_a: float,
        free: str | None,
        stop_on_ev_disconnect: bool,
        ventilation: bool,
        socket: bool,
        f_hold_s: float,
        step_s: float,
    ) -> None:
        new = _settings(
            max_current_a=max_current_a,
            free=free,
            stop_on_ev_disconnect=stop_on_ev_disconnect,
            ventilation=ventilation,
            socket=socket,
            f_hold_s=f_hold_s,
        )
        self.send(SettingsChanged(new), step_s)

    # --- the random world ----------------------------------------------------------------

    @rule(state=st.sampled_from(CpState), step_s=STEP_S)
    def car(self, state: CpState, step_s: float) -> None:
        self.send(CpChanged(state), step_s)

    @rule(step_s=STEP_S)
    def diode_checked(self, step_s: float) -> None:
        self.send(PilotVerified(), step_s)

    @rule(rating_a=st.sampled_from([None, 13.0, 20.0, 32.0, 63.0]), step_s=STEP_S)
    def cable(self, rating_a: float | None, step_s: float) -> None:
        self.send(CableRatingChanged(rating_a), step_s)

    @rule(id_tag=IDS, step_s=STEP_S)
    def tap(self, id_tag: str, step_s: float) -> None:
        self.send(IdPresented(id_tag), step_s)

    @precondition(lambda self: bool(self.requested))
    @rule(accepted=st.booleans(), parent_id=PARENTS, step_s=STEP_S)
    def answer_last_request(self, accepted: bool, parent_id: str | None, step_s: float) -> None:
        self.send(Authorized(self.requested[-1], accepted, parent_id), step_s)

    @rule(id_tag=IDS, accepted=st.booleans(), parent_id=PARENTS, step_s=STEP_S)
    def stray_answer(
        self, id_tag: str, accepted: bool, parent_id: str | None, step_s: float
    ) -> None:
        self.send(Authorized(id_tag, accepted, parent_id), step_s)

    @rule(id_tag=IDS, authorized=st.booleans(), step_s=STEP_S)
    def remote_start(self, id_tag: str, authorized: bool, step_s: float) -> None:
        self.send(RemoteStart(id_tag, authorized), step_s)

    @rule(
        reservation_id=st.sampled_from([1, 2]),
        id_tag=IDS,
        parent_id=PARENTS,
        duration_s=RESERVATION_S,
        step_s=STEP_S,
    )
    def reserve(
        self,
        reservation_id: int,
        id_tag: str,
        parent_id: str | None,
        duration_s: float,
        step_s: float,
    ) -> None:
        expires_at = self.now + step_s + duration_s
        self.send(Reserved(reservation_id, id_tag, parent_id, expires_at), step_s)

    @rule(reservation_id=st.sampled_from([1, 2]), step_s=STEP_S)
    def cancel_reservation(self, reservation_id: int, step_s: float) -> None:
        self.send(ReservationCancelled(reservation_id), step_s)

    @rule(reason=st.sampled_from(StopReason), step_s=STEP_S)
    def stop(self, reason: StopReason, step_s: float) -> None:
        self.send(StopRequested(reason), step_s)

    @rule(kind=st.sampled_from(NON_LATCHING), step_s=STEP_S)
    def fault(self, kind: FaultKind, step_s: float) -> None:
        self.send(FaultRaised(kind), step_s)

    @rule(dice=st.integers(0, 15), step_s=STEP_S)
    def weld(self, dice: int, step_s: float) -> None:
        """The weld latches for good, so it is drawn rarely to leave room for the rest."""
        if dice == 0:
            self.send(FaultRaised(FaultKind.CONTACTOR_WELDED), step_s)

    @rule(kind=st.sampled_from(FaultKind), step_s=STEP_S)
    def fault_clears(self, kind: FaultKind, step_s: float) -> None:
        self.send(FaultCleared(kind), step_s)

    @precondition(lambda self: bool(self.raised))
    @rule(data=st.data(), step_s=STEP_S)
    def active_fault_clears(self, data: st.DataObject, step_s: float) -> None:
        kind = data.draw(st.sampled_from(sorted(self.raised)))
        self.send(FaultCleared(kind), step_s)

    @rule(available=st.booleans(), step_s=STEP_S)
    def availability(self, available: bool, step_s: float) -> None:
        self.send(AvailabilityChanged(available), step_s)

    @rule(limit_a=CURRENTS, source=SOURCES, step_s=STEP_S)
    def limit(self, limit_a: float | None, source: LimitSource, step_s: float) -> None:
        self.send(limit_event(limit_a, source), step_s)

    @rule(step_s=STEP_S)
    def time_passes(self, step_s: float) -> None:
        self.send(Tick(), step_s)

    # --- reach: sessions that close the contactor, hazards that meet it -----------------

    def recover(self) -> None:
        """What a mended site does before a new session: faults gone, car away, no limits."""
        for kind in sorted(self.raised):
            self.send(FaultCleared(kind), 0.0)
        self.send(AvailabilityChanged(True), 0.0)
        for source in list(self.limits_a):
            self.send(limit_event(None, source), 0.0)
        self.send(CpChanged(CpState.A), 0.0)
        self.send(Tick(), max(self.config.state_f_after_fault_s, F_ECHO_S))

    def play(self, session: Session) -> None:
        """A whole session, so that random events often meet a charging connector.

        The car may arrive already asking (C1: it must wait for the diode check), and a
        hazard may strike at any step of the way, while the contactor is about to close.
        """
        if session.recover:
            self.recover()
        steps: list[tuple[Event, float]] = [
            (CableRatingChanged(32.0), session.step_s),
            (CpChanged(session.arrive_in), 0.1),
            (IdPresented(session.id_tag), 0.5),
            (Authorized(session.id_tag, True, session.parent_id), 0.2),
            (PilotVerified(), 0.03),
            (CpChanged(session.ask_in), 0.5),
        ]
        if session.hazard_at is not None:
            steps.insert(session.hazard_at, (session.hazard, 0.01))
            event(f"hazard while closing: {type(session.hazard).__name__}")
        steps += [(sent, 1.0) for sent in session.then]
        for sent, after_s in steps:
            self.send(sent, after_s)

    @rule(session=SESSIONS)
    def driver_arrives_and_charges(self, session: Session) -> None:
        self.play(session)

    @precondition(lambda self: not self.closed)
    @rule(session=SESSIONS)
    def next_driver_charges(self, session: Session) -> None:
        """The same again, drawn only while open: weights the world towards charging."""
        self.play(session)

    def strike(self, hazard: Event, step_s: float) -> None:
        """A hazard thrown at a closed contactor: it must open in that very call."""
        name = type(hazard).__name__
        if isinstance(hazard, FaultRaised):
            name = f"fault {hazard.kind}"
        elif isinstance(hazard, CpChanged):
            name = f"car to {hazard.state}"
        event(f"hazard while closed: {name}")
        self.send(hazard, step_s)

    @precondition(lambda self: self.closed)
    @rule(hazard=hazards(weld=True), step_s=STEP_S)
    def hazard_while_closed(self, hazard: Event, step_s: float) -> None:
        self.strike(hazard, step_s)

    @precondition(lambda self: self.closed)
    @rule(kind=st.sampled_from(NON_LATCHING * 3 + [FaultKind.CONTACTOR_WELDED]), step_s=STEP_S)
    def fault_while_closed(self, kind: FaultKind, step_s: float) -> None:
        self.strike(FaultRaised(kind), step_s)

    @precondition(lambda self: self.closed)
    @rule(kind=st.sampled_from(NON_LATCHING), lasts_s=st.sampled_from([0.0, 0.1, 0.3, 2.0]))
    def fault_comes_and_goes_while_closed(self, kind: FaultKind, lasts_s: float) -> None:
        """A transient fault while charging: whether the contactor may close again right
        after it clears depends on the kind (a diode fault needs a fresh diode check)."""
        self.strike(FaultRaised(kind), 0.02)
        self.send(FaultCleared(kind), lasts_s)

    @precondition(lambda self: self.closed)
    @rule(state=st.sampled_from([CpState.A, CpState.B, CpState.D, CpState.E, CpState.F]))
    def car_moves_while_closed(self, state: CpState) -> None:
        """Unplug, pause (C->B), D, a CP short or an F: only D with ventilation keeps it."""
        self.strike(CpChanged(state), 0.02)

    @precondition(lambda self: self.closed)
    @rule(
        benign=BENIGN,
        step_s=STEP_S,
    )
    def life_goes_on_while_closed(self, benign: Event, step_s: float) -> None:
        """What may meet a charging car without a hazard: the oracle says whether it opens."""
        self.send(benign, step_s)

    @precondition(lambda self: self.pilot == SetStateF() and not (self.faults & HOLD_F))
    @rule(step_s=STEP_S)
    def f_pulse_runs_out(self, step_s: float) -> None:
        """Ticks around the end of an F pulse (0.3 s) and the F echo window (1 s)."""
        self.send(Tick(), step_s)

    # --- after every step too (for the last event of a rule, this repeats send's checks) -

    @invariant()
    def the_oracle_holds(self) -> None:
        self.check_contactor()
        self.check_pilot()

    @invariant()
    def a_reservation_holds_until_it_expires_and_shows(self) -> None:
        machine = self.machine
        assert machine.reservation == self.reservation
        if self.reservation is not None:
            assert self.now < self.reservation.expires_at, "an expired reservation holds"
            assert machine.transaction_id_tag is None
        if machine.status.status is ConnectorStatus.RESERVED:
            assert self.reservation is not None and not machine.active_faults

    def teardown(self) -> None:
        event(f"closed the contactor: {self.ever_closed}")
        if self.events:
            share = 10 * (10 * self.events_while_closed // self.events)
            event(f"share of events while closed: {share}-{share + 9} %")


RandomConnectorLife.TestCase.settings = settings(
    max_examples=3000 if LONG else 300,
    stateful_step_count=80 if LONG else 40,
    deadline=None,
    derandomize=not LONG,
    database=DirectoryBasedExampleDatabase(Path(".hypothesis") / "proof") if LONG else None,
    print_blob=True,
    # The explain phase (which parts of a failing example matter) took a minute after a
    # 14 s shrink of the diode counterexample: the shrunk steps are explanation enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRandomEventSequencesKeepTheSafetyRules = pytest.mark.timeout(TIMEOUT_S)(
    RandomConnectorLife.TestCase
)


# --- the safety function alone, on every input ---------------------------------------------


def rules_allow_close(
    cp: CpState | None,
    authorized: bool,
    available: bool,
    faults: frozenset[FaultKind],
    offered_a: float,
    verified: bool,
    ventilation: bool,
    locked: bool = True,
) -> bool:
    """design.md, "State machines", as a conjunction: the reference for the safety function
    (``locked``: a socket's latch is engaged, IEC 61851-1; True where there is no lock)."""
    asks = cp is CpState.C or (cp is CpState.D and ventilation)
    offering = offered_a >= MIN_OFFER_A
    return asks and authorized and available and not faults and offering and verified and locked


def test_the_safety_function_is_exactly_the_rules_on_every_input() -> None:
    """Every combination, the 6 A edge included, not only those the machine can reach.

    Inside the machine a fault, a missing transaction or a refused D also switch the PWM off,
    so a safety function that ignored one of them would not show in the random lives above
    (the offer condition covers for it): this pins each condition of the function itself.
    """
    cps = [None, *CpState]
    faults = [frozenset(), frozenset({FaultKind.READER_FAILURE}), frozenset(FaultKind)]
    offers_a = [0.0, 5.99, MIN_OFFER_A, 6.01, 80.0]
    flags = [False, True]
    combinations = itertools.product(cps, flags, flags, faults, offers_a, flags, flags, flags)
    for cp, authorized, available, active, offered_a, verified, ventilation, locked in combinations:
        expected = rules_allow_close(
            cp, authorized, available, active, offered_a, verified, ventilation, locked
        )
        got = may_close_contactor(
            cp,
            authorized,
            available,
            active,
            offered_a,
            pilot_verified=verified,
            state_d_allowed=ventilation,
            lock_engaged=locked,
        )
        inputs = (
            cp, authorized, available, sorted(active), offered_a, verified, ventilation, locked
        )  # fmt: skip
        assert got == expected, f"may_close_contactor{inputs} is {got}"
