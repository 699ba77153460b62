"""Safety behaviours pinned one by one: each test names a rule a broken connector once broke.

Every test here was written against a deliberate change of the code (issue 19's table, or a
mutant that ``make mutate`` reported alive); docs/safety.md lists which change each catches.
They drive the real :class:`ConnectorMachine` through its one entry point, ``handle``.
"""

from __future__ import annotations

from typing import cast

import pytest

from controller.connector import ConnectorMachine
from controller.connector_safety import FaultResponse, policy_for
from controller.connector_types import (
    AuthorizationDropped,
    Authorized,
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
    OfferCurrent,
    OpenContactor,
    PilotVerified,
    RequestAuthorization,
    Reserved,
    SetStateF,
    StatusChanged,
    StopReason,
    StopTransaction,
    Tick,
)
from controller.limits import CurrentLimits, LimitSource, compute_offer
from drivers.base import CpState
from drivers.errors import FaultKind


class Connector:
    """One machine and its clock; ``send`` returns the commands of that event."""

    def __init__(self, settings: ConnectorSettings | None = None) -> None:
        self.machine = ConnectorMachine(settings or ConnectorSettings())
        self.now = 100.0
        self.send(Tick(), after_s=0.0)  # leave the boot-time state F (at 100 s exactly)

    def send(self, event: Event, after_s: float = 0.1) -> list[Command]:
        self.now += after_s
        return self.machine.handle(event, self.now)

    def session(self, id_tag: str = "04A1B2C3", parent_id: str | None = None) -> None:
        """Plug in (B), tap, accepted: the transaction runs and the PWM offers 32 A."""
        self.send(CableRatingChanged(32.0))
        self.send(CpChanged(CpState.B))
        self.send(IdPresented(id_tag))
        self.send(Authorized(id_tag, True, parent_id))
        assert self.machine.transaction_id_tag == id_tag

    def charging(self, id_tag: str = "04A1B2C3", parent_id: str | None = None) -> None:
        """A session whose car's diode was seen and which asks (C): the contactor closes."""
        self.session(id_tag, parent_id)
        self.send(PilotVerified())
        assert CloseContactor() in self.send(CpChanged(CpState.C))


def test_a_cleared_diode_fault_needs_a_fresh_diode_check_even_without_an_f_pulse() -> None:
    """The hypothesis counterexample of issue 19's row 5, kept as an explicit case.

    With the F pulse configured to 0, nothing else forgets the verdict: the fault must.
    """
    connector = Connector(ConnectorSettings(state_f_after_fault_s=0.0))
    connector.charging()
    assert connector.send(FaultRaised(FaultKind.DIODE_FAULT))[0] == OpenContactor()
    commands = connector.send(FaultCleared(FaultKind.DIODE_FAULT))
    assert OfferCurrent(32.0) in commands  # the PWM runs again so the diode can be judged
    assert CloseContactor() not in commands
    assert not connector.machine.contactor_closed
    assert connector.send(PilotVerified())[0] == CloseContactor()


def test_a_fault_kind_missing_from_the_table_gets_the_strictest_handling() -> None:
    """A kind added to FaultKind but not yet to FAULT_POLICY must hold F and latch."""
    unknown = cast(FaultKind, "a_fault_of_the_future")
    policy = policy_for(unknown)
    assert policy.response is FaultResponse.HOLD_F
    assert policy.latches


def test_a_pwm_off_fault_pulses_f_for_a_car_asking_in_c_before_the_contactor_closed() -> None:
    """IEC 61851-1 Table A.5 (CX -> F -> C1): the car asks for energy, so it is told by F,
    even while the contactor still waits for the diode check."""
    connector = Connector()
    connector.session()
    connector.send(CpChanged(CpState.C))  # asking, but no diode verdict yet
    assert not connector.machine.contactor_closed
    assert connector.send(FaultRaised(FaultKind.OVERTEMPERATURE))[0] == SetStateF()


def test_a_pwm_off_fault_sends_no_f_to_a_car_that_does_not_ask() -> None:
    connector = Connector()
    connector.session()
    assert connector.send(FaultRaised(FaultKind.OVERTEMPERATURE))[0] == OfferCurrent(0.0)


