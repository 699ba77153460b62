"""Safety behaviours pinned one by one: each test names a rule a broken connector once broke.

Every test here was written against a deliberate change of the code (issue 19's table, or a
mutant that ``make mutate`` reported alive); docs/safety.md lists which change each catches.
They drive the real :class:`ConnectorMachine` through its one entry point, ``handle``.
"""

from __future__ import annotations

from controller.connector import ConnectorMachine
from controller.connector_types import (
    Authorized,
    CableRatingChanged,
    CloseContactor,
    Command,
    ConnectorSettings,
    CpChanged,
    Event,
    FaultCleared,
    FaultRaised,
    IdPresented,
    OfferCurrent,
    OpenContactor,
    PilotVerified,
    Tick,
)
from drivers.base import CpState
from drivers.errors import FaultKind


class Connector:
    """One machine and its clock; ``send`` returns the commands of that event."""

    def __init__(self, settings: ConnectorSettings | None = None) -> None:
        self.machine = ConnectorMachine(settings or ConnectorSettings())
        self.now = 100.0
        self.send(Tick())  # leave the boot-time state F

    def send(self, event: Event, after_s: float = 0.1) -> list[Command]:
        self.now += after_s
        return self.machine.handle(event, self.now)

    def charging(self, id_tag: str = "04A1B2C3") -> None:
        """Plug in, tap, accepted, diode seen, car asks: the contactor closes."""
        self.send(CableRatingChanged(32.0))
        self.send(CpChanged(CpState.B))
        self.send(IdPresented(id_tag))
        self.send(Authorized(id_tag, True))
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
