"""Reservations in the connector state machine: who may use a reserved connector, its status,
expiry, cancellation, and the answers to a reservation (OCPP 1.6 ReserveNow semantics)."""

from __future__ import annotations

from controller.connector import ConnectorMachine
from controller.connector_types import (
    AuthorizationDropped,
    Authorized,
    AvailabilityChanged,
    CableRatingChanged,
    Command,
    ConnectorSettings,
    ConnectorStatus,
    CpChanged,
    DropReason,
    Event,
    FaultCleared,
    FaultRaised,
    IdPresented,
    RemoteStart,
    RemoteStartAnswered,
    RequestAuthorization,
    ReservationAnswered,
    ReservationCancelled,
    ReservationEnd,
    ReservationEnded,
    ReservationOutcome,
    Reserved,
    StartTransaction,
    StatusChanged,
    Tick,
)
from drivers.base import CpState
from drivers.errors import FaultKind

S = ConnectorStatus
OWNER = "04A1B2C3"
OTHER = "DEADBEEF"


class Bench:
    """A machine and a monotonic clock in seconds."""

    def __init__(self, settings: ConnectorSettings | None = None) -> None:
        self.machine = ConnectorMachine(settings)
        self.now = 100.0
        self.send(Tick())  # leave the boot-time state F

    def send(self, event: Event, after_s: float = 0.0) -> list[Command]:
        self.now += after_s
        return self.machine.handle(event, self.now)

    def status(self) -> ConnectorStatus:
        return self.machine.status.status

    def reserve(
        self, tag: str = OWNER, parent: str | None = None, for_s: float = 600.0, rid: int = 7
    ) -> list[Command]:
        return self.send(Reserved(rid, tag, parent, self.now + for_s))

    def plug(self) -> list[Command]:
        self.send(CableRatingChanged(32.0))
        return self.send(CpChanged(CpState.B))


def test_a_free_connector_takes_a_reservation_and_shows_reserved() -> None:
    bench = Bench()
    assert bench.reserve() == [
        ReservationAnswered(7, ReservationOutcome.ACCEPTED),
        StatusChanged(S.RESERVED),
    ]
    assert bench.machine.reservation == Reserved(7, OWNER, None, bench.now + 600.0)


def test_another_card_is_refused_without_asking_anyone() -> None:
    bench = Bench()
    bench.reserve()
    bench.plug()
    commands = bench.send(IdPresented(OTHER))
    assert commands == [AuthorizationDropped(OTHER, DropReason.RESERVED)]
    assert bench.status() is S.RESERVED  # a car plugged in does not end a reservation


def test_the_reserving_card_starts_with_the_reservation_id_and_uses_it_up() -> None:
    bench = Bench()
    bench.reserve()
    assert bench.send(IdPresented(OWNER.lower())) == [RequestAuthorization(OWNER.lower())]
    assert bench.send(Authorized(OWNER.lower(), True))[-1] == StatusChanged(S.PREPARING)
    commands = bench.plug()
    assert StartTransaction(OWNER.lower(), None, 7) in commands
    assert ReservationEnded(7, ReservationEnd.USED) in commands
    assert bench.machine.reservation is None


def test_a_card_of_the_reservations_parent_may_use_it_another_parent_may_not() -> None:
    bench = Bench()
    bench.reserve(parent="FAMILY")
    bench.plug()
    assert bench.send(IdPresented("CAFE0001")) == [RequestAuthorization("CAFE0001")]
    assert bench.send(Authorized("CAFE0001", True, "FLEET")) == [
        AuthorizationDropped("CAFE0001", DropReason.RESERVED)
    ]
    bench.send(IdPresented(OTHER))
    commands = bench.send(Authorized(OTHER, True, "family"))
    assert StartTransaction(OTHER, "family", 7) in commands
    assert ReservationEnded(7, ReservationEnd.USED) in commands


