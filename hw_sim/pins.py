"""The electrical side of the GPIO lines, played on a gpiozero ``MockFactory``.

The drivers open their gpiozero devices on the same factory and run unchanged; this module
is what sits on the far side of the header: a contactor whose coil follows the coil pin and
whose feedback contact drives the feedback pin (or sticks, for the weld fault), and an RCM
whose fault output follows a residual current or its TEST input.

Build the simulated pins *before* the drivers (and after any ``factory.reset()``): they
create the factory's pins with their own pin classes. Both pin classes are real ``MockPin``
subclasses, so ``pin.states`` keeps gpiozero's timestamped history for benchmarks and
``assert_states_and_times`` works as usual.

Threads: a pin change made by a driver reaches the simulated circuit on the driver's thread
(the loop thread, or whichever thread called ``GpioContactor.open``); with a mechanical or
response delay, the consequence happens later on a ``threading.Timer`` thread
(``sim-relay``). Listener callbacks run on those same threads: bridge them to a loop
before touching loop state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from gpiozero.pins.mock import MockFactory, MockPin

from drivers.contactor import ContactorConfig, FeedbackType
from drivers.cp_window import CpWindowConfig
from drivers.rcm import RcmConfig
from drivers.threads import name_current_thread

logger = logging.getLogger(__name__)

LevelListener = Callable[[bool | None], None]
StateListener = Callable[[bool], None]


class WatchedOutputPin(MockPin):
    """A ``MockPin`` that tells the circuit behind it when the driver changes its output.

    Listeners get :attr:`output_level`: the driven level, or None while the pin is an input
    (floating; the board's pull resistor decides). They are called only when that changes,
    and ``output_with_state`` (gpiozero's glitch-free "become an output at this level")
    reports once, without the intermediate level a real pin never shows either.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        self._listeners: list[LevelListener] = []
        self._quiet = False
        self._reported: bool | None = None
        super().__init__(factory, info)

    @property
    def output_level(self) -> bool | None:
        return bool(self._state) if self._function == "output" else None

    def add_listener(self, listener: LevelListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: LevelListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def output_with_state(self, state: Any) -> None:
        self._quiet = True
        try:
            super().output_with_state(state)
        finally:
            self._quiet = False
        self._notify()

    def _set_function(self, value: str) -> None:
        super()._set_function(value)
        self._notify()

    def _change_state(self, value: Any) -> bool:
        changed: bool = super()._change_state(value)
        if changed:
            self._notify()
        return changed

    def _notify(self) -> None:
        if self._quiet:
            return
        level = self.output_level
        if level == self._reported:
            return
        self._reported = level
        for listener in list(self._listeners):
            listener(level)


class DrivenInputPin(MockPin):
    """A ``MockPin`` input wired to something that drives it (an opto transistor, an RCM
    output): a driven level wins over the pull resistor the driver configures, as it does
    electrically. :meth:`drive` changes the level and fires the driver's edge callback on
    the calling thread, as ``drive_high``/``drive_low`` do.
    """

    def __init__(self, factory: Any, info: Any) -> None:
        self._driven: bool | None = None
        super().__init__(factory, info)

    @property
    def driven(self) -> bool | None:
        return self._driven

    def drive(self, level: bool | None) -> None:
        """Force ``level`` onto the line, or release it (None) to the pull resistor."""
        self._driven = level
        if self._function != "input":
            return  # misconfigured as an output by a driver: the level applies once it is an input
        target = level if level is not None else {"up": True, "down": False}.get(self._pull)
        if target is True:
            self.drive_high()
        elif target is False:
            self.drive_low()

    def _change_state(self, value: Any) -> bool:
        if self._driven is not None and bool(value) != self._driven:
            return False  # the pull resistor loses against the circuit driving the line
        changed: bool = super()._change_state(value)
        return changed

    def _set_function(self, value: str) -> None:
        super()._set_function(value)
        if value == "input" and self._driven is not None:
            super()._change_state(self._driven)


_PinT = TypeVar("_PinT", bound=MockPin)


def _claim(factory: MockFactory, number: int, pin_class: type[_PinT]) -> _PinT:
    pin = factory.pin(number, pin_class=pin_class)
    if not isinstance(pin, pin_class):
        raise ValueError(
            f"GPIO{number} already exists as a {type(pin).__name__}: build the simulated pins "
            "before the drivers (and again after factory.reset())"
        )
    return pin


DELAY_THREAD = "sim-relay"


class _Delayed:
    """Runs one pending action after a delay on a timer thread; a new one replaces it."""

    def __init__(self, delay_s: float, action: Callable[[], None]) -> None:
        self._delay_s = delay_s
        self._action = action
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def trigger(self) -> None:
        if self._delay_s <= 0:
            self._action()
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._delay_s, self._act_on_timer)
            self._timer.name = DELAY_THREAD
            self._timer.daemon = True
            self._timer.start()

    def _act_on_timer(self) -> None:
        name_current_thread(DELAY_THREAD)  # a Timer is a Thread: name it for the OS too
        self._action()

    def close(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()


class SimContactorPins:
    """A contactor with a feedback contact, wired to a coil pin and a feedback pin.

    The main contacts follow the coil after ``mechanical_delay_s`` (0 = in the same call);
    the feedback pin follows the main contacts (a mirror contact is their opposite), unless
    :meth:`set_welded` makes them stick closed or :meth:`set_stuck_open` keeps them from
    closing. A coil pin that is an input (released, or not yet opened) counts as
    de-energized: the real driver stage has a pull-down for that.
    """

    def __init__(
        self,
        factory: MockFactory,
        coil_pin: int = 17,
        feedback_pin: int | None = 27,
        *,
        coil_active_high: bool = True,
        feedback_type: FeedbackType | str = FeedbackType.MIRROR,
        feedback_active_low: bool = True,
        mechanical_delay_s: float = 0.0,
    ) -> None:
        self._coil_active_high = coil_active_high
        self._feedback_type = FeedbackType(feedback_type)
        self._feedback_active_low = feedback_active_low
        self._lock = threading.RLock()
        self._main_closed = False
        self._welded = False
        self._stuck_open = False
        self._listeners: list[StateListener] = []
        self._coil_listeners: list[StateListener] = []
        self.coil_pin = _claim(factory, coil_pin, WatchedOutputPin)
        self.feedback_pin = (
            None if feedback_pin is None else _claim(factory, feedback_pin, DrivenInputPin)
        )
        self._delayed = _Delayed(mechanical_delay_s, self._move_contacts)
        with self._lock:
            self._drive_feedback()
        self.coil_pin.add_listener(self._on_coil)

    @classmethod
    def from_config(
        cls, factory: MockFactory, config: ContactorConfig, mechanical_delay_s: float = 0.0
    ) -> SimContactorPins:
        """The contactor a driver built from ``config`` expects to find."""
        return cls(
            factory,
            config.coil_pin,
            config.feedback_pin,
            coil_active_high=config.coil_active_high,
            feedback_type=config.feedback_type,
            feedback_active_low=config.feedback_active_low,
            mechanical_delay_s=mechanical_delay_s,
        )

    @property
    def coil_energized(self) -> bool:
        return self.coil_pin.output_level == self._coil_active_high

    @property
    def main_contacts_closed(self) -> bool:
        """True while the main contacts conduct: what powers the EV."""
        return self._main_closed

    def set_welded(self, welded: bool) -> None:
        """Weld fault: closed main contacts stay closed after the coil drops. False repairs."""
        with self._lock:
            self._welded = welded
        self._move_contacts()

    def set_stuck_open(self, stuck: bool) -> None:
        """Dry/stuck-open fault: the contacts do not close (or drop out) while energized."""
        with self._lock:
            self._stuck_open = stuck
        self._move_contacts()

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(main_contacts_closed)`` after each change of the main contacts."""
        self._listeners.append(listener)

    def add_coil_listener(self, listener: StateListener) -> None:
        """Call ``listener(coil_energized)`` at each change of the coil, on the driver's thread."""
        self._coil_listeners.append(listener)

    def close(self) -> None:
        """Stop reacting to the coil and cancel a pending contact movement. Idempotent."""
        self.coil_pin.remove_listener(self._on_coil)
        self._delayed.close()

    def _on_coil(self, level: bool | None) -> None:
        energized = level == self._coil_active_high
        for listener in list(self._coil_listeners):
            listener(energized)
        self._delayed.trigger()

    def _move_contacts(self) -> None:
        with self._lock:
            if self._welded and self._main_closed:
                closed = True
            else:
                closed = self.coil_energized and not self._stuck_open
            changed = closed != self._main_closed
            self._main_closed = closed
            self._drive_feedback()
        if changed:
            for listener in list(self._listeners):
                listener(closed)

    def _drive_feedback(self) -> None:
        if self.feedback_pin is None:
            return
        if self._feedback_type is FeedbackType.AUXILIARY:
            contact_closed = self._main_closed
        else:
            contact_closed = not self._main_closed
        self.feedback_pin.drive(not contact_closed if self._feedback_active_low else contact_closed)


class SimRcmPins:
    """A residual current monitor (RCM14-like) on a fault output pin and a TEST input pin.

    The fault output is active while a residual current is present (:meth:`trip` until
    :meth:`clear`) or, ``response_delay_s`` after TEST rises until that long after it falls,
    while TEST is driven (unless :meth:`set_selftest_broken`).
    """

    def __init__(
        self,
        factory: MockFactory,
        fault_pin: int = 22,
        test_pin: int = 23,
        *,
        fault_active_high: bool = True,
        test_active_high: bool = True,
        response_delay_s: float = 0.0,
    ) -> None:
        self._fault_active_high = fault_active_high
        self._test_active_high = test_active_high
        self._lock = threading.RLock()
        self._residual = False
        self._broken = False
        self._testing = False  # the RCM's view of TEST, after its response delay
        self.fault_pin = _claim(factory, fault_pin, DrivenInputPin)
        self.test_pin = _claim(factory, test_pin, WatchedOutputPin)
        self._delayed = _Delayed(response_delay_s, self._follow_test)
        self._drive()
        self.test_pin.add_listener(self._on_test)

    @classmethod
    def from_config(
        cls, factory: MockFactory, config: RcmConfig, response_delay_s: float = 0.0
    ) -> SimRcmPins:
        return cls(
            factory,
            config.fault_pin,
            config.test_pin,
            fault_active_high=config.fault_active_high,
            test_active_high=config.test_active_high,
            response_delay_s=response_delay_s,
        )

    @property
    def test_active(self) -> bool:
        return self.test_pin.output_level == self._test_active_high

    @property
    def fault_active(self) -> bool:
        return self._residual or (self._testing and not self._broken)

    def trip(self) -> None:
        """A residual current above the threshold: the fault output goes active."""
        with self._lock:
            self._residual = True
            self._drive()

    def clear(self) -> None:
        """The residual current is gone (or the RCM was reset)."""
        with self._lock:
            self._residual = False
            self._drive()

    def set_selftest_broken(self, broken: bool) -> None:
        """A broken test circuit: TEST no longer makes the fault output go active."""
        with self._lock:
            self._broken = broken
            self._drive()

    def close(self) -> None:
        """Stop reacting to TEST and cancel a pending response. Idempotent."""
        self.test_pin.remove_listener(self._on_test)
        self._delayed.close()

    def _on_test(self, level: bool | None) -> None:
        self._delayed.trigger()

    def _follow_test(self) -> None:
        with self._lock:
            self._testing = self.test_active
            self._drive()

    def _drive(self) -> None:
        with self._lock:
            active = self.fault_active
            self.fault_pin.drive(active if self._fault_active_high else not active)


class SimPowerFailPin:
    """The power-fail output of a simulated UPS HAT, driving the driver's input pin
    (:class:`drivers.power_fail.GpioPowerFail`): :meth:`set` raises or ends the warning."""

    def __init__(self, factory: MockFactory, number: int, *, active_high: bool = True) -> None:
        self.pin = _claim(factory, number, DrivenInputPin)
        self._active_high = active_high
        self.failing = False
        self.pin.drive(not active_high)  # the supply is good

    def set(self, failing: bool) -> None:
        """Raise (True) or end (False) the warning; fires the driver's edge on this thread."""
        self.failing = failing
        self.pin.drive(failing == self._active_high)


class SimCpWindowPin:
    """The CP window comparator's output (:mod:`drivers.cp_window`) on the driver's input:
    :meth:`follow` sets it active or not; a change fires the driver's edge on the calling
    thread (whoever changed the CP: a test, the simulation's physics, the control loop)."""

    def __init__(self, factory: MockFactory, config: CpWindowConfig) -> None:
        self.pin = _claim(factory, config.pin, DrivenInputPin)
        self._active_high = config.active_high
        self._lock = threading.Lock()
        self.active = True  # nothing on the CP yet: the positive peak rests below 1.5 V
        self.pin.drive(self._active_high)

    def follow(self, active: bool) -> None:
        """The comparator's verdict on the CP now; drives the pin when it changed."""
        with self._lock:
            if active == self.active:
                return
            self.active = active
            self.pin.drive(active == self._active_high)


class SimLockPins:
    """A socket's lock actuator (a holding solenoid on ``lock_pin``, or a motor pulsed on
    ``lock_pin`` / ``unlock_pin``) and its feedback contact (:mod:`drivers.lock`).

    The latch follows the drive at once; :attr:`jammed` (``sim fault lock``) keeps it where
    it is, so locking or unlocking fails as with a jammed actuator or a broken contact.
    """

    def __init__(
        self,
        factory: MockFactory,
        lock_pin: int,
        feedback_pin: int,
        unlock_pin: int | None = None,
        *,
        feedback_active_high: bool = True,
    ) -> None:
        self.lock_pin = _claim(factory, lock_pin, WatchedOutputPin)
        self.unlock_pin = (
            None if unlock_pin is None else _claim(factory, unlock_pin, WatchedOutputPin)
        )
        self.feedback_pin = _claim(factory, feedback_pin, DrivenInputPin)
        self._active_high = feedback_active_high
        self._jammed = False
        self.engaged = False
        self.feedback_pin.drive(not feedback_active_high)
        self.lock_pin.add_listener(self._lock_driven)
        if self.unlock_pin is not None:
            self.unlock_pin.add_listener(self._unlock_driven)

    @property
    def jammed(self) -> bool:
        return self._jammed

    @jammed.setter
    def jammed(self, jammed: bool) -> None:
        """Jam (True) or free (False) the latch; a freed solenoid follows its coil again."""
        self._jammed = jammed
        if not jammed and self.unlock_pin is None:
            self._move(bool(self.lock_pin.output_level))

    def _lock_driven(self, level: bool | None) -> None:
        if level:
            self._move(True)
        elif self.unlock_pin is None and level is False:
            self._move(False)  # a holding solenoid lets go when its coil drops

    def _unlock_driven(self, level: bool | None) -> None:
        if level:
            self._move(False)

    def _move(self, engaged: bool) -> None:
        if self._jammed:
            return
        self.engaged = engaged
        self.feedback_pin.drive(engaged == self._active_high)
