"""Messages the bridge ignores, said in the log without flooding it. Loop thread only."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: A rejected message is logged at most this often (s); the count says how many were.
REJECT_LOG_PERIOD_S = 10.0


class Rejects:
    """Counts the messages of one kind that were ignored (``what``: "a command") and logs
    a warning at most once per ``period_s``, with how many were ignored since the last
    line: a flood of bad messages costs a counter, never a growing log or memory."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        period_s: float = REJECT_LOG_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._period_s = period_s
        self._clock = clock
        self._unlogged = 0
        self._logged_at = -period_s
        self.count = 0  # all ignored, for tests and diagnostics

    def note(self, topic: str, why: str) -> None:
        """One message on ``topic`` was ignored because of ``why``; never raises."""
        self.count += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._logged_at >= self._period_s:
            self._log.warning(
                "mqtt: ignored %s on %s: %s (%d ignored since the last such line)",
                self._what,
                topic,
                why,
                self._unlogged,
            )
            self._logged_at = now
            self._unlogged = 0
