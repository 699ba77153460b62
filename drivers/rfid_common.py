"""What every RFID reader driver shares: UID formatting, thread bridging, backoff, config reading.

UIDs leave a driver as uppercase hex without separators, byte 0 first (the ISO 14443-3 order
that OCPP 1.6 section 3.9 recommends for idTags; hardware reference 4.5).
"""

from __future__ import annotations

import asyncio
import logging
import math
import termios
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from drivers.errors import ConfigurationError

EVENT_DEVICE: Final = "rfid"
"""``DriverEvent.device`` for every event an RFID driver reports."""

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


def uid_hex(uid: bytes) -> str:
    """``b"\\x04\\xa2\\x1f"`` -> ``"04A21F"``: uppercase, no separators, byte 0 first."""
    return uid.hex().upper()


async def run_blocking(func: Callable[[], _T]) -> _T:
    """Run a bounded blocking call (a serial read, an I2C transfer) in a worker thread.

    If the awaiting task is cancelled, wait for the call to finish before re-raising, so the
    caller may close the port or bus right after without yanking it from under the thread.
    Every ``func`` given here must be bounded by its own timeout (a read timeout, a response
    deadline), so this wait is short.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            # The reader is stopping; the interrupted call's outcome changes nothing.
            _log.debug("blocking call ended with %r while cancelled", task.exception())
        raise


@contextmanager
def serial_errors() -> Iterator[None]:
    """Turn ``termios.error`` into ``OSError`` around pyserial calls.

    pyserial raises ``SerialException`` (an OSError) for most failures, but ``flush``,
    ``reset_input_buffer`` and reconfiguring a port call termios directly, whose error is not
    an OSError; on a vanished USB adapter that would otherwise escape the retry logic.
    """
    try:
        yield
    except termios.error as exc:
        raise OSError(*exc.args) from exc


class Backoff:
    """Exponential retry delays in seconds: initial, 2x, 4x, ... capped at ``max_s``."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self._next_s = initial_s

    def next_delay_s(self) -> float:
        """The delay to wait now; the following one doubles, up to the cap."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2.0, self._max_s)
        return delay

    def reset(self) -> None:
        """Back to the initial delay, after the device answered again."""
        self._next_s = self._initial_s


class SectionReader:
    """Typed access to one configuration table; every error names ``<prefix>.<key>``.

    Unknown keys are rejected (:meth:`reject_unknown`): a misspelt ``serial_prot`` silently
    falling back to the default port is worse than refusing to start.
    """

    def __init__(self, section: Mapping[str, Any], prefix: str) -> None:
        self._section = section
        self._prefix = prefix

    def key(self, name: str) -> str:
        """The full name of ``name`` as error messages show it, e.g. ``rfid.baudrate``."""
        return f"{self._prefix}.{name}"

    def has(self, name: str) -> bool:
        return name in self._section

    def reject_unknown(self, known: Iterable[str], context: str) -> None:
        """Raise for the first key (sorted) that is not in ``known``."""
        allowed = set(known)
        for name in sorted(str(k) for k in self._section):
            if name not in allowed:
                known_keys = ", ".join(sorted(allowed))
                raise ConfigurationError(
                    self.key(name), f"unknown key for {context}; known: {known_keys}"
                )

    def string(self, name: str, default: str) -> str:
        value = self._section.get(name, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(self.key(name), f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, name: str, choices: Iterable[str], default: str | None = None) -> str:
        """A string out of ``choices``; ``default=None`` makes the key required."""
        options = sorted(choices)
        if name not in self._section and default is None:
            raise ConfigurationError(self.key(name), f"missing; one of {', '.join(options)}")
        value = self._section.get(name, default)
        if value not in options:
            raise ConfigurationError(
                self.key(name), f"must be one of {', '.join(options)}, got {value!r}"
            )
        return str(value)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._section.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigurationError(self.key(name), f"must be an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ConfigurationError(
                self.key(name), f"must be between {minimum} and {maximum}, got {value}"
            )
        return value

    def number(self, name: str, default: float, *, above: float, maximum: float) -> float:
        """A finite number with ``above < value <= maximum`` (int or float in TOML)."""
        value = self._section.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(self.key(name), f"must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or not above < number <= maximum:
            raise ConfigurationError(
                self.key(name), f"must be above {above} and at most {maximum}, got {value!r}"
            )
        return number


def read_backoff(cfg: SectionReader) -> tuple[float, float]:
    """``retry_backoff_s`` (default 0.5 s) and ``retry_backoff_max_s`` (default 10 s)."""
    initial_s = cfg.number("retry_backoff_s", 0.5, above=0.0, maximum=60.0)
    max_s = cfg.number("retry_backoff_max_s", 10.0, above=0.0, maximum=600.0)
    if max_s < initial_s:
        raise ConfigurationError(
            cfg.key("retry_backoff_max_s"),
            f"must be at least retry_backoff_s ({initial_s}), got {max_s}",
        )
    return initial_s, max_s
