"""The 1/3-phase switching sequence (controller/energy/phase_switch.py), alone.

First the sequence step by step as an installer would expect it, then random lives of one
connector against an independent account of the world (:class:`RandomPhaseSwitchLife`):
hypothesis plays the connector machine (its main contacts are seen open some time after a
hold or a fault, unless they are welded; it closes them only when nothing holds it and no
fault is active), the car
(its current, a meter that lags), the phase contactor (its feedback follows the coil after
a while, unless it does not pull in or is welded), faults and the clock. The test keeps
its own account from the commands alone and states the rules without calling the code:

- the phase contactor never changes while the main contactor is closed or current flows;
- two switches are at least ``min_interval_s`` apart, and none starts while a fault is
  active;
- a switch is released only when the phase contactor's feedback shows what it was told;
- a fault, in any step, ends with both contactors safe: the hold stays (the main contactor
  cannot close) until the connector's fault came and went, and the phase contactor is
  de-energized as soon as nothing flows; a mismatch names the right fault.
"""

from __future__ import annotations

import asyncio
import math
import os

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from controller.config import ConfigError, PhaseSwitchConfig, parse_config
from controller.domain import ConnectorView
from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager
from controller.energy.phase_control import PhaseControl
from controller.energy.phase_switch import (
    Command,
    HoldPwm,
    Observation,
    PhaseChoice,
    PhaseSwitch,
    PhaseSwitchSettings,
    RaiseFault,
    ReleasePwm,
    SetPhases,
    Step,
)
from controller.energy.setup import build_local_energy
from controller.events import Broadcast
from drivers.contactor import ContactorConfig, GpioContactor
from drivers.errors import ConfigurationError, FaultKind
from hw_sim.pins import SimContactorPins
from tests.support.wait import until

SETTINGS = PhaseSwitchSettings(
    min_interval_s=60.0, zero_current_timeout_s=10.0, feedback_timeout_s=2.0, zero_current_a=0.5
)
LONG = os.environ.get("PICHARGE_PROOF", "ci") == "long"


#: A fault of the connector's own, not the phase switch's.
OTHER_FAULT = FaultKind.RCD_TRIP


def quiet(
    main_closed: bool = False,
    current_a: float = 0.0,
    feedback: int | None = 1,
    fault: bool | FaultKind = False,
) -> Observation:
    kind = OTHER_FAULT if fault is True else fault or None
    return Observation(
        main_closed, current_a, feedback, frozenset() if kind is None else frozenset({kind})
    )


# --- the sequence, step by step -------------------------------------------------------------


def test_a_switch_pauses_waits_for_the_current_switches_checks_and_resumes() -> None:
    ps = PhaseSwitch(SETTINGS)
    assert ps.observe(quiet(main_closed=True, current_a=16.0), 0.0) == []
    assert ps.want(3, 1.0) == [HoldPwm()]  # the connector machine opens the main contactor
    assert ps.observe(quiet(main_closed=False, current_a=9.0), 1.1) == []  # meter lags
    assert ps.observe(quiet(main_closed=False, current_a=0.2), 2.0) == [SetPhases(3)]
    assert ps.observe(quiet(feedback=1), 2.1) == []  # the contacts are still moving
    assert ps.observe(quiet(feedback=3), 2.2) == [ReleasePwm()]
    assert (ps.step, ps.phases, ps.held) == (Step.STEADY, 3, False)


def test_the_next_switch_waits_for_the_minimum_interval() -> None:
    ps = PhaseSwitch(SETTINGS)
    ps.want(3, 0.0)
    assert ps.observe(quiet(feedback=3), 0.5) == [ReleasePwm()]
    assert ps.want(1, 10.0) == []
    assert ps.next_timer_at == pytest.approx(60.5)
    assert ps.tick(60.4) == []
    assert ps.tick(60.5) == [HoldPwm(), SetPhases(1)]  # nothing flowing: at once


def test_no_switch_starts_while_a_fault_is_active() -> None:
    ps = PhaseSwitch(SETTINGS)
    ps.observe(quiet(fault=True), 0.0)
    assert ps.want(3, 1.0) == []
    assert ps.observe(quiet(fault=False), 2.0) == [HoldPwm(), SetPhases(3)]


def test_a_fault_while_the_current_goes_cancels_the_switch() -> None:
    ps = PhaseSwitch(SETTINGS)
    ps.observe(quiet(main_closed=True, current_a=16.0), 0.0)
    assert ps.want(3, 0.0) == [HoldPwm()]
    assert ps.observe(quiet(main_closed=False, current_a=3.0, fault=True), 0.5) == [ReleasePwm()]
    assert (ps.step, ps.commanded) == (Step.STEADY, 1)