def test_an_f_read_a_full_second_after_our_f_is_the_car_s_and_a_cp_error() -> None:
    """Within 1 s an F is our own seen late (ignored); from 1 s on it is the car's."""
    late = Connector()
    late.send(CpChanged(CpState.F), after_s=0.99)  # 0.99 s after the boot F ended
    assert late.machine.cp_state is None
    assert not late.machine.active_faults
    car = Connector()
    assert car.send(CpChanged(CpState.F), after_s=1.0)[0] == SetStateF()  # the CP error's pulse
    assert FaultKind.CP_ERROR in car.machine.active_faults


def test_each_other_card_tapped_during_a_shared_session_is_checked_once() -> None:
    """A session with a parent id: every different card is asked about (a family member may
    stop it), the same card tapped again while its answer is awaited only once."""
    connector = Connector()
    connector.charging("04A1B2C3", "FAMILY")
    assert connector.send(IdPresented("DEADBEEF")) == [RequestAuthorization("DEADBEEF")]
    assert connector.send(IdPresented("DEADBEEF")) == []
    assert connector.send(IdPresented("CAFE0001")) == [RequestAuthorization("CAFE0001")]
    stopped = connector.send(Authorized("CAFE0001", True, "family"))
    assert StopTransaction(StopReason.LOCAL, "CAFE0001") in stopped


def test_an_answer_nobody_asked_for_does_not_stop_a_shared_session() -> None:
    connector = Connector()
    connector.charging("04A1B2C3", "FAMILY")
    assert connector.send(Authorized("DEADBEEF", True, "FAMILY")) == []
    assert connector.machine.contactor_closed


def test_a_waiting_card_is_dropped_when_its_reservation_is_given_to_another_id() -> None:
    """Accepted for a reserved connector, then the reservation (same id) goes to someone
    else before the car arrives: the card may no longer start a session there."""
    connector = Connector()
    connector.send(Reserved(7, "04A1B2C3", None, 1e6))
    connector.send(IdPresented("04A1B2C3"))
    connector.send(Authorized("04A1B2C3", True))
    commands = connector.send(Reserved(7, "DEADBEEF", None, 1e6))
    assert AuthorizationDropped("04A1B2C3", DropReason.RESERVED) in commands
    connector.send(CableRatingChanged(32.0))
    connector.send(CpChanged(CpState.B))
    assert connector.machine.transaction_id_tag is None


def test_a_car_paused_in_b_under_a_6_a_offer_is_suspended_by_the_ev() -> None:
    """Exactly 6 A is an offer: the EVSE is not what holds the car back."""
    connector = Connector(ConnectorSettings(max_current_a=6.0))
    connector.session()
    assert connector.machine.pilot.offered_a == 6.0
    assert connector.machine.status == StatusChanged(ConnectorStatus.SUSPENDED_EV)


def test_an_answer_about_another_card_neither_accepts_nor_rejects_the_waiting_one() -> None:
    connector = Connector()
    connector.send(IdPresented("04A1B2C3"))  # asked about, answer awaited
    assert connector.send(Authorized("DEADBEEF", True)) == []
    connector.send(CableRatingChanged(32.0))
    connector.send(CpChanged(CpState.B))
    assert connector.machine.transaction_id_tag is None  # not authorized by someone else's yes


def test_a_second_answer_does_not_undo_an_accepted_card() -> None:
    connector = Connector()
    connector.send(IdPresented("04A1B2C3"))
    connector.send(Authorized("04A1B2C3", True))
    assert connector.send(Authorized("04A1B2C3", False)) == []  # late, from a retry
    connector.send(CableRatingChanged(32.0))
    connector.send(CpChanged(CpState.B))
    assert connector.machine.transaction_id_tag == "04A1B2C3"


def test_a_limit_that_is_no_current_is_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"finite current >= 0 A, got -1\.0"):
        CurrentLimits().with_limit(LimitSource.USER, -1.0)


def test_sources_binding_together_are_named_in_their_declared_order() -> None:
    """ "Limited by" reads the same whichever source set its limit first."""
    limits = CurrentLimits().with_limit(LimitSource.THERMAL, 10.0)
    limits = limits.with_limit(LimitSource.USER, 10.0)
    offer = compute_offer(32.0, None, False, limits)
    assert offer.limited_by == (LimitSource.USER, LimitSource.THERMAL)
