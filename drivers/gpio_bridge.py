"""The seam between gpiozero and picharge: its threads, and how GPIO lines are configured.

gpiozero calls edge callbacks (``when_activated``, ``when_deactivated``, ``pin.when_changed``)
on threads of its own: the lgpio or RPi.GPIO event thread on a Pi, and on a ``MockFactory``
whichever thread drives the mock pin (a simulator timer, a test, even the loop thread itself).
Loop state (asyncio events, futures, controller callbacks) must never be touched from those
threads. Every GPIO driver therefore sends its callbacks through one :class:`LoopBridge`, the
only place that calls ``loop.call_soon_threadsafe``; a coroutine that waits for an edge uses
:func:`wait_until`, which sleeps on an :class:`asyncio.Event` the bridge sets (no polling).

The configuration helpers at the end parse the settings every GPIO driver shares (a BCM pin
number, an active level, a time in seconds) and name the exact key when a value is wrong.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from drivers.errors import ConfigurationError

logger = logging.getLogger(__name__)


class LoopBridge:
    """Hands callbacks from gpiozero's threads to one asyncio loop.

    A bridge starts unbound: drivers may be built before the loop runs. :meth:`bind` attaches
    it to the running loop; until then :meth:`post` drops calls, which is safe because our
    drivers use edges only as wake-ups or deliver them to watchers registered after binding,
    and always re-read the pin level itself.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def bound(self) -> bool:
        """True once :meth:`bind` attached a loop that is not closed."""
        return self._loop is not None and not self._loop.is_closed()

    def bind(self) -> None:
        """Attach to the running loop; call on the loop thread. Idempotent.

        Raises ``RuntimeError`` when no loop is running here, or when the bridge is still
        bound to another open loop (a driver belongs to one loop).
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(f"{self._name}: already bound to another event loop")
        self._loop = loop

    def post(self, callback: Callable[..., object], *args: object) -> bool:
        """Run ``callback(*args)`` soon on the loop thread; callable from any thread.

        Calls keep their order. Returns False (and drops the call) when no loop is bound or the
        loop has closed, as happens to an edge that arrives during shutdown.
        """
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            logger.warning("%s: GPIO edge after the event loop closed; dropped", self._name)
            return False
        return True


async def wait_until(
    predicate: Callable[[], bool], wakeup: asyncio.Event, timeout_s: float
) -> bool:
    """Wait until ``predicate()`` holds, re-checking each time ``wakeup`` is set.

    ``predicate`` reads the truth (pin levels); ``wakeup`` only says "look again" and is set
    through a :class:`LoopBridge` by the gpiozero callbacks. Returns the predicate's value
    when it holds or ``timeout_s`` (seconds) has passed. Runs on the loop thread.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        wakeup.clear()
        if predicate():  # checked after clear(): an edge from now on sets the event again
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that arrives
        # in the same loop turn as the wakeup, and a cancelled close or self-test ran on.
        try:
            async with asyncio.timeout(remaining):
                await wakeup.wait()
        except TimeoutError:
            return predicate()


# --- configuration shared by the GPIO drivers ------------------------------------------------

#: BCM numbers of the GPIO lines on the 40-pin header (Pi 1 B+ to Pi 5).
HEADER_GPIO = range(28)


def key_name(key_prefix: str, key: str) -> str:
    """The full name of ``key`` in error messages: ``connector.1.contactor_pin``."""
    return f"{key_prefix}.{key}" if key_prefix else key


def pin_setting(section: Mapping[str, Any], key: str, default: int, key_prefix: str = "") -> int:
    """A BCM GPIO number (0-27) from ``section[key]``; errors name ``<key_prefix>.<key>``."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value not in HEADER_GPIO:
        raise ConfigurationError(
            key_name(key_prefix, key),
            f"must be a BCM GPIO number 0-27 (e.g. 17 for GPIO17), got {value!r}",
        )
    return value


def flag_setting(section: Mapping[str, Any], key: str, default: bool, key_prefix: str = "") -> bool:
    """A boolean from ``section[key]`` (TOML true/false; strings are refused, not guessed)."""
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ConfigurationError(key_name(key_prefix, key), f"must be true or false, got {value!r}")
    return value


def seconds_setting(
    section: Mapping[str, Any],
    key: str,
    default: float,
    maximum_s: float,
    key_prefix: str = "",
) -> float:
    """A duration in seconds, 0 < value <= ``maximum_s``.

    The upper bound catches milliseconds written where seconds belong (``close_settle_s =
    100``), which would otherwise leave a failing contactor energized for minutes.
    """
    value = section.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum_s
    ):
        raise ConfigurationError(
            key_name(key_prefix, key),
            f"must be a time in seconds, 0 < s <= {maximum_s:g}, got {value!r}",
        )
    return float(value)
