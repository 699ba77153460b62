"""Capped, jittered exponential backoff between broker connection attempts.

The same shape as the CSMS link's (controller.csms.link.Backoff), kept here so that MQTT,
an edge of its own, does not import the CSMS services: after a broker outage a fleet of
chargers must not reconnect in lockstep, and a broker that never answers must not be
hammered.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """``initial_s``, twice that, ... up to ``max_s``, each spread by ±``jitter``."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not (0 < initial_s <= max_s) or not 0 <= jitter < 1:
            raise ValueError(f"bad backoff {initial_s=} {max_s=} {jitter=}")
        self._initial_s = initial_s
        self._max_s = max_s
        self._jitter = jitter
        self._rng = rng
        self._failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt (s); each call doubles the base up to the cap."""
        base = min(self._max_s, self._initial_s * 2 ** min(self._failures, 32))
        self._failures += 1
        return base * (1 + self._jitter * (2 * self._rng() - 1))

    def reset(self) -> None:
        """Connected again: the next failure waits ``initial_s`` again."""
        self._failures = 0
