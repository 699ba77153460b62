"""The vocabulary of the connector state machine: its settings, the events it takes and the
commands it gives.

Everything here is a frozen, slotted dataclass or a :class:`~enum.StrEnum`, so events and
commands can be logged, compared in tests and handed between tasks without copying. Nothing
here knows an OCPP version: the status names and stop reasons happen to match OCPP 1.6's
spelling so that the 1.6 adapter maps them one to one, and the 2.0.1 adapter translates.

Units live in names: currents in amperes (``current_a``), times in seconds of a monotonic
clock (``*_s``, and the ``now`` passed to :meth:`ConnectorMachine.handle`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from controller.limits import MIN_OFFER_A, LimitSource
from drivers.base import CpState
from drivers.errors import FaultKind

#: IEC 61851-1 Annex A: the PWM can encode at most 80 A.
MAX_OFFER_A = 80.0


def _check_current(name: str, value: float | None, *, optional: bool) -> None:
    if value is None and optional:
        return
    if value is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite current >= 0 A, got {value!r}")


# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """How one connector behaves; replaced at run time with :class:`SettingsChanged`.

    ``max_current_a``: what the connector's wiring and contactor carry (6-80 A).
    ``free_charging_id``: when set, a plugged-in EV starts a transaction under this id
    without a card (a card presented first still wins, and its id is recorded).
    ``stop_on_ev_disconnect``: OCPP StopTransactionOnEVSideDisconnect; when False an
    unplugged EV leaves its transaction running (status SuspendedEV) until a stop request.
    ``connection_timeout_s``: OCPP ConnectionTimeOut; an authorization (card or remote
    start) with no EV plugged in expires after this long.
    ``state_f_after_fault_s``: how long the pilot shows state F after a fault that stops
    charging (IEC 61851-1 Table A.5, at least 0.3 s; EVerest ``state_F_after_fault_ms``).
    0 skips the pulse for cars that latch an error on F; faults that hold F still hold it.
    ``cable_rating_required``: True for a socket, whose cable is rated by its PP resistor:
    nothing is offered until :class:`CableRatingChanged` reports a rating. False for a
    tethered cable without PP (its rating is then part of ``max_current_a``).
    ``ventilation``: the site ventilates, so an EV asking for it (state D) may charge.
    Home chargers refuse D (hardware reference 1.2); the PWM then stays off.
    ``lock_required``: see the field.
    """

    max_current_a: float = 32.0
    free_charging_id: str | None = None
    stop_on_ev_disconnect: bool = True
    connection_timeout_s: float = 60.0
    state_f_after_fault_s: float = 0.3
    cable_rating_required: bool = True
    ventilation: bool = False
    #: A socket with a lock actuator: the contactor closes only while :class:`LockChanged`
    #: last said the latch is engaged. False: a tethered cable, or no actuator.
    lock_required: bool = False

    def __post_init__(self) -> None:
        if not MIN_OFFER_A <= self.max_current_a <= MAX_OFFER_A:
            raise ValueError(f"max_current_a must be 6-80 A, got {self.max_current_a!r}")
        if not (math.isfinite(self.connection_timeout_s) and self.connection_timeout_s > 0):
            raise ValueError(f"connection_timeout_s must be > 0, got {self.connection_timeout_s}")
        f_hold = self.state_f_after_fault_s
        if not (math.isfinite(f_hold) and f_hold >= 0):
            raise ValueError(f"state_f_after_fault_s must be >= 0, got {f_hold!r}")
        if self.free_charging_id is not None and not self.free_charging_id:
            raise ValueError("free_charging_id must be a non-empty id tag or None")


# --- enums --------------------------------------------------------------------------------


class StopReason(StrEnum):
    """Why a transaction ended (OCPP 1.6 ``Reason`` spelling)."""

    LOCAL = "Local"
    REMOTE = "Remote"
    EV_DISCONNECTED = "EVDisconnected"
    DE_AUTHORIZED = "DeAuthorized"
    EMERGENCY_STOP = "EmergencyStop"
    REBOOT = "Reboot"
    HARD_RESET = "HardReset"
    SOFT_RESET = "SoftReset"
    POWER_LOSS = "PowerLoss"
    UNLOCK_COMMAND = "UnlockCommand"
    OTHER = "Other"


class ConnectorStatus(StrEnum):
    """The connector's status as the CSMS sees it (OCPP 1.6 spelling).

    ``Reserved``: a reservation holds the connector for one id (or its parent) and that id
    has not yet been accepted on it (then it is Preparing).
    """

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class DropReason(StrEnum):
    """Why a presented id did not (or no longer does) lead to a transaction."""

    REJECTED = "rejected"  # the authorization answer was not Accepted
    TIMED_OUT = "timed_out"  # ConnectionTimeOut: no EV plugged in in time
    SUPERSEDED = "superseded"  # another id was presented or remotely started
    CANCELLED = "cancelled"  # a stop request, or the connector became unavailable
    NOT_ACCEPTING = "not_accepting"  # faulted, unavailable or occupied by a transaction
    NOT_OWNER = "not_owner"  # tapped during someone else's transaction (no shared parent)
    RESERVED = "reserved"  # the connector is reserved for another id (and parent)


class ReservationOutcome(StrEnum):
    """The machine's answer to :class:`Reserved` (OCPP 1.6 ReservationStatus spelling)."""

    ACCEPTED = "Accepted"
    OCCUPIED = "Occupied"  # an EV, an id, a transaction or another reservation is there
    FAULTED = "Faulted"
    UNAVAILABLE = "Unavailable"


