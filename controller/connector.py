"""The connector state machine: the safety heart of the charger, one instance per connector.

It combines what the drivers and the CSMS say (CP state, cable rating, presented ids and
their authorization, availability, faults, the current limit of each source:
:mod:`controller.limits`) and decides what the
hardware and the OCPP layer must do (contactor, PWM or state F, transaction start and
stop, status). It is pure: no I/O, no clock, no asyncio. Time arrives as ``now``, seconds
of a monotonic clock, with every event; :class:`Tick` lets timeouts fire between events.

How the supervisor uses it, on the loop thread::

    for command in machine.handle(event, time.monotonic()):
        execute(command)   # in this order: an OpenContactor always comes first

Rules it keeps (tests/test_connector_properties.py checks them on random event sequences):

- The contactor is closed only while :func:`may_close_contactor` holds for the machine's
  current inputs; every ``CloseContactor`` comes from that one decision, and when it stops
  holding, ``OpenContactor`` is the first command of that very call.
- The PWM only changes up after the transaction commands and before the contactor closes,
  and only changes down after the contactor opened.
- Transaction starts and stops strictly alternate.

Decisions worth knowing:

- A fault opens the contactor at once; what the pilot then shows follows
  :data:`controller.connector_safety.FAULT_POLICY` (state F held, an F pulse, or PWM off),
  and state F lasts at least ``state_f_after_fault_s``. A fault during a transaction
  suspends it but does not end it: whether to stop it is OCPP policy, so the supervisor
  sends :class:`StopRequested` if it wants to. A welded contactor latches: no
  :class:`FaultCleared` ends it, only a new machine (after a repair and a restart).
- While the machine drives state F the car cannot be seen: the CP state becomes unknown
  and readings are ignored until F ends (and an F reading up to :data:`F_ECHO_S` later,
  our own F debounced late). The pilot sensor reports the car's state when F ends (its
  last reading was our own -12 V), and only then may the PWM resume.
- The contactor waits for the pilot sensor's diode verdict (:class:`PilotVerified`) after
  the car arrived: a car already in C when the PWM starts gets mains only once its diode
  was seen, never on the PWM alone.
- Stopping, pausing (limit below 6 A) and faults open the contactor in the same call,
  without the up to 6 s that IEC 61851-1 (seq. 10.2) lets the EV take to stop drawing
  after the PWM stops: one invariant, no timer on the safety path; contactors are rated to
  break their load current.
- Timeouts (the F hold, ConnectionTimeOut) fire on any event; the supervisor sends
  :class:`Tick` at :attr:`ConnectorMachine.next_timer_at` (or simply every 100 ms).
- A card tapped during a transaction stops it when it is the same id (compared without
  case, as OCPP 1.6 CiStrings are). A different card is checked with
  :class:`RequestAuthorization` only when the session has a parent id, and stops it when
  the answer names the same parent; otherwise it is dropped (``NOT_OWNER``).
- A stopped transaction leaves the connector Finishing until the EV is unplugged; a new
  card or remote start may begin another transaction meanwhile, free charging does not.
- A reservation (:class:`Reserved`) is taken only by an Available connector (or replaces
  itself). While it holds, only its id, or an id whose authorization names the
  reservation's parent id, may start a transaction (free charging waits); that transaction
  uses it up and carries its id. It ends at ``expires_at``, on a cancel, and when the
  connector faults or becomes unavailable; each end is reported with
  :class:`ReservationEnded`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from controller.connector_safety import (
    EV_CONNECTED_STATES,
    PILOT_F,
    PILOT_OFF,
    FaultResponse,
    PilotMode,
    PilotOutput,
    may_close_contactor,
    policy_for,
    primary_fault,
    pwm,
)
from controller.connector_types import (
    MIN_OFFER_A,
    AuthorizationDropped,
    Authorized,
    AvailabilityAnswered,
    AvailabilityChanged,
    AvailabilityOutcome,
    CableRatingChanged,
    CloseContactor,
    Command,
    ConnectorSettings,
    ConnectorStatus,
    CpChanged,
    DropReason,
    Event,
    FaultCleared,
    FaultRaised,
    IdPresented,
    LimitChanged,
    LockChanged,
    OpenContactor,
    PilotVerified,
    RemoteStart,
    RemoteStartAnswered,
    RequestAuthorization,
    ReservationAnswered,
    ReservationCancelled,
    ReservationEnd,
    ReservationEnded,
    ReservationOutcome,
    Reserved,
    SettingsChanged,
    StartTransaction,
    StatusChanged,
    StopReason,
    StopRequested,
    StopTransaction,
    Tick,
    TransactionAnswered,
)
from controller.limits import CurrentLimits, Offer, compute_offer
from drivers.base import CpState
from drivers.errors import FaultKind

#: CP states with a car on the cable: an authorization does not time out in them.
_EV_PRESENT_STATES = EV_CONNECTED_STATES | {CpState.E}
#: A debounced F reading this soon after our own state F ended is our F seen late (the
#: sensor debounces for up to a few hundred ms), not an F the car or a fault produced.
F_ECHO_S = 1.0


def same_id(a: str, b: str) -> bool:
    """OCPP 1.6 id tags are CiStrings: they compare without regard to case."""
    return a.casefold() == b.casefold()


def reservation_allows(res: Reserved | None, id_tag: str, parent_id: str | None) -> bool:
    """Whether ``id_tag`` (whose authorization named ``parent_id``) may use ``res``.

    OCPP 1.6 ReserveNow: the reserved id itself, or any id with the reservation's parent.
    """
    if res is None or same_id(id_tag, res.id_tag):
        return True
    return res.parent_id is not None and parent_id is not None and same_id(parent_id, res.parent_id)


@dataclass(slots=True)
class _Authorization:
    """An id presented (or remotely started) for the next transaction."""

    id_tag: str
    accepted: bool  # False while the answer to RequestAuthorization is awaited
    expires_at: float  # ConnectionTimeOut: dropped when no EV is plugged in by then
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Transaction:
    id_tag: str
    parent_id: str | None
    withheld: bool = False  # the CSMS refused the id and the transaction is kept: no energy


class ConnectorMachine:
    """One connector's state machine. Not thread-safe: call it from the loop thread only."""

    def __init__(
        self, settings: ConnectorSettings | None = None, *, available: bool = True
    ) -> None:
        """``available`` False starts the connector inoperative (a persisted OCPP setting)."""
        self._settings = settings or ConnectorSettings()
        self._cp: CpState | None = None  # None: no reading yet, or hidden by our state F
        self._cable_a: float | None = None
        self._limits = CurrentLimits()  # each source's limit, set and cleared on its own
        self._available_wanted = available
        self._available = available  # what applies now: a change waits for the transaction
        self._faults: set[FaultKind] = set()  # raised by drivers
        self._cp_fault = False  # the car showed E or F: a CP_ERROR of our own finding
        self._pilot_verified = False  # the EV's diode judged good since it arrived (B/C/D)
        self._locked = False  # the lock actuator's feedback (LockChanged); see lock_required
        self._f_until = -math.inf  # state F lasts at least until then
        self._f_ended_at = -math.inf  # when we last stopped driving state F
        # The pilot generator starts in state F (drivers/pilot.py: the safe level), so the
        # machine starts believing F: readings of that F are not the car's, and the first
        # handle() (a Tick will do) switches to PWM off and lets the sensor see the car.
        self._pilot = PILOT_F
        self._contactor_closed = False
        self._auth: _Authorization | None = None
        self._stop_check: str | None = None  # a different id tapped, checked for its parent
        self._tx: _Transaction | None = None
        self._finishing = False  # a transaction ended and the EV is still plugged in
        self._reservation: Reserved | None = None
        self._now = -math.inf
        self._log: list[Command] = []  # transaction and answer commands of one handle()
        self._status = self._compute_status()

    # --- what the supervisor, the adapters and the tests read ---------------------------

    @property
    def settings(self) -> ConnectorSettings:
        return self._settings

    @property
    def contactor_closed(self) -> bool:
        """True while the machine's last contactor command was CloseContactor."""
        return self._contactor_closed

    @property
    def pilot(self) -> PilotOutput:
        """What the machine last commanded the pilot generator to do."""
        return self._pilot

    @property
    def cp_state(self) -> CpState | None:
        return self._cp

    @property
    def limits(self) -> CurrentLimits:
        """The limit each source has set (immutable: safe to hand out)."""
        return self._limits

    @property
    def offer(self) -> Offer:
        """What the bounds and sources allow now, and which of them binds. The PWM offers
        this only while a transaction runs with the car connected and no fault; see
        :attr:`pilot` for what it offers."""
        s = self._settings
        return compute_offer(s.max_current_a, self._cable_a, s.cable_rating_required, self._limits)

    @property
    def available(self) -> bool:
        """Whether the connector is operative now (a scheduled change is not yet applied)."""
        return self._available

    @property
    def available_wanted(self) -> bool:
        """The availability last asked for (CSMS, page, MQTT); a change to inoperative
        applies once no transaction runs (until then :attr:`available` is the old one)."""
        return self._available_wanted

    @property
    def active_faults(self) -> frozenset[FaultKind]:
        if self._cp_fault:
            return frozenset(self._faults | {FaultKind.CP_ERROR})
        return frozenset(self._faults)

    @property
    def transaction_id_tag(self) -> str | None:
        """The id tag of the running transaction, None when none runs."""
        return None if self._tx is None else self._tx.id_tag

    @property
    def reservation(self) -> Reserved | None:
        """The reservation holding the connector, None when there is none."""
        return self._reservation

    @property
    def status(self) -> StatusChanged:
        """The current status, as last reported."""
        return StatusChanged(*self._status)

    @property
    def next_timer_at(self) -> float | None:
        """When a :class:`Tick` next matters (monotonic seconds), None when nothing waits."""
        times = [self._f_until] if self._pilot.mode is PilotMode.STATE_F else []
        if self._auth is not None and self._cp not in _EV_PRESENT_STATES:
            times.append(self._auth.expires_at)
        if self._reservation is not None:
            times.append(self._reservation.expires_at)
        return min((t for t in times if t > self._now), default=None)

    def may_close(self) -> bool:
        """:func:`may_close_contactor` for the machine's current inputs and outputs."""
        return may_close_contactor(
            self._cp,
            self._tx is not None,
            self._available,
            self.active_faults,
            self._pilot.offered_a,
            pilot_verified=self._pilot_verified,
            state_d_allowed=self._settings.ventilation,
            lock_engaged=self._locked or not self._settings.lock_required,
        )

    def restate_outputs(self) -> list[Command]:
        """Commands that put fresh hardware into the state the machine believes in.

        For start-up and after a driver was re-created; it never closes the contactor.
        """
        commands: list[Command] = [] if self._contactor_closed else [OpenContactor()]
        return [*commands, self._pilot.command(), self.status]

    # --- the one entry point ------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Command]:
        """Apply ``event`` at ``now`` and return the commands to execute, in order.

        ``now`` is monotonic seconds; an earlier value than the last is taken as the last.
        """
        now = max(now, self._now)
        self._now = now
        was_charging = self._contactor_closed or self._cp in (CpState.C, CpState.D)
        faults_before = self.active_faults
        self._log = []
        self._apply(event, now)
        self._housekeeping(now)
        self._time_state_f(faults_before, was_charging, now)
        return self._drive_outputs(now)

    def _apply(self, event: Event, now: float) -> None:
        match event:
            case CpChanged(state):
                self._on_cp(state, now)
            case PilotVerified():
                # A verdict can only be of the car now seen (readings arrive in order), and
                # none is taken while our own state F hides it.
                if self._cp in EV_CONNECTED_STATES and self._pilot.mode is not PilotMode.STATE_F:
                    self._pilot_verified = True
            case CableRatingChanged(current_a):
                self._cable_a = current_a
            case LockChanged(locked):
                self._locked = locked
            case IdPresented(id_tag):
                self._on_id_presented(id_tag, now)
            case Authorized():
                self._on_authorized(event)
            case RemoteStart(id_tag, authorized):
                accepted = self._accepts_new_session() and not self._reserved_for_other(id_tag)
                self._log.append(RemoteStartAnswered(accepted))
                if accepted:
                    # An id that may use the reservation only through its parent is
                    # authorized even so: the answer names the parent.
                    by_parent = self._reservation is not None and not same_id(
                        id_tag, self._reservation.id_tag
                    )
                    self._begin_authorization(id_tag, authorized and not by_parent, now)
            case TransactionAnswered(parent_id, withhold):
                if self._tx is not None:
                    self._tx = dataclasses.replace(
                        self._tx,
                        parent_id=parent_id or self._tx.parent_id,
                        withheld=self._tx.withheld or withhold,
                    )
            case StopRequested(reason):
                if self._tx is not None:
                    self._stop_transaction(reason)
                elif self._auth is not None:
                    self._drop_authorization(DropReason.CANCELLED)
            case FaultRaised(kind):
                self._faults.add(kind)
                if kind is FaultKind.DIODE_FAULT:
                    self._pilot_verified = False  # judged afresh when the PWM runs again
            case FaultCleared(kind):
                if not policy_for(kind).latches:
                    self._faults.discard(kind)
            case AvailabilityChanged(available):
                self._available_wanted = available
                scheduled = self._tx is not None and not available
                outcome = (
                    AvailabilityOutcome.SCHEDULED if scheduled else AvailabilityOutcome.ACCEPTED
                )
                self._log.append(AvailabilityAnswered(outcome))
            case LimitChanged(current_a, source):
                self._limits = self._limits.with_limit(source, current_a)
            case SettingsChanged(settings):
                self._settings = settings
            case Reserved():
                self._on_reserved(event)
            case ReservationCancelled(reservation_id, reason):
                if self._reservation and self._reservation.reservation_id == reservation_id:
                    self._end_reservation(reason)
            case Tick():
                pass

    # --- inputs -------------------------------------------------------------------------

    def _on_cp(self, state: CpState, now: float) -> None:
        our_f_echo = state is CpState.F and now - self._f_ended_at < F_ECHO_S
        if self._pilot.mode is PilotMode.STATE_F or our_f_echo:
            # Behind our own -12 V the car cannot be seen (the sensor reads our F, or a
            # reading from before F arrives late): wait for the first reading after F.
            self._cp = None
            self._pilot_verified = False
            return
        self._cp = state
        self._cp_fault = state in (CpState.E, CpState.F)
        if state not in EV_CONNECTED_STATES:
            self._pilot_verified = False  # gone (A) or broken (E, F): check the next car
        if state is CpState.A:
            self._finishing = False
            self._faults = {
                kind
                for kind in self._faults
                if policy_for(kind).latches or not policy_for(kind).clears_on_unplug
            }

    def _on_id_presented(self, id_tag: str, now: float) -> None:
        tx = self._tx
        if tx is not None:
            if same_id(id_tag, tx.id_tag):
                self._stop_transaction(StopReason.LOCAL)
            elif tx.parent_id is not None:
                if self._stop_check is None or not same_id(id_tag, self._stop_check):
                    self._stop_check = id_tag
                    self._log.append(RequestAuthorization(id_tag))
            else:
                self._log.append(AuthorizationDropped(id_tag, DropReason.NOT_OWNER))
        elif not self._accepts_new_session():
            self._log.append(AuthorizationDropped(id_tag, DropReason.NOT_ACCEPTING))
        elif self._reserved_for_other(id_tag):
            self._log.append(AuthorizationDropped(id_tag, DropReason.RESERVED))
        elif self._auth is None or not same_id(id_tag, self._auth.id_tag):
            self._begin_authorization(id_tag, False, now)
        # else: the same card again while it is being authorized or waits for the EV.

    def _on_authorized(self, answer: Authorized) -> None:
        tx, check = self._tx, self._stop_check
        if tx is not None and check is not None and same_id(answer.id_tag, check):
            self._stop_check = None
            shared = answer.parent_id is not None and tx.parent_id is not None
            if shared and same_id(answer.parent_id or "", tx.parent_id or ""):
                self._stop_transaction(StopReason.LOCAL, answer.id_tag)
            else:
                self._log.append(AuthorizationDropped(answer.id_tag, DropReason.NOT_OWNER))
            return
        auth = self._auth
        if auth is None or auth.accepted or not same_id(answer.id_tag, auth.id_tag):
            return  # a late answer to an id that no longer waits for one
        if not answer.accepted:
            self._drop_authorization(DropReason.REJECTED)
        elif not self._reservation_allows(auth.id_tag, answer.parent_id):
            self._drop_authorization(DropReason.RESERVED)
        else:
            auth.accepted = True
            auth.parent_id = answer.parent_id

    # --- sessions -----------------------------------------------------------------------

    def _accepts_new_session(self) -> bool:
        return self._tx is None and self._available and not self.active_faults

    # --- reservations -------------------------------------------------------------------

    def _reservation_allows(self, id_tag: str, parent_id: str | None) -> bool:
        return reservation_allows(self._reservation, id_tag, parent_id)

    def _reserved_for_other(self, id_tag: str) -> bool:
        """True when ``id_tag`` cannot use the reservation, whatever its parent may be."""
        res = self._reservation
        return res is not None and res.parent_id is None and not same_id(id_tag, res.id_tag)

    def _on_reserved(self, event: Reserved) -> None:
        res = self._reservation
        if self.active_faults:
            outcome = ReservationOutcome.FAULTED
        elif not self._available:
            outcome = ReservationOutcome.UNAVAILABLE
        elif res is not None and res.reservation_id == event.reservation_id:
            outcome = ReservationOutcome.ACCEPTED  # OCPP: the same id replaces it
        elif self._compute_status()[0] is ConnectorStatus.AVAILABLE:
            outcome = ReservationOutcome.ACCEPTED
        else:
            outcome = ReservationOutcome.OCCUPIED
        if outcome is ReservationOutcome.ACCEPTED:
            self._reservation = event
        self._log.append(ReservationAnswered(event.reservation_id, outcome))

    def _end_reservation(self, reason: ReservationEnd) -> None:
        if self._reservation is not None:
            self._log.append(ReservationEnded(self._reservation.reservation_id, reason))
            self._reservation = None

    def _begin_authorization(self, id_tag: str, accepted: bool, now: float) -> None:
        if self._auth is not None and not same_id(self._auth.id_tag, id_tag):
            self._drop_authorization(DropReason.SUPERSEDED)
        timeout_s = self._settings.connection_timeout_s
        self._auth = _Authorization(id_tag, accepted, now + timeout_s)
        if not accepted:
            self._log.append(RequestAuthorization(id_tag))

    def _drop_authorization(self, reason: DropReason) -> None:
        if self._auth is not None:
            self._log.append(AuthorizationDropped(self._auth.id_tag, reason))
            self._auth = None

    def _stop_transaction(self, reason: StopReason, by: str | None = None) -> None:
        """End the transaction; ``by`` is the card of the same parent that stopped it."""
        if self._tx is None:
            return
        self._log.append(StopTransaction(reason, by or self._tx.id_tag))
        self._tx = None
        self._stop_check = None
        self._finishing = self._cp is not CpState.A

    def _housekeeping(self, now: float) -> None:
        """Consequences of the new inputs that do not depend on the outputs."""
        if self._tx is not None and self._cp is CpState.A and self._settings.stop_on_ev_disconnect:
            self._stop_transaction(StopReason.EV_DISCONNECTED)
        if self._tx is None:
            self._available = self._available_wanted
        auth = self._auth
        if auth is not None and not self._available:
            self._drop_authorization(DropReason.CANCELLED)
        elif auth is not None and self._cp not in _EV_PRESENT_STATES and now >= auth.expires_at:
            self._drop_authorization(DropReason.TIMED_OUT)
        res = self._reservation
        if res is not None and (self.active_faults or not self._available):
            self._end_reservation(ReservationEnd.TERMINATED)
        elif res is not None and now >= res.expires_at:
            self._end_reservation(ReservationEnd.EXPIRED)
        auth = self._auth
        if (
            auth is not None
            and auth.accepted
            and not self._reservation_allows(auth.id_tag, auth.parent_id)
        ):
            self._drop_authorization(DropReason.RESERVED)  # the reservation was replaced
        if self._tx is None:
            self._maybe_start_transaction()

    def _maybe_start_transaction(self) -> None:
        if self._cp not in EV_CONNECTED_STATES or not self._available or self.active_faults:
            return
        auth, free_id = self._auth, self._settings.free_charging_id
        res = self._reservation
        if auth is not None and auth.accepted:
            # _housekeeping dropped an accepted id the reservation does not allow.
            self._tx = _Transaction(auth.id_tag, auth.parent_id)
            self._auth = None
        elif auth is None and free_id is not None and not self._finishing and res is None:
            self._tx = _Transaction(free_id, None)
        else:
            return
        self._finishing = False
        reservation_id = None if res is None else res.reservation_id
        self._log.append(StartTransaction(self._tx.id_tag, self._tx.parent_id, reservation_id))
        self._end_reservation(ReservationEnd.USED)

    # --- outputs ------------------------------------------------------------------------

    def _time_state_f(
        self, faults_before: frozenset[FaultKind], was_charging: bool, now: float
    ) -> None:
        """Start (or extend) the F pulse when a fault appears that calls for one."""
        new = self.active_faults - faults_before
        if new and (
            was_charging or any(policy_for(k).response is not FaultResponse.PWM_OFF for k in new)
        ):
            self._f_until = max(self._f_until, now + self._settings.state_f_after_fault_s)

    def _desired_pilot(self, now: float) -> PilotOutput:
        faults = self.active_faults
        if now < self._f_until or any(
            policy_for(k).response is FaultResponse.HOLD_F for k in faults
        ):
            return PILOT_F
        if faults or self._tx is None or self._cp not in EV_CONNECTED_STATES:
            return PILOT_OFF
        if self._tx.withheld:
            return PILOT_OFF  # no offer: the contactor may not stay closed (may_close)
        if self._cp is CpState.D and not self._settings.ventilation:
            return PILOT_OFF
        return pwm(self.offer.current_a)

    def _drive_outputs(self, now: float) -> list[Command]:
        pilot = self._desired_pilot(now)
        if pilot.mode is PilotMode.STATE_F and self._pilot.mode is not PilotMode.STATE_F:
            self._cp = None  # from now on the car is hidden behind our -12 V
            self._pilot_verified = False
        previous, self._pilot = self._pilot, pilot
        if previous.mode is PilotMode.STATE_F and pilot.mode is not PilotMode.STATE_F:
            self._f_ended_at = now
        commands: list[Command] = []
        if self._contactor_closed and not self.may_close():
            commands.append(OpenContactor())
            self._contactor_closed = False
        change = [pilot.command()] if pilot != previous else []
        lowers = pilot.offered_a <= previous.offered_a
        commands += change if lowers else []
        commands += self._log
        commands += [] if lowers else change
        if not self._contactor_closed and self.may_close():
            commands.append(CloseContactor())
            self._contactor_closed = True
        status = self._compute_status()
        if status != self._status:
            self._status = status
            commands.append(StatusChanged(*status))
        self._log = []
        return commands

    def _compute_status(self) -> tuple[ConnectorStatus, FaultKind | None]:
        faults = self.active_faults
        if faults:
            return ConnectorStatus.FAULTED, primary_fault(faults)
        if self._tx is not None:
            if self._contactor_closed:
                return ConnectorStatus.CHARGING, None
            if self._pilot.offered_a < MIN_OFFER_A and self._cp is not CpState.A:
                return ConnectorStatus.SUSPENDED_EVSE, None  # limit 0, F hold, D refused
            return ConnectorStatus.SUSPENDED_EV, None  # B with PWM on, or unplugged and kept
        if not self._available:
            return ConnectorStatus.UNAVAILABLE, None
        if self._finishing:
            return ConnectorStatus.FINISHING, None
        if self._reservation is not None and (self._auth is None or not self._auth.accepted):
            return ConnectorStatus.RESERVED, None
        if self._cp in _EV_PRESENT_STATES or self._auth is not None:
            return ConnectorStatus.PREPARING, None
        return ConnectorStatus.AVAILABLE, None
