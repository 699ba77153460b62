"""1/3-phase switching: the sequence that moves a connector between one and three phases.

A second contactor (the phase contactor) carries L2 and L3 to the connector; de-energized
the car gets L1 alone, which is the safe state (a dead coil can only lower the current).
Switching it under load arcs its contacts and surprises the car's on-board charger, so a
switch follows a fixed sequence, here as a pure state machine (no I/O, no clock: ``now``
arrives with every call, in seconds of a monotonic clock):

1. ``HoldPwm``: the connector's ``PHASE_SWITCH`` limit goes to 0 A. The connector machine
   then stops the PWM and opens the main contactor in the same call (connector_safety:
   no offer below 6 A, no closed contactor), and keeps it open while the hold lasts.
2. Wait until the main contactor is seen open and the car's current gone (below
   ``zero_current_a``). Neither within ``zero_current_timeout_s``: current flows through a
   contactor that was told to open; that is a fault (``CONTACTOR_WELDED``, the error code
   OCPP calls PowerSwitchFailure), never a switch.
3. ``SetPhases(n)``: the phase contactor is energized (3) or de-energized (1).
4. Its feedback must show ``n`` within ``feedback_timeout_s``. A mismatch is a fault: it
   did not pull in (``CONTACTOR_FAILED_CLOSE``) or did not drop out (``CONTACTOR_WELDED``);
   the coil is de-energized (``SetPhases(1)``) once nothing flows, and the hold stays.
5. ``ReleasePwm``: the hold is cleared, the main contactor may close again, the PWM resumes.

A switch starts only at least ``min_interval_s`` after the previous one ended (a solar
surplus around the threshold must not wear the contactors), never while a fault is active
on the connector, and never while one is under way. A fault that appears while the
machine waits for the current to go (step 2) cancels the switch: the fault keeps the main
contactor open by itself. ``tests/test_phase_switch.py`` checks these rules as properties.

After a fault the machine keeps the hold until the connector was seen with the fault it
raised and that fault has cleared again (another fault that clears meanwhile does not
count), and the phase contactor's feedback shows the de-energized state: then it starts
over on one phase. A welded contact keeps the connector's fault latched, so the connector
stays off until a repair and a restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from controller.limits import MIN_OFFER_A
from drivers.errors import FaultKind

#: The phase counts a phase switch knows: de-energized 1, energized 3.
PHASE_COUNTS = (1, 3)


class Step(StrEnum):
    """Where the sequence is."""

    STEADY = "steady"  # on ``phases``; nothing held
    PAUSING = "pausing"  # PWM held at 0: waiting for the main contactor and the current
    SWITCHING = "switching"  # phase contactor commanded: waiting for its feedback
    FAULTED = "faulted"  # held until the connector's fault came and went


@dataclass(frozen=True, slots=True)
class PhaseSwitchSettings:
    """Timing of the sequence, in seconds; ``zero_current_a`` in amperes.

    ``zero_current_timeout_s`` exceeds IEC 61851-1's 6 s for an EV to stop drawing, and
    the meter's poll period; ``feedback_timeout_s`` exceeds a contactor's settle time.
    """

    min_interval_s: float = 300.0
    zero_current_timeout_s: float = 10.0
    feedback_timeout_s: float = 2.0
    zero_current_a: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_interval_s", "zero_current_timeout_s", "feedback_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite value >= 0, got {value!r}")
        if not math.isfinite(self.zero_current_a) or self.zero_current_a <= 0:
            raise ValueError(f"zero_current_a must be > 0, got {self.zero_current_a!r}")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the runner last saw of the connector.

    ``main_closed``: the main contactor's coil is energized or its feedback shows the main
    contacts closed (either counts as closed). ``car_current_a``: the largest phase current
    of the connector's meter. ``feedback_phases``: what the phase contactor's feedback shows
    (1 or 3; None without a reading). ``faults``: the faults active on the connector.
    """

    main_closed: bool
    car_current_a: float
    feedback_phases: int | None
    faults: frozenset[FaultKind] = frozenset()

    @property
    def fault_active(self) -> bool:
        """Any fault is active on the connector."""
        return bool(self.faults)