def test_current_that_does_not_go_is_a_fault_and_the_phase_contactor_stays_as_it_was() -> None:
    ps = PhaseSwitch(SETTINGS)
    ps.want(3, 0.0)
    ps.observe(quiet(feedback=3), 0.1)
    ps.observe(quiet(main_closed=True, current_a=16.0, feedback=3), 100.0)
    assert ps.want(1, 100.0) == [HoldPwm()]
    assert ps.tick(109.9) == []
    [fault] = ps.tick(110.0)
    assert isinstance(fault, RaiseFault) and fault.kind is FaultKind.CONTACTOR_WELDED
    assert fault.detail.startswith("the main contactor still closed 10 s after the PWM was")
    weld = FaultKind.CONTACTOR_WELDED
    assert ps.observe(quiet(main_closed=True, current_a=16.0, feedback=3, fault=weld), 111) == []
    # Once nothing flows, the coil drops to one phase; the hold stays while the fault lasts.
    assert ps.observe(quiet(feedback=3, fault=weld), 112.0) == [SetPhases(1)]
    assert ps.observe(quiet(feedback=1, fault=weld), 112.3) == []
    assert ps.held


def test_current_still_flowing_through_an_open_contactor_is_a_weld_too() -> None:
    ps = PhaseSwitch(SETTINGS)
    assert ps.want(3, 0.0) == [HoldPwm(), SetPhases(3)]
    ps.observe(quiet(feedback=3), 0.1)
    ps.observe(quiet(main_closed=True, current_a=16.0, feedback=3), 100.0)
    ps.want(1, 100.0)
    ps.observe(quiet(main_closed=False, current_a=16.0, feedback=3), 100.2)  # no feedback?
    [fault] = ps.tick(110.0)
    assert fault == RaiseFault(FaultKind.CONTACTOR_WELDED, fault.detail)  # type: ignore[union-attr]
    assert fault.detail.startswith("current flowing 10 s after")  # type: ignore[union-attr]


def test_only_one_or_three_phases_can_be_asked_for() -> None:
    with pytest.raises(ValueError, match="phases must be 1 or 3, got 2"):
        PhaseSwitch(SETTINGS).want(2, 0.0)


@pytest.mark.parametrize(
    ("target", "stuck_at", "kind"),
    [(3, 1, FaultKind.CONTACTOR_FAILED_CLOSE), (1, 3, FaultKind.CONTACTOR_WELDED)],
)
def test_a_feedback_mismatch_is_a_fault_that_names_the_contactor(
    target: int, stuck_at: int, kind: FaultKind
) -> None:
    ps = PhaseSwitch(SETTINGS)
    if target == 1:  # get onto three phases first
        ps.want(3, 0.0)
        ps.observe(quiet(feedback=3), 0.1)
    start = 100.0
    assert ps.want(target, start) == [HoldPwm(), SetPhases(target)]
    ps.observe(quiet(feedback=stuck_at), start + 1.0)
    commands = ps.tick(start + SETTINGS.feedback_timeout_s)
    assert commands[0] == RaiseFault(kind, commands[0].detail)  # type: ignore[union-attr]
    assert ps.commanded == 1 and ps.held
    what = "did not pull in" if target == 3 else "did not drop out"
    assert f"phase contactor {what}" in commands[0].detail  # type: ignore[union-attr]


def test_after_a_fault_cleared_it_starts_over_on_one_phase() -> None:
    ps = PhaseSwitch(SETTINGS)
    ps.want(3, 0.0)
    ps.tick(2.0)  # never pulled in: CONTACTOR_FAILED_CLOSE
    assert ps.step is Step.FAULTED
    assert ps.observe(quiet(feedback=1), 2.1) == []  # the fault not heard yet: hold stays
    assert ps.observe(quiet(feedback=1, fault=True), 2.15) == []  # another fault...
    assert ps.observe(quiet(feedback=1), 2.16) == []  # ... that cleared: ours still unheard
    assert ps.observe(quiet(feedback=1, fault=FaultKind.CONTACTOR_FAILED_CLOSE), 2.2) == []
    assert ps.observe(quiet(feedback=1, fault=False), 30.0) == [ReleasePwm()]  # unplugged
    assert (ps.step, ps.phases) == (Step.STEADY, 1)
    assert ps.tick(89.9) == []  # the minimum interval counts from the recovery
    assert ps.tick(90.0)[0] == HoldPwm()


# --- random lives against an independent account ---------------------------------------------


