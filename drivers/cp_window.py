"""A window comparator on the CP's positive peak: C/D hazards on a GPIO edge.

Why (issue 12, hardware reference 1.7 option 3): the ADS1115 sampler sees the car leave C
or D after about three conversions of 1.2 ms each, plus a wake-up of its thread after each;
under load that is 5-7 ms at p99. Two comparators on the high-peak detector's output, with
open-collector outputs wired together onto one GPIO (a pull-up: active low), make the line
active whenever the CP high level is outside the C/D band: above ~7.5 V (B or A: the car
stopped asking or left) or below ~1.5 V (E or F: a short, no supply). Its edge reaches
gpiozero's edge thread at once, as the RCM's fault output does.

What it may do (:class:`WindowGuard`): while the connector is vigilant (the contactor may be
closed: :meth:`drivers.pilot_sensor.AdcPilotSensor.set_vigilant`, the same condition that
makes the sampler sample back to back) and once guarded with the contactor's interlock, an
activating edge trips the interlock on the edge thread: the coil drops before anything
else runs. Arming while the line is already active trips at once. It never closes
anything and never tells the connector machine a CP state: the ADS1115 sampler stays the
authority on which state the car is in. Each trip's token is held until the sampler
*confirms* (within :data:`CONFIRM_SAMPLES` samples its debounced view also forbids a
closed contactor: the machine has then heard, or hears in the same delivery, of the
hazard) or, when it does not, until the machine has been told of a ``cp_mismatch`` fault
(the two measurements of the CP disagree: the contactor stays open, the connector reports
Faulted until the car is unplugged). Disarming (the machine opened the contactor) releases
what is held: the machine already believes the contactor open, and arming again for the
next close trips at once if the line is still active.

Threads: the edge callback runs on gpiozero's thread (on a ``MockFactory``, the thread that
drove the pin); :meth:`WindowGuard.arm` on the loop thread (or check-hw's);
:meth:`WindowGuard.sampled` on the sampler thread. One lock orders them; it is held around
the interlock's trip (one pin write) and never while waiting for anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from gpiozero import DigitalInputDevice

from drivers.contactor import ContactorConfig
from drivers.errors import ConfigurationError
from drivers.gpio_bridge import flag_setting, key_name, pin_setting
from drivers.interlock import Interlock
from drivers.rcm import RcmConfig

#: The C/D band on the CP's positive level (V), from the cut points of hardware reference
#: 1.2 (10.5 / 7.5 / 4.5 / 1.5 V): the comparators' thresholds on the board.
WINDOW_LOW_V: Final = 1.5
WINDOW_HIGH_V: Final = 7.5
#: Samples the ADS1115 sampler gets to agree after a trip: two for its debounce, one in
#: flight, one more for an AIN1 (diode) read, and a peak detector's decay on a falling edge
#: (a short) of a few ms on a real board; 10 samples are about 12 ms at back-to-back rates.
#: Counted in samples, not time, so a sampler starved of CPU is not judged too early.
CONFIRM_SAMPLES: Final = 10

#: Every key :func:`from_section` reads from a ``[[connector]]`` table.
CONFIG_KEYS: Final = ("cp_window_pin", "cp_window_active_high")
#: The pin keys of a connector's other GPIO drivers without a default of their own.
_OPTIONAL_PIN_KEYS: Final = ("lock_pin", "unlock_pin", "lock_feedback_pin")


@dataclass(frozen=True, slots=True)
class CpWindowConfig:
    """The comparator's GPIO and the level it has while the CP is outside C/D.

    ``active_high`` False (the default): open-collector outputs with a pull-up, pulled low
    while a comparator fires. The simulator reads this too.
    """

    pin: int
    active_high: bool = False


def from_section(section: Mapping[str, Any], key_prefix: str = "") -> CpWindowConfig | None:
    """``cp_window_pin`` (unset: no comparator) and ``cp_window_active_high`` (false).

    The pin must differ from every other GPIO of the connector (contactor, feedback, RCM
    fault and TEST, lock), with their defaults; errors name ``<key_prefix>.<key>``.
    """
    if "cp_window_pin" not in section:
        if "cp_window_active_high" in section:
            raise ConfigurationError(
                key_name(key_prefix, "cp_window_active_high"),
                "set without cp_window_pin: no comparator is configured",
            )
        return None
    pin = pin_setting(section, "cp_window_pin", 0, key_prefix)
    taken = _other_pins(section, key_prefix)
    if pin in taken:
        raise ConfigurationError(
            key_name(key_prefix, "cp_window_pin"), f"GPIO{pin} is already the {taken[pin]}"
        )
    active_high = flag_setting(section, "cp_window_active_high", False, key_prefix)
    return CpWindowConfig(pin, active_high)


def _other_pins(section: Mapping[str, Any], key_prefix: str) -> dict[int, str]:
    """The GPIOs the connector's other drivers use: pin number -> key."""
    contactor = ContactorConfig.from_section(section, key_prefix)
    rcm = RcmConfig.from_section(section, key_prefix)
    pins = {
        contactor.coil_pin: "contactor_pin",
        rcm.fault_pin: "rcm_fault_pin",
        rcm.test_pin: "rcm_test_pin",
    }
    if contactor.feedback_pin is not None:
        pins[contactor.feedback_pin] = "feedback_pin"
    for key in _OPTIONAL_PIN_KEYS:
        if key in section:
            pins[pin_setting(section, key, 0, key_prefix)] = key
    return pins


