"""The connector state machine, one behaviour per test: what a charger must do, and when."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from controller.connector import ConnectorMachine
from controller.connector_safety import (
    FAULT_POLICY,
    FAULT_PRIORITY,
    PILOT_F,
    PILOT_OFF,
    FaultResponse,
    PilotMode,
    effective_offer_a,
    may_close_contactor,
    primary_fault,
)
from controller.connector_types import (
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
    OfferCurrent,
    OpenContactor,
    PilotVerified,
    RemoteStart,
    RemoteStartAnswered,
    RequestAuthorization,
    SetStateF,
    SettingsChanged,
    StartTransaction,
    StatusChanged,
    StopReason,
    StopRequested,
    StopTransaction,
    Tick,
    TransactionAnswered,
)
from controller.limits import LimitSource
from drivers.base import CpState
from drivers.errors import FaultKind

A, B, C, D, E, F = CpState.A, CpState.B, CpState.C, CpState.D, CpState.E, CpState.F
S = ConnectorStatus


class Bench:
    """A machine and a clock: ``send`` advances the clock and returns the commands."""

    def __init__(self, settings: ConnectorSettings | None = None, **kwargs: bool) -> None:
        self.machine = ConnectorMachine(settings, **kwargs)
        self.now = 1000.0
        assert self.send(Tick()) == [OfferCurrent(0.0)]  # leave the boot-time state F

    def send(self, event: Event, after_s: float = 0.0) -> list[Command]:
        self.now += after_s
        return self.machine.handle(event, self.now)

    def status(self) -> ConnectorStatus:
        return self.machine.status.status

    def plug_in_with_cable(self, rating_a: float = 32.0) -> None:
        self.send(CableRatingChanged(rating_a))
        self.send(CpChanged(B))

    def start_session(self, id_tag: str = "04A1B2C3", parent_id: str | None = None) -> None:
        """Plug in, tap, get accepted: a transaction runs and the PWM offers current."""
        self.plug_in_with_cable()
        self.send(IdPresented(id_tag))
        self.send(Authorized(id_tag, True, parent_id))
        assert self.machine.transaction_id_tag == id_tag
        self.send(PilotVerified())  # the sensor's diode verdict once the PWM runs in B

    def charge(self, id_tag: str = "04A1B2C3", parent_id: str | None = None) -> None:
        self.start_session(id_tag, parent_id)
        assert self.send(CpChanged(C)) == [CloseContactor(), StatusChanged(S.CHARGING)]


@pytest.fixture
def bench() -> Bench:
    return Bench()


# --- the safety function and the fault table ----------------------------------------------


def test_contactor_may_close_in_c_or_d_with_session_availability_no_fault_6a_and_diode() -> None:
    assert may_close_contactor(C, True, True, (), 6.0, pilot_verified=True)
    assert may_close_contactor(D, True, True, frozenset(), 32.0, pilot_verified=True)
    assert not may_close_contactor(C, True, True, (), 16.0, pilot_verified=False)


@pytest.mark.parametrize(
    ("cp", "authorized", "available", "faults", "offered_a"),
    [
        (A, True, True, (), 16.0),
        (B, True, True, (), 16.0),
        (E, True, True, (), 16.0),
        (F, True, True, (), 16.0),
        (None, True, True, (), 16.0),
        (C, False, True, (), 16.0),
        (C, True, False, (), 16.0),
        (C, True, True, (FaultKind.READER_FAILURE,), 16.0),
        (C, True, True, (), 5.9),
        (C, True, True, (), 0.0),
    ],
)
def test_contactor_may_not_close_when_any_condition_is_missing(
    cp: CpState | None,
    authorized: bool,
    available: bool,
    faults: tuple[FaultKind, ...],
    offered_a: float,
) -> None:
    assert not may_close_contactor(
        cp, authorized, available, faults, offered_a, pilot_verified=True
    )


def test_contactor_may_not_close_while_the_socket_lock_is_not_engaged() -> None:
    """A socket outlet is locked before it is energized (IEC 61851-1): with every other
    condition met, a latch the actuator's feedback does not confirm keeps mains off."""
    assert not may_close_contactor(C, True, True, (), 16.0, pilot_verified=True, lock_engaged=False)
    assert may_close_contactor(C, True, True, (), 16.0, pilot_verified=True, lock_engaged=True)


def test_a_socket_with_a_lock_closes_only_once_the_latch_is_engaged_and_opens_if_it_lets_go() -> (
    None
):
    bench = Bench(ConnectorSettings(lock_required=True))
    bench.start_session()
    assert CloseContactor() not in bench.send(CpChanged(C))  # the latch is not confirmed yet
    assert CloseContactor() in bench.send(LockChanged(True))
    assert OpenContactor() in bench.send(LockChanged(False))  # the actuator let go
    assert CloseContactor() in bench.send(LockChanged(True))


