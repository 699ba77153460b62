"""Timers whose interval a CSMS may change at any moment (ChangeConfiguration).

A :class:`Retimer` reads its interval each time it starts waiting; :meth:`Retimer.retime`
interrupts the wait so a new interval applies from now. An interval of 0 (or None) means
"off": the timer then waits for the next retime. :class:`ClockAligned` gives a Retimer the
wait until the next clock-aligned boundary (1.6 ClockAlignedDataInterval, 2.0.1
AlignedDataCtrlr), each boundary once. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable


class Retimer:
    """Sleeps for ``interval_s()`` seconds; a retime restarts the wait with a fresh interval."""

    def __init__(self, interval_s: Callable[[], float | None]) -> None:
        self._interval_s = interval_s
        self._changed = asyncio.Event()

    def retime(self) -> None:
        """The interval changed: the current wait starts over with the new one."""
        self._changed.set()

    async def wait(self) -> None:
        """Return once a whole interval passed without a retime."""
        while True:
            self._changed.clear()
            interval = self._interval_s()
            if interval is None or interval <= 0:
                await self._changed.wait()
                continue
            try:
                async with asyncio.timeout(interval):
                    await self._changed.wait()
            except TimeoutError:
                return


def next_boundary(now: dt.datetime, interval_s: float) -> dt.datetime:
    """The first clock-aligned instant strictly after ``now``.

    OCPP 1.6 ClockAlignedDataInterval divides each day into intervals starting at midnight;
    we take midnight UTC. An interval that does not divide the day restarts at midnight.
    """
    if interval_s <= 0:
        raise ValueError(f"interval must be > 0 s, got {interval_s!r}")
    utc = now.astimezone(dt.UTC)
    midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (utc - midnight).total_seconds()
    count = int(elapsed // interval_s) + 1
    boundary = midnight + dt.timedelta(seconds=count * interval_s)
    next_midnight = midnight + dt.timedelta(days=1)
    return min(boundary, next_midnight)


class ClockAligned:
    """The boundaries of an interval aligned to midnight UTC (:func:`next_boundary`), as a
    :class:`Retimer`'s interval: ``Retimer(aligned.until_next)``; call :meth:`fired` when
    the timer returns. A boundary fires once even if the timer wakes a little early, and a
    wall clock set back (NTP on a Pi without RTC) starts afresh instead of waiting for the
    boundary it had aimed at.

    ``interval_s()`` is the interval in seconds (None: off); ``clock`` the wall clock.
    """

    def __init__(
        self, interval_s: Callable[[], float | None], clock: Callable[[], dt.datetime]
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._fired: dt.datetime | None = None
        self._target: dt.datetime | None = None

    def until_next(self) -> float | None:
        """Seconds until the next boundary not fired yet (None: off)."""
        interval = self._interval_s()
        if interval is None:
            return None
        now = self._clock()
        fired = self._fired
        if fired is not None and fired > now + dt.timedelta(seconds=interval):
            fired = None  # the wall clock was set back: start afresh
        since = max(now, fired) if fired is not None else now
        self._target = next_boundary(since, interval)
        return max((self._target - now).total_seconds(), 0.001)

    def fired(self) -> dt.datetime | None:
        """The timer returned: the boundary it waited for has passed; that boundary."""
        self._fired = self._target
        return self._target
