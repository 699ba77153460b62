"""Interval settings (1.6 keys, 2.0.1 variables) and the timers that follow them.

A timer (:class:`~controller.csms.timers.Retimer`) reads its interval key when it starts
waiting; :class:`KeyTimers` re-times every timer of a key the moment a ChangeConfiguration
changes it, so a shorter HeartbeatInterval applies at once, not after the old interval.
Loop thread only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from controller.csms.timers import Retimer


class IntervalStore(Protocol):
    """The version's settings (1.6 :class:`OcppConfig`, 2.0.1 device model), as far as
    timers need them."""

    def get_int(self, key: str) -> int: ...

    def on_change(self, callback: Callable[[str, str], None]) -> None: ...


class KeyTimers:
    """Timers by the key they follow; ``interval_scale`` shrinks every interval (tests)."""

    def __init__(self, config: IntervalStore, interval_scale: float) -> None:
        self._config = config
        self._scale = interval_scale
        self._timers: defaultdict[str, set[Retimer]] = defaultdict(set)
        config.on_change(self._changed)

    def interval(self, key: str) -> float | None:
        """An interval setting in seconds (scaled); None = off (0 or less)."""
        value = self._config.get_int(key)
        return value * self._scale if value > 0 else None

    @contextmanager
    def following(self, key: str, timer: Retimer) -> Iterator[Retimer]:
        """Re-time ``timer`` whenever ``key`` changes, while the block runs."""
        folded = key.casefold()
        self._timers[folded].add(timer)
        try:
            yield timer
        finally:
            self._timers[folded].discard(timer)

    def _changed(self, key: str, value: str) -> None:
        for timer in self._timers.get(key.casefold(), ()):
            timer.retime()