class GpioCpWindow:
    """The comparator's output on one gpiozero input: a level and an activating edge."""

    def __init__(self, config: CpWindowConfig, *, pin_factory: Any = None) -> None:
        self._config = config
        self._input = DigitalInputDevice(
            config.pin, pull_up=not config.active_high, pin_factory=pin_factory
        )

    @property
    def config(self) -> CpWindowConfig:
        return self._config

    @property
    def active(self) -> bool:
        """True while the CP high level is outside the C/D band (reads the pin; any thread)."""
        return not self._input.closed and bool(self._input.is_active)

    def on_activated(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback()`` on gpiozero's edge thread at each activating edge."""
        self._input.when_activated = callback

    def close(self) -> None:
        """Release the pin; idempotent."""
        self._input.close()


class Verdict(StrEnum):
    """What the sampler made of a trip (:meth:`WindowGuard.sampled`)."""

    CONFIRMED = "window_trip"  # the sampler sees a hazard too
    UNCONFIRMED = "window_unconfirmed"  # it did not within CONFIRM_SAMPLES samples


class WindowGuard:
    """Arms the comparator while a contactor may be closed and trips the interlock on its
    edge; holds each trip's token until the sampler had its say (module docstring).

    ``wake`` is called after a trip (any thread): the sampler samples at once.
    """

    def __init__(
        self,
        window: GpioCpWindow,
        wake: Callable[[], None],
        *,
        confirm_samples: int = CONFIRM_SAMPLES,
        name: str = "cp-window",
    ) -> None:
        self._window = window
        self._wake = wake
        self._confirm_samples = confirm_samples
        self._name = name
        self._lock = threading.Lock()
        self._interlock: Interlock | None = None
        self._armed = False
        self._held: list[int] = []  # tokens of trips the sampler has not judged yet
        self._samples = 0  # samples since the oldest held trip
        window.on_activated(self._on_edge)

    @property
    def window(self) -> GpioCpWindow:
        return self._window

    @property
    def armed(self) -> bool:
        return self._armed

    def guard(self, interlock: Interlock) -> None:
        """Trip ``interlock`` from now on while armed. Any thread; before :meth:`arm`."""
        with self._lock:
            self._interlock = interlock

    def arm(self, armed: bool) -> None:
        """Armed while the contactor may be closed. Arming with the line already active
        trips at once; disarming releases the held trips (the machine opened). Any thread."""
        with self._lock:
            self._armed = armed
            if armed:
                tripped = self._window.active and self._trip("active when armed")
            else:
                tripped = False
                self._release()
        if tripped:
            self._wake()

    def sampled(self, hazard_seen: bool) -> tuple[Verdict, tuple[int, ...]] | None:
        """The sampler thread, after each sample: ``hazard_seen`` is whether its view
        forbids a closed contactor. With trips held, the verdict and the tokens to re-arm
        once the loop has delivered it; None while there is nothing (yet) to say."""
        with self._lock:
            if not self._held:
                return None
            self._samples += 1
            if hazard_seen:
                verdict = Verdict.CONFIRMED
            elif self._samples >= self._confirm_samples:
                verdict = Verdict.UNCONFIRMED
            else:
                return None
            tokens = tuple(self._held)
            self._held.clear()
            self._samples = 0
        return verdict, tokens

    def close(self) -> None:
        """Stop reacting to edges and release what is held; idempotent."""
        self._window.on_activated(None)
        with self._lock:
            self._armed = False
            self._release()
        self._window.close()

    def _on_edge(self) -> None:  # gpiozero's thread
        with self._lock:
            tripped = self._armed and self._trip("edge")
        if tripped:
            self._wake()

    def _trip(self, how: str) -> bool:
        """With the lock held: trip the interlock, hold the token. False when unguarded."""
        interlock = self._interlock
        if interlock is None:
            return False
        token = interlock.trip(f"CP window comparator ({how}): high level outside C/D")
        if not self._held:
            self._samples = 0
        self._held.append(token)
        return True

    def _release(self) -> None:
        """With the lock held: re-arm every held trip."""
        interlock = self._interlock
        if interlock is not None:
            for token in self._held:
                interlock.rearm(token)
        self._held.clear()
        self._samples = 0