def test_without_a_lock_actuator_the_lock_is_no_condition(bench: Bench) -> None:
    bench.charge()  # ConnectorSettings() has no lock: closes without any LockChanged
    assert OpenContactor() not in bench.send(LockChanged(False))


def test_contactor_may_close_in_state_d_only_where_ventilation_is_allowed() -> None:
    assert not may_close_contactor(
        D, True, True, (), 16.0, pilot_verified=True, state_d_allowed=False
    )
    assert may_close_contactor(C, True, True, (), 16.0, pilot_verified=True, state_d_allowed=False)


def test_every_fault_kind_has_a_policy_and_a_priority() -> None:
    assert set(FAULT_POLICY) == set(FaultKind)
    assert set(FAULT_PRIORITY) == set(FaultKind)
    assert FAULT_POLICY[FaultKind.CONTACTOR_WELDED].latches
    assert [k for k, p in FAULT_POLICY.items() if p.latches] == [FaultKind.CONTACTOR_WELDED]
    assert FAULT_POLICY[FaultKind.RCD_TRIP].response is FaultResponse.HOLD_F


def test_faulted_status_names_the_most_serious_fault() -> None:
    faults = {FaultKind.METER_OFFLINE, FaultKind.RCD_TRIP}
    assert primary_fault(faults) is FaultKind.RCD_TRIP
    assert primary_fault(()) is None


def test_offer_is_the_minimum_of_connector_cable_and_limit_and_nothing_below_6a() -> None:
    assert effective_offer_a(32.0, 20.0, True, None) == 20.0
    assert effective_offer_a(32.0, 63.0, True, 10.0) == 10.0
    assert effective_offer_a(16.0, 63.0, True, 40.0) == 16.0
    assert effective_offer_a(32.0, None, True, None) == 0.0
    assert effective_offer_a(32.0, None, False, None) == 32.0
    assert effective_offer_a(32.0, 32.0, True, 5.9) == 0.0


def test_settings_and_events_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="max_current_a"):
        ConnectorSettings(max_current_a=100.0)
    with pytest.raises(ValueError, match="connection_timeout_s"):
        ConnectorSettings(connection_timeout_s=0.0)
    with pytest.raises(ValueError, match="state_f_after_fault_s"):
        ConnectorSettings(state_f_after_fault_s=math.nan)
    with pytest.raises(ValueError, match="free_charging_id"):
        ConnectorSettings(free_charging_id="")
    with pytest.raises(ValueError, match="current_a"):
        LimitChanged(-1.0)
    with pytest.raises(ValueError, match="current_a"):
        CableRatingChanged(math.inf)


# --- start-up -----------------------------------------------------------------------------


def test_new_connector_starts_in_state_f_like_the_pilot_driver_and_leaves_it_at_once() -> None:
    machine = ConnectorMachine()
    assert machine.status == StatusChanged(S.AVAILABLE)
    assert machine.restate_outputs() == [
        OpenContactor(),
        SetStateF(),
        StatusChanged(S.AVAILABLE),
    ]
    assert machine.handle(CpChanged(F), 5.0) == [OfferCurrent(0.0)]  # our F: no CP error
    assert machine.handle(CpChanged(B), 5.1) == [StatusChanged(S.PREPARING)]
    assert not machine.contactor_closed


def test_idle_connector_restates_contactor_open_and_pwm_off(bench: Bench) -> None:
    assert bench.machine.restate_outputs() == [
        OpenContactor(),
        OfferCurrent(0.0),
        StatusChanged(S.AVAILABLE),
    ]


def test_connector_persisted_as_inoperative_starts_unavailable() -> None:
    assert Bench(available=False).status() is S.UNAVAILABLE


# --- sessions -----------------------------------------------------------------------------


def test_plug_in_without_authorization_waits_in_preparing_with_pwm_off(bench: Bench) -> None:
    bench.send(CableRatingChanged(32.0))
    assert bench.send(CpChanged(B)) == [StatusChanged(S.PREPARING)]
    assert bench.send(CpChanged(C), after_s=600.0) == []  # C1: the car waits, nothing closes
    assert bench.machine.pilot == PILOT_OFF
    assert not bench.machine.contactor_closed


