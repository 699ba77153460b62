"""Timers whose interval a CSMS may change at any moment (ChangeConfiguration).

A :class:`Retimer` reads its interval each time it starts waiting; :meth:`Retimer.retime`
interrupts the wait so a new interval applies from now. An interval of 0 (or None) means
"off": the timer then waits for the next retime. Loop thread only.
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
