"""Random event sequences (with random time steps) never break the connector's safety rules.

Hypothesis plays a car, a card reader, drivers and a CSMS at random against one machine.
After every step the test checks the machine against its own safety function, and against a
model built only from the commands the machine gave and the events it received (what the
hardware would have done), so the two cannot agree by sharing a bug.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller.connector import ConnectorMachine
from controller.connector_safety import FAULT_POLICY
from controller.connector_types import (
    MIN_OFFER_A,
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
from drivers.base import CpState
from drivers.errors import FaultKind

F_HOLD_S = 0.3
IDS = st.sampled_from(["04A1B2C3", "04a1b2c3", "DEADBEEF", "CAFE0001"])
PARENTS = st.sampled_from([None, "FAMILY", "family", "FLEET"])
# Steps around the interesting times: none, debounce-sized, the F hold edge, the
# connection timeout edge, and long waits.
STEP_S = st.one_of(
    st.just(0.0),
    st.floats(0.0, 0.5, allow_nan=False),
    st.sampled_from([0.29, 0.3, 0.31, 1.0, 59.9, 60.0, 61.0, 600.0]),
)
# The weld latches for good, so it is drawn rarely to leave room for everything else.
NON_LATCHING = [kind for kind in FaultKind if not FAULT_POLICY[kind].latches]
CURRENTS = st.one_of(st.none(), st.floats(0.0, 80.0, allow_nan=False))
RESERVATION_S = st.sampled_from([0.0, 0.3, 30.0, 60.0, 600.0])


def _fold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


class RandomConnectorLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.max_current_a = 32.0
        self.machine = ConnectorMachine(ConnectorSettings(connection_timeout_s=60.0))
        self.now = 0.0
        # The model: what the hardware and the CSMS saw, from the commands alone.
        self.closed = False
        self.pilot: OfferCurrent | SetStateF = SetStateF()  # the pilot driver boots in F
        self.f_since: float | None = None
        self.f_ended_at = -1e9
        self.tx_id: str | None = None
        self.tx_parent: str | None = None
        self.last_cp: CpState | None = None  # the last reading that could see the car
        self.verified = False  # a diode verdict for the car now seen (PilotVerified)
        self.raised: set[FaultKind] = set()
        self.welded = False
        self.requested: list[str] = []
        self.status = self.machine.status
        self.commands: list[Command] = []
        self.reservation: Reserved | None = None  # accepted and not yet ended
        self.said: set[tuple[str, str | None]] = set()  # (id, parent) the world accepted
        self.named: set[tuple[str, str | None]] = set()  # (id, parent) in any answer

    # --- sending events and checking the commands ---------------------------------------

    def send(self, event: Event, step_s: float) -> None:
        closed_before = self.closed
        pilot_was_f = isinstance(self.pilot, SetStateF)
        self.now += step_s
        if isinstance(event, Authorized):
            pair = (event.id_tag.casefold(), _fold(event.parent_id))
            self.named.add(pair)
            if event.accepted:
                self.said.add(pair)
        self.commands = self.machine.handle(event, self.now)
        self.check_order(self.commands)
        for command in self.commands:
            self.follow(command)
            self.follow_reservation(command, event)
        self.learn(event, pilot_was_f)
        if isinstance(self.pilot, SetStateF):
            self.last_cp = None
            self.verified = False
        if isinstance(event, FaultRaised) and closed_before:
            assert self.commands[0] == OpenContactor(), "a fault must open the contactor first"
        if CloseContactor() in self.commands:
            assert self.verified, "contactor closed before the EV's diode was checked"
            assert not isinstance(event, FaultRaised)
            assert not self.machine.active_faults and not self.raised

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
                assert not self.closed and not self.welded
                assert isinstance(self.pilot, OfferCurrent)
                assert self.pilot.current_a >= MIN_OFFER_A
                self.closed = True
            case OfferCurrent(current_a):
                assert current_a == 0.0 or MIN_OFFER_A <= current_a <= self.max_current_a
                assert not (self.closed and current_a < MIN_OFFER_A), "PWM off under load"
                assert not self.welded, "a weld keeps state F for good"
                if self.f_since is not None:
                    assert self.now >= self.f_since + F_HOLD_S - 1e-9, "F left too early"
                if isinstance(self.pilot, SetStateF):
                    self.f_ended_at = self.now
                self.f_since = None
                self.pilot = command
            case SetStateF():
                assert not self.closed, "state F with the contactor closed"
                self.f_since = self.now
                self.pilot = command
            case StartTransaction(id_tag, parent_id):
                assert self.tx_id is None, "two starts without a stop"
                if parent_id is not None:
                    assert (id_tag.casefold(), parent_id.casefold()) in self.said
                self.tx_id, self.tx_parent = id_tag, parent_id
            case StopTransaction(_, id_tag):
                assert self.tx_id is not None, "stop without a start"
                if id_tag != self.tx_id:  # a card of the same parent, as an answer said
                    parent = self.tx_parent
                    assert parent is not None and (id_tag.casefold(), parent.casefold()) in (
                        self.named
                    ), f"{id_tag} stopped the session of {self.tx_id} ({parent})"
                self.tx_id = None
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
        """Track the inputs the way a reviewer would, without the machine's code."""
        match event:
            case CpChanged(state):
                # Behind our own -12 V the car cannot be seen, and an F read within 1 s
                # after it is our own F seen late: neither says where the car is.
                echo = state is CpState.F and self.now - self.f_ended_at < 1.0
                self.last_cp = None if pilot_was_f or echo else state
                if self.last_cp not in (CpState.B, CpState.C, CpState.D):
                    self.verified = False
                if state is CpState.A:  # sound: the machine may clear less, never more
                    self.raised = {k for k in self.raised if not FAULT_POLICY[k].clears_on_unplug}
            case PilotVerified():
                if self.last_cp in (CpState.B, CpState.C, CpState.D) and not pilot_was_f:
                    self.verified = True
            case FaultRaised(kind):
                self.raised.add(kind)
                self.welded |= kind is FaultKind.CONTACTOR_WELDED
                if kind is FaultKind.DIODE_FAULT:
                    self.verified = False
            case FaultCleared(kind):
                if kind is not FaultKind.CONTACTOR_WELDED:
                    self.raised.discard(kind)

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

    @rule(id_tag=IDS, parent_id=PARENTS, requesting=st.booleans(), step_s=STEP_S)
    def driver_arrives_and_charges(
        self, id_tag: str, parent_id: str | None, requesting: bool, step_s: float
    ) -> None:
        """The usual session, so that random events often meet a charging connector."""
        self.send(CableRatingChanged(32.0), step_s)
        self.send(CpChanged(CpState.B), 0.1)
        self.send(IdPresented(id_tag), 0.5)
        self.send(Authorized(id_tag, True, parent_id), 0.2)
        self.send(PilotVerified(), 0.03)
        if requesting:
            self.send(CpChanged(CpState.C), 0.5)

    @rule(
        reserved_for=IDS,
        reserved_parent=PARENTS,
        id_tag=IDS,
        parent_id=PARENTS,
        remote=st.booleans(),
        step_s=STEP_S,
    )
    def someone_arrives_at_a_reserved_connector(
        self,
        reserved_for: str,
        reserved_parent: str | None,
        id_tag: str,
        parent_id: str | None,
        remote: bool,
        step_s: float,
    ) -> None:
        """A reservation on a free connector, then a car and a card (or a remote start)."""
        self.send(CpChanged(CpState.A), step_s)
        self.send(Reserved(2, reserved_for, reserved_parent, self.now + 600.0), 0.1)
        self.send(CableRatingChanged(32.0), 0.1)
        self.send(CpChanged(CpState.B), 0.1)
        self.send(RemoteStart(id_tag, True) if remote else IdPresented(id_tag), 0.5)
        self.send(Authorized(id_tag, True, parent_id), 0.2)

    @rule(available=st.booleans(), step_s=STEP_S)
    def availability(self, available: bool, step_s: float) -> None:
        self.send(AvailabilityChanged(available), step_s)

    @rule(limit_a=CURRENTS, step_s=STEP_S)
    def limit(self, limit_a: float | None, step_s: float) -> None:
        self.send(LimitChanged(limit_a), step_s)

    @rule(step_s=STEP_S)
    def time_passes(self, step_s: float) -> None:
        self.send(Tick(), step_s)

    @rule(
        max_current_a=st.sampled_from([6.0, 16.0, 32.0]),
        free=st.sampled_from([None, "FREE"]),
        stop_on_ev_disconnect=st.booleans(),
        ventilation=st.booleans(),
        cable_rating_required=st.booleans(),
        step_s=STEP_S,
    )
    def reconfigure(
        self,
        max_current_a: float,
        free: str | None,
        stop_on_ev_disconnect: bool,
        ventilation: bool,
        cable_rating_required: bool,
        step_s: float,
    ) -> None:
        self.max_current_a = max_current_a
        new = ConnectorSettings(
            max_current_a=max_current_a,
            free_charging_id=free,
            stop_on_ev_disconnect=stop_on_ev_disconnect,
            connection_timeout_s=60.0,
            state_f_after_fault_s=F_HOLD_S,
            cable_rating_required=cable_rating_required,
            ventilation=ventilation,
        )
        self.send(SettingsChanged(new), step_s)

    # --- what must hold after every step -------------------------------------------------

    @invariant()
    def contactor_closed_only_when_the_safety_function_allows(self) -> None:
        machine = self.machine
        assert machine.contactor_closed == self.closed
        if machine.contactor_closed:
            assert machine.may_close()
            assert self.last_cp in (CpState.C, CpState.D)
            assert self.tx_id is not None and not self.raised and not self.welded
            assert self.verified
            assert isinstance(self.pilot, OfferCurrent)
            assert self.pilot.current_a >= MIN_OFFER_A
            assert machine.status.status is ConnectorStatus.CHARGING

    @invariant()
    def no_current_is_offered_while_a_fault_is_active(self) -> None:
        if self.machine.active_faults or self.raised:
            assert self.pilot in (OfferCurrent(0.0), SetStateF())

    @invariant()
    def a_reservation_holds_until_it_expires_and_shows(self) -> None:
        machine = self.machine
        assert machine.reservation == self.reservation
        if self.reservation is not None:
            assert self.now < self.reservation.expires_at, "an expired reservation holds"
            assert machine.transaction_id_tag is None
        if machine.status.status is ConnectorStatus.RESERVED:
            assert self.reservation is not None and not machine.active_faults

    @invariant()
    def model_and_machine_agree(self) -> None:
        machine = self.machine
        assert machine.transaction_id_tag == self.tx_id
        assert machine.pilot.command() == self.pilot
        assert machine.status == self.status
        assert machine.cp_state == self.last_cp
        assert self.raised <= machine.active_faults
        faulted = machine.status.status is ConnectorStatus.FAULTED
        assert faulted == bool(machine.active_faults)


RandomConnectorLife.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRandomEventSequencesKeepTheSafetyRules = RandomConnectorLife.TestCase
