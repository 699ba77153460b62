"""Capped, jittered exponential backoff between connection attempts (the CSMS link, MQTT).

After an outage a fleet of chargers must not reconnect in lockstep, and a peer that never
answers must not be hammered. Neutral on purpose: edges that may not import the CSMS
services (MQTT) use it too.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Capped exponential backoff with ±``jitter`` spread: 1, 2, 4, ... ``max_s`` seconds."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        jitter: float,
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
        """The wait before the next attempt; each call doubles the base up to the cap."""
        base = min(self._max_s, self._initial_s * 2 ** min(self._failures, 32))
        self._failures += 1
        return base * (1 + self._jitter * (2 * self._rng() - 1))

    def reset(self) -> None:
        """The link works again: the next failure starts from ``initial_s``."""
        self._failures = 0