class ReservationEnd(StrEnum):
    """Why a reservation ended."""

    USED = "used"  # its id started a transaction (the reservation id goes with the start)
    EXPIRED = "expired"  # its expiry time came
    CANCELLED = "cancelled"  # the CSMS cancelled it
    TERMINATED = "terminated"  # the connector became faulted or unavailable
    REPLACED = "replaced"  # the same reservation id was made again on another connector


class AvailabilityOutcome(StrEnum):
    """The answer to a change of availability (OCPP ChangeAvailability)."""

    ACCEPTED = "Accepted"
    SCHEDULED = "Scheduled"  # a transaction runs; the change follows when it ends


# --- events (inputs) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpChanged:
    """The pilot sensor's debounced CP state changed."""

    state: CpState


@dataclass(frozen=True, slots=True)
class PilotVerified:
    """The pilot sensor judged the EV's diode good while the PWM ran (negative level at
    -12 V). IEC 61851-1 wants that check before mains reaches the car; a car that arrives
    already in C (S2 closed: C1) would otherwise get the contactor the instant the PWM
    starts, before any verdict. The verdict lasts until the car leaves B/C/D, the machine
    drives state F or a diode fault is raised."""


@dataclass(frozen=True, slots=True)
class LockChanged:
    """The socket's lock actuator: its feedback says the latch is engaged (True) or not."""

    locked: bool


@dataclass(frozen=True, slots=True)
class CableRatingChanged:
    """The PP reading: the plugged cable's rating, or None for no / an invalid cable."""

    current_a: float | None

    def __post_init__(self) -> None:
        _check_current("current_a", self.current_a, optional=True)


