"""Mains voltage judged from an energy meter's phase voltages: under- and over-voltage.

EN 50160 / IEC 60038 give 230 V +-10 % at the supply terminals, so a phase below 207 V or
above 253 V is out of tolerance. A verdict changes only after ``samples`` consecutive
readings agree (one odd reading is noise, not mains), and a fault ends only once every phase
is back inside the band by ``hysteresis_v``, so a supply hovering at a limit does not flap.

A meter whose phases all read below ``dead_v`` is not judged: it sits behind the contactor
and sees no mains while it is open (or it is powered from a phase that is gone, and then
the controller is not running either). One phase at 0 V among live ones is an undervoltage.

Pure and synchronous: the supervisor feeds it each reading on the loop thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.errors import FaultKind

NOMINAL_V = 230.0


@dataclass(frozen=True, slots=True)
class MainsLimits:
    """Bounds in volts; the defaults are 230 V +-10 %."""

    under_v: float = 207.0
    over_v: float = 253.0
    hysteresis_v: float = 4.0
    dead_v: float = 50.0
    samples: int = 2


class MainsJudge:
    """:meth:`update` with each reading's phase voltages; the fault now active, if any."""

    def __init__(self, limits: MainsLimits | None = None) -> None:
        self.limits = limits or MainsLimits()
        self.fault: FaultKind | None = None
        self._candidate: FaultKind | None = None
        self._seen = 0

    def update(self, voltages_v: Iterable[float | None]) -> FaultKind | None:
        """Judge one reading (None: a phase the meter does not measure)."""
        verdict = self._judge([v for v in voltages_v if v is not None])
        if verdict == self.fault:
            self._seen = 0
            return self.fault
        if verdict != self._candidate:
            self._candidate, self._seen = verdict, 0
        self._seen += 1
        if self._seen >= self.limits.samples:
            self.fault, self._seen = verdict, 0
        return self.fault

    def _judge(self, volts: list[float]) -> FaultKind | None:
        lim = self.limits
        if not volts or max(volts) < lim.dead_v:
            return self.fault  # nothing to judge: the verdict stands
        if min(volts) < lim.under_v:
            return FaultKind.UNDER_VOLTAGE
        if max(volts) > lim.over_v:
            return FaultKind.OVER_VOLTAGE
        # inside the band: a fault ends only with the margin of the hysteresis
        if self.fault is FaultKind.UNDER_VOLTAGE and min(volts) < lim.under_v + lim.hysteresis_v:
            return self.fault
        if self.fault is FaultKind.OVER_VOLTAGE and max(volts) > lim.over_v - lim.hysteresis_v:
            return self.fault
        return None