def test_tap_after_plug_in_starts_transaction_and_offers_current(bench: Bench) -> None:
    bench.plug_in_with_cable(20.0)
    assert bench.send(IdPresented("04A1B2C3")) == [RequestAuthorization("04A1B2C3")]
    assert bench.send(Authorized("04A1B2C3", True)) == [
        StartTransaction("04A1B2C3"),
        OfferCurrent(20.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_tap_before_plug_in_starts_session_when_car_connects(bench: Bench) -> None:
    bench.send(CableRatingChanged(32.0))
    assert bench.send(IdPresented("04A1B2C3")) == [
        RequestAuthorization("04A1B2C3"),
        StatusChanged(S.PREPARING),
    ]
    assert bench.send(Authorized("04A1B2C3", True), after_s=1.0) == []
    assert bench.send(CpChanged(B), after_s=20.0) == [
        StartTransaction("04A1B2C3"),
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_contactor_closes_when_ev_requests_energy(bench: Bench) -> None:
    bench.start_session()
    assert bench.send(CpChanged(C)) == [CloseContactor(), StatusChanged(S.CHARGING)]
    assert bench.machine.contactor_closed


def test_car_already_in_c_gets_meter_start_then_current_then_contactor_after_diode_check(
    bench: Bench,
) -> None:
    bench.send(CableRatingChanged(32.0))
    bench.send(CpChanged(C))
    bench.send(IdPresented("AA"))
    assert bench.send(Authorized("AA", True)) == [
        StartTransaction("AA"),
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]
    assert not bench.machine.contactor_closed  # the PWM alone is no proof of a car's diode
    assert bench.send(PilotVerified(), after_s=0.03) == [
        CloseContactor(),
        StatusChanged(S.CHARGING),
    ]


def test_diode_verdict_from_before_the_pwm_or_for_a_gone_car_does_not_count(bench: Bench) -> None:
    bench.send(CableRatingChanged(32.0))
    bench.send(PilotVerified())  # no car seen yet: nothing to vouch for
    bench.send(CpChanged(C))
    bench.send(IdPresented("AA"))
    assert CloseContactor() not in bench.send(Authorized("AA", True))
    bench.send(PilotVerified())
    assert bench.machine.contactor_closed
    bench.send(CpChanged(A))  # unplugged: the next car is checked afresh
    bench.send(CpChanged(C))
    bench.send(IdPresented("BB"))
    assert CloseContactor() not in bench.send(Authorized("BB", True))


def test_diode_fault_needs_a_fresh_verdict_before_the_contactor_closes_again(
    bench: Bench,
) -> None:
    bench.charge()
    assert bench.send(FaultRaised(FaultKind.DIODE_FAULT))[0] == OpenContactor()
    bench.send(CpChanged(F), after_s=0.1)
    bench.send(FaultCleared(FaultKind.DIODE_FAULT), after_s=30.0)
    assert CloseContactor() not in bench.send(CpChanged(C), after_s=0.1)
    assert bench.send(PilotVerified(), after_s=0.03)[0] == CloseContactor()


def test_contactor_opens_when_ev_stops_requesting(bench: Bench) -> None:
    bench.charge()
    assert bench.send(CpChanged(B)) == [OpenContactor(), StatusChanged(S.SUSPENDED_EV)]
    assert bench.machine.pilot.offered_a == 32.0  # B2: the car may ask again


def test_unplug_under_load_opens_contactor_and_ends_transaction(bench: Bench) -> None:
    bench.charge()
    assert bench.send(CpChanged(A)) == [
        OpenContactor(),
        OfferCurrent(0.0),
        StopTransaction(StopReason.EV_DISCONNECTED, "04A1B2C3"),
        StatusChanged(S.AVAILABLE),
    ]


def test_unplug_keeps_transaction_when_stop_on_ev_disconnect_is_off() -> None:
    bench = Bench(ConnectorSettings(stop_on_ev_disconnect=False))
    bench.charge()
    assert bench.send(CpChanged(A)) == [
        OpenContactor(),
        OfferCurrent(0.0),
        StatusChanged(S.SUSPENDED_EV),
    ]
    assert bench.machine.transaction_id_tag == "04A1B2C3"
    assert bench.send(CpChanged(B)) == [OfferCurrent(32.0)]
    assert bench.send(CpChanged(C)) == []  # a car came back: its diode is checked again
    assert bench.send(PilotVerified()) == [CloseContactor(), StatusChanged(S.CHARGING)]


def test_enabling_stop_on_ev_disconnect_ends_a_transaction_kept_after_unplug() -> None:
    bench = Bench(ConnectorSettings(stop_on_ev_disconnect=False))
    bench.charge()
    bench.send(CpChanged(A))
    commands = bench.send(SettingsChanged(ConnectorSettings(stop_on_ev_disconnect=True)))
    assert StopTransaction(StopReason.EV_DISCONNECTED, "04A1B2C3") in commands
    assert bench.status() is S.AVAILABLE


def test_limit_below_6a_suspends_with_pwm_off(bench: Bench) -> None:
    bench.charge()
    assert bench.send(LimitChanged(5.0)) == [
        OpenContactor(),
        OfferCurrent(0.0),
        StatusChanged(S.SUSPENDED_EVSE),
    ]


def test_limit_back_above_6a_resumes_charging_with_the_car_still_in_c(bench: Bench) -> None:
    bench.charge()
    bench.send(LimitChanged(0.0))
    assert bench.send(LimitChanged(10.0)) == [
        OfferCurrent(10.0),
        CloseContactor(),
        StatusChanged(S.CHARGING),
    ]


def test_lower_limit_while_charging_only_changes_the_pwm(bench: Bench) -> None:
    bench.charge()
    assert bench.send(LimitChanged(16.0)) == [OfferCurrent(16.0)]
    assert bench.send(SettingsChanged(ConnectorSettings(max_current_a=10.0))) == [
        OfferCurrent(10.0)
    ]


def test_cable_rating_limits_the_offer(bench: Bench) -> None:
    bench.charge()
    assert bench.send(CableRatingChanged(13.0)) == [OfferCurrent(13.0)]


def test_socket_offers_nothing_until_the_cable_rating_is_known(bench: Bench) -> None:
    bench.send(CpChanged(B))
    bench.send(IdPresented("AA"))
    commands = bench.send(Authorized("AA", True))
    assert commands == [StartTransaction("AA"), StatusChanged(S.SUSPENDED_EVSE)]
    assert bench.send(CableRatingChanged(20.0)) == [
        OfferCurrent(20.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_tethered_cable_offers_the_connector_maximum_without_a_pp_rating() -> None:
    bench = Bench(ConnectorSettings(max_current_a=16.0, cable_rating_required=False))
    bench.send(CpChanged(B))
    bench.send(IdPresented("AA"))
    assert OfferCurrent(16.0) in bench.send(Authorized("AA", True))


def test_remote_stop_opens_contactor_then_pwm_off_then_stops_transaction(bench: Bench) -> None:
    bench.charge()
    assert bench.send(StopRequested(StopReason.REMOTE)) == [
        OpenContactor(),
        OfferCurrent(0.0),
        StopTransaction(StopReason.REMOTE, "04A1B2C3"),
        StatusChanged(S.FINISHING),
    ]


def test_finishing_lasts_until_the_ev_is_unplugged(bench: Bench) -> None:
    bench.charge()
    bench.send(StopRequested(StopReason.REMOTE))
    assert bench.send(CpChanged(B)) == []
    assert bench.send(CpChanged(C), after_s=30.0) == []  # the car asks; nothing is offered
    assert bench.status() is S.FINISHING
    assert bench.send(CpChanged(A)) == [StatusChanged(S.AVAILABLE)]


def test_new_card_during_finishing_starts_a_new_transaction(bench: Bench) -> None:
    bench.start_session("AA")
    bench.send(StopRequested(StopReason.REMOTE))
    bench.send(IdPresented("BB"))
    assert bench.send(Authorized("BB", True))[0] == StartTransaction("BB")


def test_same_card_tap_stops_transaction_locally_whatever_its_case(bench: Bench) -> None:
    bench.charge("04a1b2c3")
    assert bench.send(IdPresented("04A1B2C3")) == [
        OpenContactor(),
        OfferCurrent(0.0),
        StopTransaction(StopReason.LOCAL, "04a1b2c3"),
        StatusChanged(S.FINISHING),
    ]


def test_different_card_without_parent_does_not_stop_the_transaction(bench: Bench) -> None:
    bench.charge("AA")
    assert bench.send(IdPresented("BB")) == [AuthorizationDropped("BB", DropReason.NOT_OWNER)]
    assert bench.machine.contactor_closed


def test_different_card_with_the_same_parent_stops_the_transaction(bench: Bench) -> None:
    bench.charge("AA", parent_id="FAMILY")
    assert bench.send(IdPresented("BB")) == [RequestAuthorization("BB")]
    commands = bench.send(Authorized("BB", True, "family"))
    assert commands[0] == OpenContactor()
    assert StopTransaction(StopReason.LOCAL, "BB") in commands  # OCPP: the id that stopped it


def test_different_card_with_another_parent_does_not_stop_the_transaction(bench: Bench) -> None:
    bench.charge("AA", parent_id="FAMILY")
    bench.send(IdPresented("BB"))
    assert bench.send(Authorized("BB", True, "NEIGHBOURS")) == [
        AuthorizationDropped("BB", DropReason.NOT_OWNER)
    ]
    assert bench.status() is S.CHARGING


def test_the_parent_named_when_the_transaction_started_lets_a_card_of_it_stop_it(
    bench: Bench,
) -> None:
    bench.charge("AA")  # authorized without a parent
    bench.send(TransactionAnswered("FAMILY"))  # StartTransaction.conf names one
    assert bench.send(IdPresented("BB")) == [RequestAuthorization("BB")]
    commands = bench.send(Authorized("BB", True, "family"))
    assert StopTransaction(StopReason.LOCAL, "BB") in commands


def test_a_refused_id_kept_running_gets_no_more_energy_until_it_ends(bench: Bench) -> None:
    bench.charge("AA")
    commands = bench.send(TransactionAnswered(None, withhold_energy=True))
    assert commands[0] == OpenContactor()  # before the PWM goes off
    assert not bench.machine.contactor_closed and bench.machine.pilot.offered_a == 0
    assert bench.status() is S.SUSPENDED_EVSE and bench.machine.transaction_id_tag == "AA"
    bench.send(TransactionAnswered("FAMILY"))  # a later answer does not give it back
    bench.send(LimitChanged(32.0, LimitSource.CSMS))
    assert not bench.machine.contactor_closed and bench.status() is S.SUSPENDED_EVSE
    bench.send(IdPresented("AA"))  # the owner ends it; the next session charges again
    bench.send(CpChanged(CpState.A))
    bench.charge("AA")
    assert bench.machine.contactor_closed


def test_rejected_card_is_dropped_and_the_car_keeps_waiting(bench: Bench) -> None:
    bench.plug_in_with_cable()
    bench.send(IdPresented("AA"))
    assert bench.send(Authorized("AA", False)) == [AuthorizationDropped("AA", DropReason.REJECTED)]
    assert bench.status() is S.PREPARING
    assert bench.machine.transaction_id_tag is None


def test_authorization_expires_when_no_car_is_plugged_in_within_connection_timeout() -> None:
    bench = Bench(ConnectorSettings(connection_timeout_s=30.0))
    bench.send(IdPresented("AA"))
    bench.send(Authorized("AA", True), after_s=1.0)
    assert bench.machine.next_timer_at == pytest.approx(bench.now - 1.0 + 30.0)
    assert bench.send(Tick(), after_s=28.9) == []
    assert bench.send(Tick(), after_s=0.2) == [
        AuthorizationDropped("AA", DropReason.TIMED_OUT),
        StatusChanged(S.AVAILABLE),
    ]
    assert bench.send(CpChanged(B), after_s=1.0) == [StatusChanged(S.PREPARING)]
    assert bench.machine.transaction_id_tag is None


def test_unanswered_authorization_also_expires_after_connection_timeout() -> None:
    bench = Bench(ConnectorSettings(connection_timeout_s=30.0))
    bench.send(IdPresented("AA"))
    commands = bench.send(Tick(), after_s=30.0)
    assert AuthorizationDropped("AA", DropReason.TIMED_OUT) in commands
    assert bench.send(Authorized("AA", True)) == []  # too late: nothing waits for it


def test_plugged_car_without_authorization_waits_in_preparing_without_timeout(
    bench: Bench,
) -> None:
    bench.plug_in_with_cable()
    assert bench.send(Tick(), after_s=3600.0) == []
    assert bench.status() is S.PREPARING
    assert bench.machine.next_timer_at is None


def test_second_card_supersedes_a_waiting_authorization(bench: Bench) -> None:
    bench.send(IdPresented("AA"))
    assert bench.send(IdPresented("BB")) == [
        AuthorizationDropped("AA", DropReason.SUPERSEDED),
        RequestAuthorization("BB"),
    ]
    assert bench.send(Authorized("AA", True)) == []  # the stale answer changes nothing
    bench.send(Authorized("BB", True))
    assert StartTransaction("BB") in bench.send(CpChanged(B))


def test_repeated_tap_of_the_waiting_card_asks_only_once(bench: Bench) -> None:
    bench.send(IdPresented("AA"))
    assert bench.send(IdPresented("aa")) == []


def test_stop_request_without_transaction_cancels_the_waiting_authorization(
    bench: Bench,
) -> None:
    bench.send(IdPresented("AA"))
    assert bench.send(StopRequested(StopReason.UNLOCK_COMMAND)) == [
        AuthorizationDropped("AA", DropReason.CANCELLED),
        StatusChanged(S.AVAILABLE),
    ]


def test_authorized_remote_start_starts_the_transaction_when_the_car_connects(
    bench: Bench,
) -> None:
    assert bench.send(RemoteStart("APP-USER", authorized=True)) == [
        RemoteStartAnswered(True),
        StatusChanged(S.PREPARING),
    ]
    commands = bench.send(CpChanged(B))
    assert commands[0] == StartTransaction("APP-USER")


def test_remote_start_that_needs_authorization_asks_for_it_first(bench: Bench) -> None:
    bench.plug_in_with_cable()
    assert bench.send(RemoteStart("APP-USER", authorized=False)) == [
        RemoteStartAnswered(True),
        RequestAuthorization("APP-USER"),
    ]
    assert bench.send(Authorized("APP-USER", True))[0] == StartTransaction("APP-USER")


def test_remote_start_is_rejected_during_a_transaction(bench: Bench) -> None:
    bench.charge()
    assert bench.send(RemoteStart("OTHER", authorized=True)) == [RemoteStartAnswered(False)]


def test_free_charging_starts_a_transaction_at_plug_in() -> None:
    bench = Bench(ConnectorSettings(free_charging_id="FREE"))
    bench.send(CableRatingChanged(32.0))
    assert bench.send(CpChanged(B)) == [
        StartTransaction("FREE"),
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_free_charging_does_not_restart_after_a_stop_until_the_car_is_unplugged() -> None:
    bench = Bench(ConnectorSettings(free_charging_id="FREE"))
    bench.plug_in_with_cable()
    assert bench.machine.transaction_id_tag == "FREE"
    bench.send(StopRequested(StopReason.LOCAL))
    assert bench.send(CpChanged(C), after_s=5.0) == []
    assert bench.status() is S.FINISHING
    bench.send(CpChanged(A))
    assert bench.send(CpChanged(B))[0] == StartTransaction("FREE")


# --- faults -------------------------------------------------------------------------------


def test_fault_while_charging_opens_contactor_first_and_shows_state_f(bench: Bench) -> None:
    bench.charge()
    assert bench.send(FaultRaised(FaultKind.OVERTEMPERATURE)) == [
        OpenContactor(),
        SetStateF(),
        StatusChanged(S.FAULTED, FaultKind.OVERTEMPERATURE),
    ]
    assert bench.machine.transaction_id_tag == "04A1B2C3"  # suspended, not stopped


def test_state_f_is_held_at_least_300ms_after_a_fault(bench: Bench) -> None:
    bench.charge()
    bench.send(FaultRaised(FaultKind.METER_OFFLINE))
    bench.send(FaultCleared(FaultKind.METER_OFFLINE), after_s=0.05)
    assert bench.machine.pilot == PILOT_F
    assert bench.send(Tick(), after_s=0.2) == []
    assert bench.machine.next_timer_at == pytest.approx(bench.now + 0.05)
    assert bench.send(Tick(), after_s=0.06) == [OfferCurrent(0.0)]


def test_fault_suspends_the_transaction_and_charging_resumes_after_it_clears(
    bench: Bench,
) -> None:
    bench.charge()
    bench.send(FaultRaised(FaultKind.OVERTEMPERATURE))
    assert bench.send(CpChanged(F), after_s=0.1) == []  # the sensor reads our own -12 V
    bench.send(FaultCleared(FaultKind.OVERTEMPERATURE), after_s=60.0)
    assert bench.machine.cp_state is None  # the car was hidden: wait for a fresh reading
    assert bench.status() is S.SUSPENDED_EVSE
    assert bench.send(CpChanged(C), after_s=0.1) == [
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]
    assert bench.send(PilotVerified(), after_s=0.03) == [  # checked again after our F
        CloseContactor(),
        StatusChanged(S.CHARGING),
    ]


def test_fault_in_state_b_turns_pwm_off_without_state_f(bench: Bench) -> None:
    bench.start_session()
    assert bench.send(FaultRaised(FaultKind.METER_OFFLINE)) == [
        OfferCurrent(0.0),
        StatusChanged(S.FAULTED, FaultKind.METER_OFFLINE),
    ]
    assert bench.send(FaultCleared(FaultKind.METER_OFFLINE)) == [
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_rcd_trip_holds_state_f_until_it_clears(bench: Bench) -> None:
    bench.charge()
    assert bench.send(FaultRaised(FaultKind.RCD_TRIP))[:2] == [OpenContactor(), SetStateF()]
    assert bench.send(Tick(), after_s=60.0) == []
    assert bench.machine.pilot == PILOT_F
    assert bench.send(FaultCleared(FaultKind.RCD_TRIP)) == [
        OfferCurrent(0.0),
        StatusChanged(S.SUSPENDED_EVSE),
    ]


def test_welded_contactor_latches_state_f_and_ignores_fault_cleared(bench: Bench) -> None:
    bench.charge()
    bench.send(CpChanged(B))
    assert bench.send(FaultRaised(FaultKind.CONTACTOR_WELDED)) == [
        SetStateF(),
        StatusChanged(S.FAULTED, FaultKind.CONTACTOR_WELDED),
    ]
    assert bench.send(FaultCleared(FaultKind.CONTACTOR_WELDED), after_s=10.0) == []
    assert bench.send(CpChanged(C)) == []
    assert bench.machine.pilot == PILOT_F
    assert bench.status() is S.FAULTED


def test_failed_contactor_close_opens_it_and_clears_when_the_car_is_unplugged(
    bench: Bench,
) -> None:
    bench.charge()
    assert bench.send(FaultRaised(FaultKind.CONTACTOR_FAILED_CLOSE))[:2] == [
        OpenContactor(),
        SetStateF(),
    ]
    assert bench.send(CpChanged(F), after_s=0.1) == []
    assert bench.send(Tick(), after_s=0.3) == [OfferCurrent(0.0)]
    assert bench.send(CpChanged(A)) == [
        StopTransaction(StopReason.EV_DISCONNECTED, "04A1B2C3"),
        StatusChanged(S.AVAILABLE),
    ]


def test_diode_fault_pulses_state_f_even_in_b_and_clears_when_the_car_leaves(
    bench: Bench,
) -> None:
    bench.start_session()
    assert bench.send(FaultRaised(FaultKind.DIODE_FAULT))[0] == SetStateF()
    bench.send(CpChanged(F), after_s=0.01)
    bench.send(Tick(), after_s=0.3)
    bench.send(CpChanged(B), after_s=0.1)
    assert bench.status() is S.FAULTED
    bench.send(CpChanged(A))
    assert bench.status() is S.AVAILABLE


def test_cp_state_e_from_the_car_is_a_cp_error_until_a_valid_state_returns(
    bench: Bench,
) -> None:
    bench.charge()
    assert bench.send(CpChanged(E)) == [
        OpenContactor(),
        SetStateF(),
        StatusChanged(S.FAULTED, FaultKind.CP_ERROR),
    ]
    assert bench.send(CpChanged(F), after_s=0.05) == []
    assert bench.send(Tick(), after_s=0.3) == [OfferCurrent(0.0)]
    assert bench.send(CpChanged(E), after_s=0.1) == []  # the short is still there
    assert bench.status() is S.FAULTED
    assert bench.send(CpChanged(B), after_s=5.0) == [
        OfferCurrent(32.0),
        StatusChanged(S.SUSPENDED_EV),
    ]


def test_state_f_we_did_not_generate_is_a_cp_error(bench: Bench) -> None:
    bench.plug_in_with_cable()
    commands = bench.send(CpChanged(F), after_s=5.0)
    assert commands[-1] == StatusChanged(S.FAULTED, FaultKind.CP_ERROR)


def test_readings_during_our_state_f_are_ignored_until_f_ends(bench: Bench) -> None:
    bench.charge()
    bench.send(FaultRaised(FaultKind.RCD_TRIP))
    for state in (C, B, A, E, F):
        assert bench.send(CpChanged(state), after_s=0.1) == []
    assert bench.machine.cp_state is None
    assert bench.machine.transaction_id_tag == "04A1B2C3"


def test_state_f_pulse_can_be_disabled_for_cars_that_latch_on_f() -> None:
    bench = Bench(ConnectorSettings(state_f_after_fault_s=0.0))
    bench.charge()
    assert bench.send(FaultRaised(FaultKind.OVERTEMPERATURE))[:2] == [
        OpenContactor(),
        OfferCurrent(0.0),
    ]


def test_card_tap_while_faulted_is_not_accepted(bench: Bench) -> None:
    bench.send(FaultRaised(FaultKind.METER_OFFLINE))
    assert bench.send(IdPresented("AA")) == [AuthorizationDropped("AA", DropReason.NOT_ACCEPTING)]
    assert bench.send(RemoteStart("AA", authorized=True)) == [RemoteStartAnswered(False)]


def test_accepted_card_waits_for_a_fault_to_clear_before_starting(bench: Bench) -> None:
    bench.plug_in_with_cable()
    bench.send(IdPresented("AA"))
    bench.send(FaultRaised(FaultKind.METER_OFFLINE))
    assert bench.send(Authorized("AA", True)) == []
    commands = bench.send(FaultCleared(FaultKind.METER_OFFLINE), after_s=5.0)
    assert commands[0] == StartTransaction("AA")


# --- availability and ventilation ---------------------------------------------------------


def test_unavailable_while_charging_is_scheduled_until_the_transaction_ends(
    bench: Bench,
) -> None:
    bench.charge()
    assert bench.send(AvailabilityChanged(False)) == [
        AvailabilityAnswered(AvailabilityOutcome.SCHEDULED)
    ]
    assert bench.machine.contactor_closed
    commands = bench.send(StopRequested(StopReason.REMOTE))
    assert commands[0] == OpenContactor()
    assert commands[-1] == StatusChanged(S.UNAVAILABLE)


def test_unavailable_connector_takes_no_new_sessions(bench: Bench) -> None:
    assert bench.send(AvailabilityChanged(False)) == [
        AvailabilityAnswered(AvailabilityOutcome.ACCEPTED),
        StatusChanged(S.UNAVAILABLE),
    ]
    bench.plug_in_with_cable()
    assert bench.send(IdPresented("AA")) == [AuthorizationDropped("AA", DropReason.NOT_ACCEPTING)]
    assert bench.status() is S.UNAVAILABLE
    assert bench.machine.pilot == PILOT_OFF


def test_free_charging_waits_while_the_connector_is_unavailable() -> None:
    bench = Bench(ConnectorSettings(free_charging_id="FREE"), available=False)
    bench.plug_in_with_cable()
    assert bench.machine.transaction_id_tag is None
    assert StartTransaction("FREE") in bench.send(AvailabilityChanged(True))


def test_making_the_connector_available_again_cancels_a_scheduled_change(
    bench: Bench,
) -> None:
    bench.charge()
    bench.send(AvailabilityChanged(False))
    assert bench.send(AvailabilityChanged(True)) == [
        AvailabilityAnswered(AvailabilityOutcome.ACCEPTED)
    ]
    bench.send(CpChanged(A))
    assert bench.status() is S.AVAILABLE


def test_becoming_unavailable_cancels_a_waiting_authorization(bench: Bench) -> None:
    bench.send(IdPresented("AA"))
    assert bench.send(AvailabilityChanged(False)) == [
        AvailabilityAnswered(AvailabilityOutcome.ACCEPTED),
        AuthorizationDropped("AA", DropReason.CANCELLED),
        StatusChanged(S.UNAVAILABLE),
    ]


def test_state_d_without_ventilation_keeps_contactor_open_and_pwm_off(bench: Bench) -> None:
    bench.start_session()
    assert bench.send(CpChanged(D)) == [
        OfferCurrent(0.0),
        StatusChanged(S.SUSPENDED_EVSE),
    ]
    assert not bench.machine.contactor_closed


def test_state_d_with_ventilation_charges() -> None:
    bench = Bench(ConnectorSettings(ventilation=True))
    bench.start_session()
    assert bench.send(CpChanged(D)) == [CloseContactor(), StatusChanged(S.CHARGING)]


# --- time ---------------------------------------------------------------------------------


def test_clock_going_backwards_counts_as_no_time_passing(bench: Bench) -> None:
    bench.charge()
    bench.send(FaultRaised(FaultKind.METER_OFFLINE))
    bench.send(FaultCleared(FaultKind.METER_OFFLINE))
    assert bench.machine.handle(Tick(), bench.now - 100.0) == []
    assert bench.machine.pilot.mode is PilotMode.STATE_F
    assert bench.send(Tick(), after_s=0.3) == [OfferCurrent(0.0)]


def test_restate_outputs_never_closes_the_contactor(bench: Bench) -> None:
    bench.charge()
    assert bench.machine.restate_outputs() == [OfferCurrent(32.0), StatusChanged(S.CHARGING)]


def test_changed_settings_apply_to_the_next_session(bench: Bench) -> None:
    settings = replace(bench.machine.settings, free_charging_id="FREE")
    assert bench.send(SettingsChanged(settings)) == []
    bench.plug_in_with_cable()
    assert bench.machine.transaction_id_tag == "FREE"


def test_late_f_reading_just_after_our_state_f_is_not_a_cp_error(bench: Bench) -> None:
    bench.charge()
    bench.send(FaultRaised(FaultKind.METER_OFFLINE))
    bench.send(FaultCleared(FaultKind.METER_OFFLINE), after_s=0.1)
    assert bench.send(Tick(), after_s=0.2) == [OfferCurrent(0.0)]
    assert bench.send(CpChanged(F), after_s=0.2) == []  # the sensor debounced our F late
    assert bench.status() is S.SUSPENDED_EVSE
    bench.send(CpChanged(C), after_s=0.1)
    assert bench.send(PilotVerified(), after_s=0.03)[-1] == StatusChanged(S.CHARGING)
    assert bench.send(CpChanged(F), after_s=5.0)[0] == OpenContactor()  # this F is not ours
    assert bench.status() is S.FAULTED