@dataclass(frozen=True, slots=True)
class IdPresented:
    """A card was tapped on the reader serving this connector (UID as the id tag)."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class Authorized:
    """The answer to :class:`RequestAuthorization` (local list, cache or CSMS)."""

    id_tag: str
    accepted: bool
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteStart:
    """A remote start; ``authorized`` False means the id must be authorized first."""

    id_tag: str
    authorized: bool


@dataclass(frozen=True, slots=True)
class StopRequested:
    """End the running transaction (remote or local stop, reset, unlock, ...).

    Without a transaction it cancels a pending authorization instead.
    """

    reason: StopReason


@dataclass(frozen=True, slots=True)
class TransactionAnswered:
    """The CSMS answered the running transaction's StartTransaction (OCPP 1.6 §4.8).

    ``parent_id``: the parentIdTag of its idTagInfo, which becomes the transaction's parent
    (None keeps the parent it has). ``withhold_energy``: the id was refused but the
    transaction is kept (StopTransactionOnInvalidId false): energy delivery stops for the
    rest of it (the PWM goes off, so the contactor opens; SuspendedEVSE).
    """

    parent_id: str | None
    withhold_energy: bool = False


@dataclass(frozen=True, slots=True)
class FaultRaised:
    """A driver reported a permanent fault (contactor close failure and weld included)."""

    kind: FaultKind


@dataclass(frozen=True, slots=True)
class FaultCleared:
    """The condition behind a fault went away. Latched faults (a weld) ignore it."""

    kind: FaultKind


@dataclass(frozen=True, slots=True)
class AvailabilityChanged:
    """Operative (True) or inoperative (False); deferred while a transaction runs."""

    available: bool


@dataclass(frozen=True, slots=True)
class LimitChanged:
    """``source`` sets its limit to ``current_a``; None clears that source's limit only,
    0 (anything below 6 A) pauses charging. The other sources' limits stay as they are.

    ``current_a`` comes first and ``source`` defaults to the CSMS: the event's shape from
    before several sources existed (one CSMS/load-management slot) still means the same.
    """

    current_a: float | None
    source: LimitSource = LimitSource.CSMS

    def __post_init__(self) -> None:
        _check_current("current_a", self.current_a, optional=True)


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """New settings (an OCPP configuration key or the config file changed)."""

    settings: ConnectorSettings


@dataclass(frozen=True, slots=True)
class Reserved:
    """Reserve the connector for ``id_tag`` (or an id of the same ``parent_id``) until
    ``expires_at`` (monotonic seconds, the clock of ``now``); answered with
    :class:`ReservationAnswered`. The same ``reservation_id`` again replaces the reservation.
    """

    reservation_id: int
    id_tag: str
    parent_id: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class ReservationCancelled:
    """End reservation ``reservation_id`` (nothing happens when it is not this connector's)."""

    reservation_id: int
    reason: ReservationEnd = ReservationEnd.CANCELLED


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: lets timeouts (F hold, ConnectionTimeOut) fire; ``now`` says when."""


Event = (
    CpChanged
    | PilotVerified
    | CableRatingChanged
    | LockChanged
    | IdPresented
    | Authorized
    | RemoteStart
    | StopRequested
    | TransactionAnswered
    | FaultRaised
    | FaultCleared
    | AvailabilityChanged
    | LimitChanged
    | SettingsChanged
    | Reserved
    | ReservationCancelled
    | Tick
)


# --- commands (outputs) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenContactor:
    """De-energize the contactor now (synchronously), then verify it opened."""


@dataclass(frozen=True, slots=True)
class CloseContactor:
    """Energize the contactor and confirm it through the feedback contact."""


@dataclass(frozen=True, slots=True)
class OfferCurrent:
    """Generate the PWM for ``current_a``; 0 (always 0 below 6 A) = PWM off, steady +12 V."""

    current_a: float


@dataclass(frozen=True, slots=True)
class SetStateF:
    """Drive a steady -12 V on CP: the EVSE is not available."""


@dataclass(frozen=True, slots=True)
class RequestAuthorization:
    """Check ``id_tag`` (local list, cache or CSMS) and answer with :class:`Authorized`."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class AuthorizationDropped:
    """A presented id leads nowhere (for the LED, the display and the log)."""

    id_tag: str
    reason: DropReason


@dataclass(frozen=True, slots=True)
class StartTransaction:
    """Begin a transaction: read the meter, store it, send it to the CSMS.

    ``parent_id`` is what the authorization said; ``reservation_id`` names the reservation
    this transaction used up (it goes to the CSMS with the start).
    """

    id_tag: str
    parent_id: str | None = None
    reservation_id: int | None = None


@dataclass(frozen=True, slots=True)
class StopTransaction:
    """End the transaction: read the meter, store it, send it to the CSMS.

    ``id_tag`` is the session's own id, or the card of the same parent that stopped it.
    """

    reason: StopReason
    id_tag: str


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The connector's status changed; ``fault`` says why when it is Faulted."""

    status: ConnectorStatus
    fault: FaultKind | None = None


@dataclass(frozen=True, slots=True)
class AvailabilityAnswered:
    """The answer to :class:`AvailabilityChanged`."""

    outcome: AvailabilityOutcome


@dataclass(frozen=True, slots=True)
class RemoteStartAnswered:
    """The answer to :class:`RemoteStart`: False when the connector takes no new session."""

    accepted: bool


@dataclass(frozen=True, slots=True)
class ReservationAnswered:
    """The answer to :class:`Reserved`."""

    reservation_id: int
    outcome: ReservationOutcome


@dataclass(frozen=True, slots=True)
class ReservationEnded:
    """A reservation this connector held is over (forget it, report it)."""

    reservation_id: int
    reason: ReservationEnd


Command = (
    OpenContactor
    | CloseContactor
    | OfferCurrent
    | SetStateF
    | RequestAuthorization
    | AuthorizationDropped
    | StartTransaction
    | StopTransaction
    | StatusChanged
    | AvailabilityAnswered
    | RemoteStartAnswered
    | ReservationAnswered
    | ReservationEnded
)
