"""The version-neutral domain model between the supervisor and the OCPP adapters.

The supervisor (:mod:`controller.supervisor`) owns the connectors, the hardware and the
transactions; an OCPP adapter (``controller/ocpp16/``, later ``ocpp201/``) translates between
these types and its protocol version. Neither side knows the other's internals:

- :class:`CsmsLink` is what the supervisor tells the CSMS (status, transactions, meter
  values) and asks of it (authorization). Standalone mode (no CSMS) uses
  :class:`controller.standalone.StandaloneLink`.
- :class:`ChargePointControl` is what the CSMS may ask of the charge point (remote start
  and stop, reset, unlock, availability, current limits, reservations), implemented by the
  supervisor.
- :class:`ReservationListener` is an optional extra of a link: told when a reservation
  ends (used, expired, terminated), so a link that persists reservations can forget it.

Times are timezone-aware UTC datetimes; energies in Wh; currents in A; powers in W.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from controller.connector_types import ConnectorStatus, ReservationEnd, StopReason
from drivers.base import MeterReading
from drivers.errors import FaultKind


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthStatus(StrEnum):
    """The answer to "may this id charge?" (OCPP 1.6 AuthorizationStatus spelling)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


@dataclass(frozen=True, slots=True)
class AuthResult:
    status: AuthStatus
    parent_id: str | None = None
    expiry: dt.datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.status is AuthStatus.ACCEPTED


class ReadingContext(StrEnum):
    """Why a meter sample was taken (OCPP ReadingContext spelling)."""

    PERIODIC = "Sample.Periodic"
    CLOCK = "Sample.Clock"
    BEGIN = "Transaction.Begin"
    END = "Transaction.End"
    TRIGGER = "Trigger"


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One meter reading of one connector, with what the charger offered at the time."""

    connector_id: int
    timestamp: dt.datetime
    reading: MeterReading
    offered_a: float
    context: ReadingContext = ReadingContext.PERIODIC


@dataclass
class Transaction:
    """A charging session as the charge point knows it.

    ``local_id`` is ours (unique across restarts); ``csms_id`` is the CSMS's transactionId,
    known once StartTransaction was confirmed (None before, and forever in standalone mode).
    """

    local_id: str
    connector_id: int
    id_tag: str
    meter_start_wh: float
    started_at: dt.datetime
    csms_id: int | None = None
    parent_id: str | None = None
    meter_stop_wh: float | None = None
    stopped_at: dt.datetime | None = None
    stop_reason: StopReason | None = None
    stop_id_tag: str | None = None
    samples: list[MeterSample] = field(default_factory=list)  # for StopTxn*Data
    reservation_id: int | None = None  # the reservation this transaction used up

    @property
    def running(self) -> bool:
        return self.stopped_at is None


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """What the CSMS side may read about a connector at any moment; ``thermometer`` says
    whether it has one, ``temperature_c`` is its last reading (None: none read yet);
    ``ev_connected`` whether the pilot sees a car (B, C or D)."""

    connector_id: int
    status: ConnectorStatus
    fault: FaultKind | None
    transaction: Transaction | None
    reading: MeterReading | None
    offered_a: float
    #: The lowest limit set on the connector by a source other than the CSMS (local load
    #: management, the user, thermal derating) in A; None when none is set.
    local_limit_a: float | None = None
    thermometer: bool = False
    temperature_c: float | None = None
    ev_connected: bool = False


@runtime_checkable
class SessionIds(Protocol):
    """An optional capability of a :class:`CsmsLink`: the local id the next session of a
    connector takes, when the link already told the CSMS of it (a 2.0.1 transaction begun
    at the plug-in, before any authorization: TxStartPoint EVConnected). The session, its
    journal row and its contactor rules are the core's as for any other. Loop thread only."""

    def session_id(self, connector_id: int) -> str | None:
        """The id for the session starting on ``connector_id`` now (None: a new one)."""
        ...


class CsmsLink(Protocol):
    """What the supervisor tells the central system, and asks of it. Loop thread only.

    The notification methods return at once: the adapter queues and sends (or drops, for
    messages OCPP does not queue while offline).
    """

    async def authorize(self, id_tag: str) -> AuthResult:
        """Authorize ``id_tag`` (local list, cache or the CSMS, as the version says)."""
        ...

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None: ...

    def transaction_started(self, tx: Transaction) -> None: ...

    def transaction_stopped(self, tx: Transaction) -> None: ...

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """A new meter reading (about once a second); the adapter decides what to send."""
        ...