class RandomPhaseSwitchLife(RuleBasedStateMachine):
    """One connector with a phase switch, its car and its faults, at random."""

    @initialize()
    def start(self) -> None:
        self.ps = PhaseSwitch(SETTINGS)
        self.now = 0.0
        # The world, as the hardware would be.
        self.main_closed = False
        self.main_welded = False
        self.current_a = 0.0
        self.coil = 1  # what the phase contactor's coil was told
        self.feedback = 1
        self.pulls_in = True
        self.drops_out = True
        self.fault = False  # a fault of the connector's own (an RCD trip, ...)
        self.raised: FaultKind | None = None  # the fault the phase switch raised
        self.reported = False  # ... and the runner has heard it (FaultsChanged comes later)
        # The account kept from the commands alone.
        self.held = False
        self.fault_mode = False  # between a RaiseFault and the ReleasePwm that ends it
        self.fault_seen = False  # the connector's fault was active since the RaiseFault
        self.last_set_at: float | None = None
        self.switch_target: int | None = None
        self.switches = 0

    # -- feeding and checking ------------------------------------------------------------------

    def _observe(self) -> None:
        faults = {OTHER_FAULT} if self.fault else set()
        if self.raised is not None and self.reported:
            faults.add(self.raised)
        obs = Observation(self.main_closed, self.current_a, self.feedback, frozenset(faults))
        if self.raised is not None and self.reported and self.fault_mode:
            self.fault_seen = True  # the machine hears the connector's fault now
        self._run(self.ps.observe(obs, self.now))

    def _run(self, commands: list[Command]) -> None:
        for command in commands:
            self._check_and_apply(command)
        if commands:  # the runner looks again after acting, as the hardware moved
            self._observe()

    def _check_and_apply(self, command: Command) -> None:
        match command:
            case HoldPwm():
                assert not self.held, "a second hold while one is active"
                assert not self.fault and self.raised is None, "a switch started during a fault"
                self.held = True  # the main contacts open later (connector_opens_main_contactor)
            case SetPhases(phases=phases):
                assert not self.main_closed, "phase contactor switched with the main closed"
                assert self.current_a < SETTINGS.zero_current_a, "phase contactor under load"
                assert self.held, "phase contactor switched while the PWM runs"
                if self.fault_mode:
                    assert phases == 1, "a fault may only de-energize the phase contactor"
                else:
                    assert not self.fault and self.raised is None, "a switch during a fault"
                    if self.last_set_at is not None:
                        gap = self.now - self.last_set_at
                        assert gap >= SETTINGS.min_interval_s, f"switches {gap} s apart"
                    self.switch_target = phases
                    self.switches += 1
                self.last_set_at = self.now
                self.coil = phases
            case RaiseFault(kind=kind):
                assert self.held, "a fault outside a switch"
                self.fault_mode, self.fault_seen = True, False
                if self.switch_target is not None:  # the contactor was told and did not follow
                    expected = (
                        FaultKind.CONTACTOR_FAILED_CLOSE
                        if self.switch_target == 3
                        else FaultKind.CONTACTOR_WELDED
                    )
                    assert kind is expected
                    assert self.feedback != self.switch_target
                else:  # the current did not go
                    assert kind is FaultKind.CONTACTOR_WELDED
                    assert self.main_closed or self.current_a >= SETTINGS.zero_current_a
                self.switch_target = None
                self.raised = kind  # the connector hears it: it opens the main contactor
                self.reported = False  # the broadcast tells the runner a moment later
            case ReleasePwm():
                assert self.held
                if self.fault_mode:
                    assert self.fault_seen and self.raised is None, "hold released in a fault"
                    assert not self.main_closed, "hold released with the main contacts closed"
                    assert self.current_a < SETTINGS.zero_current_a, "released with current"
                    assert self.feedback == 1 == self.coil, "released with L2/L3 not safe"
                elif self.switch_target is not None:
                    assert self.feedback == self.switch_target, "released before the feedback"
                self.held = self.fault_mode = False
                self.switch_target = None

    @invariant()
    def a_fault_leaves_both_contactors_safe(self) -> None:
        if not hasattr(self, "ps"):
            return
        if self.fault_mode:
            assert self.held, "the main contactor could close during a fault"
            unloaded = not self.main_closed and self.current_a < SETTINGS.zero_current_a
            if unloaded:
                assert self.coil == 1, "phase contactor left energized with nothing flowing"

    # -- the world -------------------------------------------------------------------------

    @rule(phases=st.sampled_from([1, 3]))
    def controller_wants(self, phases: int) -> None:
        self._run(self.ps.want(phases, self.now))

    @rule()
    def controller_wants_the_other_count(self) -> None:
        self._run(self.ps.want(4 - self.ps.phases, self.now))

    @rule(dt=st.sampled_from([0.1, 0.5, 1.9, 2.0, 5.0, 9.9, 10.0, 30.0, 59.9, 60.0, 120.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self._run(self.ps.tick(self.now))

    @precondition(lambda self: not self.held and not self.fault)
    @rule()
    def connector_closes_main_contactor(self) -> None:
        self.main_closed = True
        self._observe()

    @precondition(lambda self: not self.main_welded)
    @rule()
    def connector_opens_main_contactor(self) -> None:
        self.main_closed = False
        self._observe()

    @rule(current_a=st.sampled_from([0.0, 0.3, 0.5, 6.0, 16.0, 32.0]))
    def meter_reads(self, current_a: float) -> None:
        # With the main contacts open a lagging meter may still read a current.
        self.current_a = current_a
        self._observe()

    @precondition(lambda self: not self.main_closed)
    @rule()
    def current_dies_away(self) -> None:
        self.current_a = 0.0
        self._observe()

    @rule()
    def phase_contactor_settles(self) -> None:
        if (self.coil == 3 and self.pulls_in) or (self.coil == 1 and self.drops_out):
            self.feedback = self.coil
        self._observe()

    @rule(part=st.sampled_from(["no pull-in", "no drop-out", "main weld", "repaired"]))
    def hardware_wears(self, part: str) -> None:
        if part == "repaired":
            self.pulls_in = self.drops_out = True
            self.main_welded = False
        else:
            self.pulls_in = self.pulls_in and part != "no pull-in"
            self.drops_out = self.drops_out and part != "no drop-out"
            self.main_welded = self.main_welded or part == "main weld"

    @rule(active=st.booleans())
    def fault_changes(self, active: bool) -> None:
        self.fault = active  # the main contacts open a moment later
        self._observe()

    @precondition(lambda self: self.raised is not None and not self.reported)
    @rule()
    def the_broadcast_reports_the_fault(self) -> None:
        self.reported = True
        self._observe()

    @precondition(lambda self: self.raised is FaultKind.CONTACTOR_FAILED_CLOSE and self.reported)
    @rule()
    def unplugging_clears_the_failed_close(self) -> None:
        # FAULT_POLICY: a contactor that failed to close is retried with the next plug-in;
        # a weld latches until a restart.
        self.raised = None
        self._observe()

    def teardown(self) -> None:
        if hasattr(self, "ps"):
            event(f"switches made: {min(self.switches, 3)}{'+' if self.switches > 3 else ''}")
            event(f"ended faulted: {self.fault_mode}")


RandomPhaseSwitchLife.TestCase.settings = settings(
    max_examples=2000 if LONG else 300,
    stateful_step_count=80 if LONG else 50,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRandomLivesKeepThePhaseSwitchRules = RandomPhaseSwitchLife.TestCase


# --- when to switch -----------------------------------------------------------------------------


def test_one_phase_when_three_cannot_have_6_a_but_one_can() -> None:
    choice = PhaseChoice(min_interval_s=60.0)
    assert choice.decide(3, offer_three_a=10.0, offer_one_a=10.0, now=0.0) == 3
    assert choice.decide(3, offer_three_a=4.0, offer_one_a=14.0, now=1.0) == 1
    assert choice.decide(3, offer_three_a=4.0, offer_one_a=5.0, now=2.0) == 3  # nothing gained
    assert choice.decide(1, offer_three_a=4.0, offer_one_a=5.0, now=3.0) == 1


def test_6_a_is_enough_and_just_below_is_not() -> None:
    choice = PhaseChoice(min_interval_s=60.0)
    assert choice.decide(3, offer_three_a=6.0, offer_one_a=6.0, now=0.0) == 3
    assert choice.decide(3, offer_three_a=5.99, offer_one_a=6.0, now=1.0) == 1
    assert choice.decide(3, offer_three_a=5.99, offer_one_a=5.99, now=2.0) == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"min_interval_s": -1.0},
        {"zero_current_timeout_s": math.inf},
        {"feedback_timeout_s": math.nan},
        {"zero_current_a": 0.0},
        {"zero_current_a": math.inf},
    ],
)
def test_settings_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        PhaseSwitchSettings(**bad)
    PhaseSwitchSettings(min_interval_s=0.0, zero_current_timeout_s=0.0, feedback_timeout_s=0.0)


def test_back_to_three_only_after_enough_for_longer_than_the_minimum_interval() -> None:
    choice = PhaseChoice(min_interval_s=60.0)
    assert choice.decide(1, 7.0, 20.0, now=-1.0) == 3  # at start: three at once
    assert choice.decide(1, 5.0, 20.0, now=-0.5) == 1
    assert choice.decide(1, 7.0, 20.0, now=0.0) == 1
    assert choice.decide(1, 7.0, 20.0, now=60.0) == 1
    assert choice.decide(1, 5.0, 20.0, now=61.0) == 1  # a dip starts the wait over
    assert choice.decide(1, 7.0, 20.0, now=62.0) == 1
    assert choice.decide(1, 7.0, 20.0, now=122.0) == 1
    assert choice.decide(1, 7.0, 20.0, now=122.1) == 3


# --- the coil's own interlock (controller/energy/phase_control.py) ------------------------------


class NoCharger:
    def set_limit(self, connector_id: int, source: object, current_a: float | None) -> None:
        raise AssertionError("not expected here")

    def set_fault(self, kind: FaultKind, active: bool, connector_id: int = 0) -> None:
        raise AssertionError("not expected here")

    def view(self, connector_id: int) -> ConnectorView:
        raise AssertionError("not expected here")


async def test_the_phase_coil_never_moves_while_the_main_contactor_is_closed() -> None:
    """Defence in depth: even a sequence that asked for a switch too early (a bug) cannot
    move the phase contactor while the main contactor's coil is energized."""
    factory = MockFactory()
    main_cfg = ContactorConfig(coil_pin=17, feedback_pin=27)
    phase_cfg = ContactorConfig(coil_pin=5, feedback_pin=6)
    pins = [SimContactorPins.from_config(factory, c) for c in (main_cfg, phase_cfg)]
    main = GpioContactor(main_cfg, pin_factory=factory, name="main")
    phase = GpioContactor(phase_cfg, pin_factory=factory, name="phase")
    try:
        feed = GridFeed()
        manager = FuseManager(Site(fuse_a=25.0), [ConnectorWiring(1)], feed, NoCharger())
        control = PhaseControl(
            PhaseSwitchConfig(connector=1), ConnectorWiring(1), main, phase, manager, feed,
            NoCharger(),
        )  # fmt: skip
        await main.close()
        control._drive_coil(3)
        await asyncio.sleep(phase_cfg.open_settle_s + phase_cfg.close_settle_s)
        assert not phase.energized and not pins[1].main_contacts_closed
        main.open()
        await main.verify_open()
        control._drive_coil(3)
        await until(lambda: pins[1].main_contacts_closed, what="the phase contactor closed")
    finally:
        for driver in (main, phase):
            driver.release()
        for sim in pins:
            sim.close()
        factory.close()


# --- configuration ---------------------------------------------------------------------------


def phase_switch_doc(**table: object) -> dict[str, object]:
    keys: dict[str, object] = {"contactor_pin": 5, "feedback_pin": 6, **table}
    return {"site": {"fuse_a": 25}, "grid_meter": {"source": "push"}, "phase_switch": keys}


def test_the_phase_switch_is_read_from_its_table() -> None:
    config = parse_config(phase_switch_doc(min_interval_s=600, feedback_type="auxiliary"))
    assert config.phase_switch is not None
    assert config.phase_switch.connector == 1 and config.phase_switch.min_interval_s == 600.0
    assert config.phase_switch.drivers == {
        "contactor_pin": 5,
        "feedback_pin": 6,
        "feedback_type": "auxiliary",
    }
    assert parse_config({}).phase_switch is None


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"phase_switch": {"feedback_pin": 6}}, "phase_switch.contactor_pin"),
        ({"phase_switch": {"contactor_pin": 5}}, "phase_switch.feedback_pin"),
        (phase_switch_doc(feedback_type="none"), "phase_switch.feedback_type"),
        (phase_switch_doc(connector=2), "phase_switch.connector"),
        (phase_switch_doc(min_interval_s=1), "phase_switch.min_interval_s"),
        (phase_switch_doc(zero_current_timeout_s=3), "phase_switch.zero_current_timeout_s"),
        (phase_switch_doc(min_interval=300), "phase_switch.min_interval"),
        ({**phase_switch_doc(), "connector": [{"phases": 1}]}, "phase_switch.connector"),
    ],
)
def test_a_wrong_phase_switch_is_refused_naming_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(doc)
    assert refused.value.key == key


def test_a_phase_switch_without_a_fuse_to_steer_by_is_refused() -> None:
    doc = phase_switch_doc()
    del doc["site"], doc["grid_meter"]
    with pytest.raises(ConfigurationError) as refused:
        build_local_energy(parse_config(doc), NoCharger(), Broadcast(), lambda event: None)
    assert refused.value.key == "phase_switch"