@dataclass(frozen=True, slots=True)
class HoldPwm:
    """Set the connector's PHASE_SWITCH limit to 0 A (PWM off, main contactor open)."""


@dataclass(frozen=True, slots=True)
class ReleasePwm:
    """Clear the connector's PHASE_SWITCH limit."""


@dataclass(frozen=True, slots=True)
class SetPhases:
    """Drive the phase contactor: energized for 3, de-energized for 1."""

    phases: int


@dataclass(frozen=True, slots=True)
class RaiseFault:
    """Raise ``kind`` on the connector (it opens the main contactor and reports it)."""

    kind: FaultKind
    detail: str


Command = HoldPwm | ReleasePwm | SetPhases | RaiseFault


class PhaseSwitch:
    """The switching sequence of one connector. Loop thread only; not thread-safe.

    Feed it with :meth:`want` (the controller's decision), :meth:`observe` (each new look
    at the connector) and :meth:`tick` (at :attr:`next_timer_at`); execute the commands it
    returns in order. It starts on one phase (the coil de-energized at start), nothing held.
    """

    def __init__(self, settings: PhaseSwitchSettings | None = None) -> None:
        self.settings = settings or PhaseSwitchSettings()
        self.step = Step.STEADY
        #: The phases the connector is on (confirmed by the feedback), or was last on.
        self.phases = 1
        #: The phases the controller asks for.
        self.wanted = 1
        self._target = 1
        self._obs = Observation(False, 0.0, None)
        self._step_since = -math.inf
        self._last_switch_at = -math.inf  # when the last switch ended
        self._raised: FaultKind | None = None  # the fault this machine raised last
        self._fault_heard = False
        #: What the coil was last told (the driver starts de-energized: 1).
        self.commanded = 1

    @property
    def held(self) -> bool:
        """True while the PWM is held at 0 A."""
        return self.step is not Step.STEADY

    @property
    def next_timer_at(self) -> float | None:
        """When :meth:`tick` must run next (a timeout, or the minimum interval's end)."""
        s = self.settings
        if self.step is Step.PAUSING:
            return self._step_since + s.zero_current_timeout_s
        if self.step is Step.SWITCHING:
            return self._step_since + s.feedback_timeout_s
        if self.step is Step.STEADY and self.wanted != self.phases:
            return self._last_switch_at + s.min_interval_s
        return None

    def want(self, phases: int, now: float) -> list[Command]:
        """The controller asks for ``phases`` (1 or 3); a switch starts when it may."""
        if phases not in PHASE_COUNTS:
            raise ValueError(f"phases must be 1 or 3, got {phases!r}")
        self.wanted = phases
        return self._advance(now)

    def observe(self, obs: Observation, now: float) -> list[Command]:
        """A new look at the connector and the phase contactor."""
        self._obs = obs
        return self._advance(now)

    def tick(self, now: float) -> list[Command]:
        """Let timeouts and the minimum interval take effect."""
        return self._advance(now)

    # --- the sequence ---------------------------------------------------------------------

    def _advance(self, now: float) -> list[Command]:
        match self.step:
            case Step.STEADY:
                return self._steady(now)
            case Step.PAUSING:
                return self._pausing(now)
            case Step.SWITCHING:
                return self._switching(now)
            case Step.FAULTED:
                return self._faulted(now)

    def _enter(self, step: Step, now: float) -> None:
        self.step = step
        self._step_since = now

    def _steady(self, now: float) -> list[Command]:
        if self.wanted == self.phases or self._obs.fault_active:
            return []
        if now - self._last_switch_at < self.settings.min_interval_s:
            return []
        self._target = self.wanted
        self._enter(Step.PAUSING, now)
        return [HoldPwm(), *self._pausing(now)]

    def _pausing(self, now: float) -> list[Command]:
        obs = self._obs
        if obs.fault_active:  # the fault keeps the main contactor open: nothing to switch
            self._enter(Step.STEADY, now)
            return [ReleasePwm()]
        if self._unloaded():
            self._enter(Step.SWITCHING, now)
            return [self._set(self._target), *self._switching(now)]
        if now - self._step_since >= self.settings.zero_current_timeout_s:
            what = "the main contactor still closed" if obs.main_closed else "current flowing"
            return self._fault(
                now,
                FaultKind.CONTACTOR_WELDED,
                f"{what} {self.settings.zero_current_timeout_s:.0f} s after the PWM was "
                f"paused for a switch to {self._target} phase(s) ({obs.car_current_a:.1f} A)",
            )
        return []

    def _switching(self, now: float) -> list[Command]:
        seen = self._obs.feedback_phases
        if seen == self._target:
            self.phases = self._target
            self._last_switch_at = now
            self._enter(Step.STEADY, now)
            return [ReleasePwm()]
        if now - self._step_since < self.settings.feedback_timeout_s:
            return []
        if self._target == 3:
            kind, what = FaultKind.CONTACTOR_FAILED_CLOSE, "did not pull in"
        else:
            kind, what = FaultKind.CONTACTOR_WELDED, "did not drop out"
        return self._fault(
            now,
            kind,
            f"phase contactor {what}: feedback shows {seen} phase(s) "
            f"{self.settings.feedback_timeout_s:.1f} s after switching to {self._target}",
        )

    def _fault(self, now: float, kind: FaultKind, detail: str) -> list[Command]:
        """Raise ``kind`` first (it opens the main contactor), then make the coil safe."""
        self._enter(Step.FAULTED, now)
        self._raised, self._fault_heard = kind, False
        return [RaiseFault(kind, detail), *self._faulted(now)]

    def _set(self, phases: int) -> SetPhases:
        self.commanded = phases
        return SetPhases(phases)

    def _unloaded(self) -> bool:
        return not self._obs.main_closed and self._obs.car_current_a < self.settings.zero_current_a

    def _faulted(self, now: float) -> list[Command]:
        obs = self._obs
        # The coil goes to its safe state as soon as nothing flows (a timeout left it as
        # it was, under load); no minimum interval holds back a move to safety.
        commands: list[Command] = [self._set(1)] if self.commanded != 1 and self._unloaded() else []
        if self._raised in obs.faults:
            # Only our own fault counts: another one, about to clear, would end the hold
            # before the connector has even heard of ours (its report comes a moment later).
            self._fault_heard = True
            return commands
        if not self._fault_heard or not self._unloaded() or obs.feedback_phases != 1:
            return commands
        self.phases = 1
        self._last_switch_at = now
        self._enter(Step.STEADY, now)
        return [*commands, ReleasePwm()]


class PhaseChoice:
    """When to ask for one phase and when for three (pure; ``now`` in seconds).

    One phase when the offer on three is below 6 A but the offer on one phase is 6 A or
    more (the house's other load or a small solar surplus leaves room for a car on one phase
    only); three again once the offer on three has been 6 A or more for longer than
    ``min_interval_s`` without a break, so a passing cloud or the oven's thermostat does not
    wear the contactors. With neither enough, it stays where it is (the car is paused by the
    limit anyway; a switch would gain nothing). At start three phases count as enough since
    ever: the phase contactor starts de-energized, and a switch with nothing flowing is free.
    """

    def __init__(self, min_interval_s: float) -> None:
        self.min_interval_s = min_interval_s
        self._three_enough_since: float | None = -math.inf

    def decide(self, phases_now: int, offer_three_a: float, offer_one_a: float, now: float) -> int:
        """The phases to ask for, given the offers on three phases and on one (A)."""
        if offer_three_a < MIN_OFFER_A:
            self._three_enough_since = None
            return 1 if offer_one_a >= MIN_OFFER_A else phases_now
        if self._three_enough_since is None:
            self._three_enough_since = now
        if phases_now == 1 and now - self._three_enough_since <= self.min_interval_s:
            return 1
        return 3