class ResetKind(StrEnum):
    SOFT = "Soft"
    HARD = "Hard"


class Answer(StrEnum):
    """Outcomes of CSMS requests, in OCPP spelling."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"
    UNLOCKED = "Unlocked"
    UNLOCK_FAILED = "UnlockFailed"
    NOT_SUPPORTED = "NotSupported"
    OCCUPIED = "Occupied"
    FAULTED = "Faulted"
    UNAVAILABLE = "Unavailable"


@dataclass(frozen=True, slots=True)
class CsmsSettings:
    """What the CSMS configures of every session, in no OCPP version's spelling.

    A version adapter builds it from its own keys (1.6: StopTransactionOnEVSideDisconnect,
    ConnectionTimeOut) and hands it whole to :meth:`ChargePointControl.apply_settings`.
    ``stop_on_ev_disconnect``: a cable unplugged at the car stops the transaction (else it
    only suspends it); ``connection_timeout_s``: how long an authorization waits for a cable
    before it lapses, in seconds (> 0).
    """

    stop_on_ev_disconnect: bool
    connection_timeout_s: float

    def __post_init__(self) -> None:
        if not self.connection_timeout_s > 0:
            raise ValueError(f"connection timeout must be > 0 s, got {self.connection_timeout_s}")


class ChargePointControl(Protocol):
    """What the CSMS may ask of the charge point; implemented by the supervisor."""

    @property
    def connector_ids(self) -> tuple[int, ...]: ...

    def view(self, connector_id: int) -> ConnectorView: ...

    def transaction_by_csms_id(self, csms_id: int) -> Transaction | None: ...

    async def remote_start(self, id_tag: str, connector_id: int | None, authorized: bool) -> bool:
        """Start a session for ``id_tag``; ``authorized`` False means authorize first."""
        ...

    async def remote_stop(self, tx: Transaction) -> bool: ...

    async def deauthorize(self, tx: Transaction) -> None:
        """The CSMS refused the id of a running transaction (StopTransactionOnInvalidId)."""
        ...

    async def transaction_answered(
        self, tx: Transaction, parent_id: str | None, withhold_energy: bool
    ) -> None:
        """The CSMS answered ``tx``'s StartTransaction: ``parent_id`` (its parentIdTag)
        becomes the transaction's parent; ``withhold_energy`` when it refused the id and
        the transaction is kept (StopTransactionOnInvalidId false): no more energy."""
        ...

    async def reset(self, kind: ResetKind) -> Answer:
        """Stop every transaction (SoftReset/HardReset) and restart the controller."""
        ...

    async def stop_transaction(self, tx: Transaction, reason: StopReason) -> bool:
        """Stop ``tx`` for ``reason`` (2.0.1: a Reset of its EVSE, a TxStopPoint reached);
        False when it no longer runs. Stopping only ever opens the contactor."""
        ...

    async def unlock(self, connector_id: int) -> Answer: ...

    async def change_availability(self, connector_id: int, available: bool) -> Answer:
        """``connector_id`` 0 means the whole charge point."""
        ...

    def set_current_limit(self, connector_id: int, current_a: float | None) -> None:
        """The CSMS's limit for a connector (0 = all); None removes it."""
        ...

    def apply_settings(self, settings: CsmsSettings) -> None:
        """The CSMS's session settings, whole, at start and after each change of one."""
        ...

    async def reserve(
        self,
        connector_id: int,
        id_tag: str,
        parent_id: str | None,
        expiry: dt.datetime,
        reservation_id: int,
    ) -> Answer:
        """Reserve a connector (0: any one) for ``id_tag`` or ids of ``parent_id`` until
        ``expiry``: Accepted, Occupied, Faulted or Unavailable. The same ``reservation_id``
        again replaces that reservation."""
        ...

    async def cancel_reservation(self, reservation_id: int) -> Answer:
        """Accepted when the reservation was held (and is now gone), else Rejected."""
        ...


@runtime_checkable
class AnyReservationHolders(Protocol):
    """An optional extra of a :class:`ChargePointControl`, probed with ``isinstance``: which
    connector holds a reservation made for any connector (connector 0). OCPP 2.0.1 shows
    such a connector Available while other connectors are free (H01)."""

    def holds_any_reservation(self, connector_id: int) -> bool: ...


@runtime_checkable
class ReservationListener(Protocol):
    """An optional extra of a :class:`CsmsLink`, probed with ``isinstance``."""

    def reservation_ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        """A reservation ended in the charge point; returns at once. Loop thread only."""
        ...
