"""The status LED on a GPIO, blinking the :class:`drivers.base.LedPattern` the controller picks.

Blinking runs on gpiozero's own background threads (``LED.blink`` for the even patterns,
the ``source`` thread for the double flash), so :meth:`GpioStatusLed.show` returns at once
and the loop never times an LED. gpiozero starts those threads unnamed, and a new thread
inherits its creator's OS name, so they would pass for the event loop in ``top -H``: each is
named ``led-blink`` as soon as it runs (through gpiozero's attributes ``_blink_thread`` and
``_source_thread``; should a gpiozero release rename them, the thread merely stays unnamed).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any, Final

from gpiozero import LED

from drivers.base import LedPattern
from drivers.gpio_bridge import flag_setting, pin_setting
from drivers.seams import HardwareSeams
from drivers.threads import name_thread

#: Seconds on and off of the even blink patterns.
BLINK_S: dict[LedPattern, tuple[float, float]] = {
    LedPattern.WAITING: (1.0, 1.0),
    LedPattern.CHARGING: (0.25, 0.25),
}
#: The fault double flash, one value per :data:`FLASH_STEP_S`: on, off, on, then a long off.
FAULT_FLASH = (1, 0, 1, 0, 0, 0, 0, 0)
FLASH_STEP_S = 0.15
LED_THREAD = "led-blink"


class GpioStatusLed:
    """A :class:`drivers.base.StatusIndicator` on one LED; starts off."""

    def __init__(self, pin: int = 24, *, active_high: bool = True, pin_factory: Any = None) -> None:
        self._led = LED(pin, active_high=active_high, initial_value=False, pin_factory=pin_factory)
        self._pattern = LedPattern.OFF

    @property
    def pattern(self) -> LedPattern:
        return self._pattern

    @property
    def lit(self) -> bool:
        """Whether the LED is on at this instant (it changes by itself while blinking)."""
        return bool(self._led.is_lit)

    def show(self, pattern: LedPattern) -> None:
        """Switch to ``pattern``; showing the current one again changes nothing (a blink
        keeps its phase). Call on the loop thread; stopping a blink thread takes microseconds.
        """
        if pattern is self._pattern:
            return
        self._led.source = None  # stops a double-flash thread; no-op otherwise
        if pattern is LedPattern.OFF:
            self._led.off()
        elif pattern is LedPattern.IDLE:
            self._led.on()
        elif pattern is LedPattern.FAULT:
            self._led.off()  # stops a blink thread
            self._led.source_delay = FLASH_STEP_S
            self._led.source = itertools.cycle(FAULT_FLASH)
            _name_blinker(self._led, "_source_thread")
        else:
            on_s, off_s = BLINK_S[pattern]
            self._led.blink(on_time=on_s, off_time=off_s)
            _name_blinker(self._led, "_blink_thread")
        self._pattern = pattern

    def close(self) -> None:
        """Stop blinking, switch off and release the pin; idempotent."""
        if self._led.closed:
            return
        self._led.source = None
        self._led.off()
        self._led.close()

    def __enter__(self) -> GpioStatusLed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name_blinker(led: LED, attribute: str) -> None:
    thread = getattr(led, attribute, None)
    if isinstance(thread, threading.Thread):
        name_thread(thread, LED_THREAD)


#: Every key :func:`from_config` reads from ``[hardware]``.
CONFIG_KEYS: Final = ("led_pin", "led_active_high")


def from_config(
    section: Mapping[str, Any], seams: HardwareSeams, *, key_prefix: str = "hardware"
) -> GpioStatusLed:
    """Keys: ``led_pin`` (24), ``led_active_high`` (true); errors name ``<key_prefix>.<key>``."""
    return GpioStatusLed(
        pin_setting(section, "led_pin", 24, key_prefix),
        active_high=flag_setting(section, "led_active_high", True, key_prefix),
        pin_factory=seams.pin_factory,
    )