def test_a_reservation_expires_at_its_time_and_the_connector_is_available_again() -> None:
    bench = Bench()
    bench.reserve(for_s=30.0)
    assert bench.machine.next_timer_at == bench.now + 30.0
    assert bench.send(Tick(), 29.9) == []
    assert bench.send(Tick(), 0.1) == [
        ReservationEnded(7, ReservationEnd.EXPIRED),
        StatusChanged(S.AVAILABLE),
    ]
    assert bench.send(IdPresented(OTHER)) == [
        RequestAuthorization(OTHER),
        StatusChanged(S.PREPARING),
    ]


def test_a_cancel_ends_only_the_named_reservation() -> None:
    bench = Bench()
    bench.reserve()
    assert bench.send(ReservationCancelled(8)) == []
    assert bench.send(ReservationCancelled(7)) == [
        ReservationEnded(7, ReservationEnd.CANCELLED),
        StatusChanged(S.AVAILABLE),
    ]


def test_answers_occupied_faulted_and_unavailable() -> None:
    plugged = Bench()
    plugged.plug()
    assert plugged.reserve()[0] == ReservationAnswered(7, ReservationOutcome.OCCUPIED)
    held = Bench()
    held.reserve(rid=1)
    assert held.reserve(rid=2)[0] == ReservationAnswered(2, ReservationOutcome.OCCUPIED)
    faulted = Bench()
    faulted.send(FaultRaised(FaultKind.OVERTEMPERATURE))
    assert faulted.reserve()[0] == ReservationAnswered(7, ReservationOutcome.FAULTED)
    off = Bench()
    off.send(AvailabilityChanged(False))
    assert off.reserve()[0] == ReservationAnswered(7, ReservationOutcome.UNAVAILABLE)
    for bench in (plugged, held, faulted, off):
        assert bench.machine.reservation is None or bench is held


def test_the_same_reservation_id_replaces_the_reservation() -> None:
    bench = Bench()
    bench.reserve(OWNER)
    assert bench.reserve(OTHER, for_s=60.0) == [ReservationAnswered(7, ReservationOutcome.ACCEPTED)]
    assert bench.machine.reservation == Reserved(7, OTHER, None, bench.now + 60.0)
    assert bench.send(IdPresented(OWNER)) == [AuthorizationDropped(OWNER, DropReason.RESERVED)]


def test_a_fault_or_unavailability_ends_the_reservation() -> None:
    bench = Bench()
    bench.reserve()
    commands = bench.send(FaultRaised(FaultKind.OVERTEMPERATURE))
    assert ReservationEnded(7, ReservationEnd.TERMINATED) in commands
    bench.send(FaultCleared(FaultKind.OVERTEMPERATURE))
    assert bench.status() is S.AVAILABLE
    bench.reserve(rid=8)
    commands = bench.send(AvailabilityChanged(False))
    assert ReservationEnded(8, ReservationEnd.TERMINATED) in commands
    assert bench.status() is S.UNAVAILABLE


def test_free_charging_waits_while_the_connector_is_reserved() -> None:
    bench = Bench(ConnectorSettings(free_charging_id="FREE"))
    bench.reserve(for_s=30.0)
    assert not [c for c in bench.plug() if isinstance(c, StartTransaction)]
    assert StartTransaction("FREE") in bench.send(Tick(), 30.0)  # expired: free again


def test_a_remote_start_for_another_id_is_refused_for_the_reserved_id_accepted() -> None:
    bench = Bench()
    bench.reserve()
    bench.plug()
    assert bench.send(RemoteStart(OTHER, True)) == [RemoteStartAnswered(False)]
    commands = bench.send(RemoteStart(OWNER, True))
    assert commands[0] == RemoteStartAnswered(True)
    assert StartTransaction(OWNER, None, 7) in commands


def test_a_remote_start_that_may_match_by_parent_is_authorized_to_learn_the_parent() -> None:
    bench = Bench()
    bench.reserve(parent="FAMILY")
    bench.plug()
    commands = bench.send(RemoteStart(OTHER, True))
    assert commands[:2] == [RemoteStartAnswered(True), RequestAuthorization(OTHER)]
    assert StartTransaction(OTHER, "FAMILY", 7) in bench.send(Authorized(OTHER, True, "FAMILY"))
