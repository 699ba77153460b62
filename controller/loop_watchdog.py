"""The loop watchdog: every coil opens when the supervisor's event loop stops beating.

The hazard detectors trip the contactors' interlocks on their own threads, but only for
the hazards they know. If the loop itself stops (a handler that blocks, a CSMS flood that
starves it, a bug), nothing on it can react to anything, including hazards no detector
covers. A thread (``loop-watchdog``) therefore watches a beat the loop gives every quarter
of ``limit_s``; once the beat is ``limit_s`` old it trips every interlock (the coils drop on
the watchdog's thread) and tells the loop, which on its return logs the stall and lets the
supervisor re-arm and re-close through the connector machine's normal close path (the
journal, the RCM self-test, the contactor's settle time and feedback check all apply again).

The systemd watchdog (``controller.service``) is the next line: it restarts the process
after ``SUPERVISOR_STALL_S``; this one acts within ``limit_s`` and keeps the process.

Threads: :meth:`LoopWatchdog.run` runs on the loop and starts the thread; the thread only
reads a float and trips interlocks; the report reaches the loop through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

from drivers.interlock import Interlock
from drivers.threads import NamedThread

log = logging.getLogger(__name__)

#: Default age of the loop's beat at which every coil is opened, in seconds.
LOOP_STALL_S = 1.5


class LoopWatchdog:
    """Trips ``interlocks`` when the loop has not beaten for ``limit_s`` seconds.

    ``on_stall`` is called on the loop once it runs again, with the stall's length in
    seconds and one trip token per interlock (same order), which it must re-arm.
    """

    def __init__(
        self,
        interlocks: Sequence[Interlock],
        on_stall: Callable[[float, list[int]], None],
        *,
        limit_s: float = LOOP_STALL_S,
    ) -> None:
        if limit_s <= 0:
            raise ValueError(f"limit_s must be > 0, got {limit_s}")
        self._interlocks = tuple(interlocks)
        self._on_stall = on_stall
        self.limit_s = limit_s
        self._beat_at = time.monotonic()
        self._stalled_at: float | None = None  # set by the thread, cleared on the loop

    async def run(self) -> None:
        """Beat until cancelled while the thread watches; the thread is joined on exit."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        self._beat_at = time.monotonic()
        thread = NamedThread(
            target=self._watch, args=(loop, stop), name="loop-watchdog", daemon=True
        )
        thread.start()
        try:
            while True:
                self._beat_at = time.monotonic()
                await asyncio.sleep(self.limit_s / 4)
        finally:
            stop.set()
            thread.join()

    def _watch(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """The watchdog thread: sleep until the beat would be too old, check, repeat."""
        while True:
            age_s = time.monotonic() - self._beat_at
            if age_s >= self.limit_s and self._stalled_at is None:
                self._stalled_at = self._beat_at
                tokens = [i.trip(f"event loop silent for {age_s:.2f} s") for i in self._interlocks]
                log.error("event loop silent for %.2f s: every contactor opened", age_s)
                try:
                    loop.call_soon_threadsafe(self._report, tokens)
                except RuntimeError:  # the loop closed: nobody is left to re-arm or re-close
                    return
            wait_s = self.limit_s / 4 if age_s >= self.limit_s else self.limit_s - age_s
            if stop.wait(wait_s):
                return

    def _report(self, tokens: list[int]) -> None:
        """Loop thread, the loop being back: hand the stall to the supervisor."""
        stalled_at = self._stalled_at
        self._stalled_at = None
        self._beat_at = time.monotonic()
        stall_s = 0.0 if stalled_at is None else time.monotonic() - stalled_at
        self._on_stall(stall_s, tokens)
