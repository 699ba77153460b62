"""When a periodic variable monitor (N02, MonitorEnumType Periodic and PeriodicClockAligned)
reports next.

A Periodic monitor reports every ``value`` seconds counted from the moment it was set (or
from the start of this run, for one kept across a restart); a PeriodicClockAligned one on
the boundaries of ``value`` seconds counted from midnight UTC, as AlignedDataCtrlr's
interval (:func:`controller.csms.timers.next_boundary`; a period that does not divide the
day starts again at midnight). A station that fell behind (a busy loop, the wall clock set
forward) reports once and carries on from the next period, never a burst of missed ones.
Pure functions; any thread.
"""

from __future__ import annotations

import datetime as dt
import math

from controller.csms.timers import next_boundary

PERIODIC, CLOCK_ALIGNED = "Periodic", "PeriodicClockAligned"
PERIODIC_TYPES = (PERIODIC, CLOCK_ALIGNED)


def first_due(kind: str, period_s: float, now: dt.datetime) -> dt.datetime:
    """The first report of a monitor of ``kind`` set (or loaded) at ``now``."""
    if kind == CLOCK_ALIGNED:
        return next_boundary(now, period_s)
    return now + dt.timedelta(seconds=period_s)


def next_due(kind: str, period_s: float, due: dt.datetime, now: dt.datetime) -> dt.datetime:
    """The report after the one ``due`` (reported at ``now``): strictly after ``now``."""
    if kind == CLOCK_ALIGNED:
        return next_boundary(now, period_s)
    behind = (now - due).total_seconds()
    periods = max(1, math.floor(behind / period_s) + 1)
    return due + dt.timedelta(seconds=periods * period_s)
