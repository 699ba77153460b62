"""Where a CP hazard's reaction time goes: a trace of the ``cp-sampler`` thread (bench only).

``bench/safety_reaction.py --trace`` installs :class:`SamplerTrace` before the controller
starts. It wraps, at class level and only for calls on the ``cp-sampler`` thread,
:meth:`drivers.ads1115.Ads1115.read_raw` (when each conversion started and ended) and
:meth:`drivers.interlock.Interlock.trip` (when the sampler decided), and reads the thread's
``/proc/.../schedstat`` (nanoseconds on a CPU, nanoseconds runnable but waiting for one) at
the hazard and at the trip. One trial then splits into:

- **phase**: from the hazard to the start of the first conversion that sees it (the
  simulated ADS1115 samples its input when the conversion starts): the rest of the sample
  under way and the pause after it, 0 to one sample period by design;
- **detect**: from there to the trip: the debounce's conversions (two for C -> B or E) and
  the pause between them, plus classification;
- **coil**: from the trip to the coil pin low (the interlock's lock and one pin write);
- **run queue**: how long, in the whole trial, the sampler was runnable and waiting for a
  CPU (the kernel's count); **loop run queue**: the same for the event loop's thread, which
  holds the GIL while it runs Python (a holder kept off a CPU keeps the sampler waiting for
  the GIL); **over**: the conversions' time beyond the
  nominal ``1 / 860 s`` each (wake-ups late: CPU, the GIL, timer slack); **gc**: how much
  of the trial a garbage collection ran, on any thread (CPython collects holding the GIL).
Each row also shows its slowest trial's parts.

What is neither design nor run queue is the sampler asleep past its time: mostly waiting
for the GIL (another thread of the process ran Python) and timer latency.
"""

from __future__ import annotations

import functools
import gc
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import percentile

from drivers.ads1115 import Ads1115
from drivers.interlock import Interlock

SAMPLER = "cp-sampler"
#: The parts of a trial, in the order they are printed.
KEYS = ("phase", "detect", "coil", "run queue", "loop run queue", "over", "gc", "conversions")


def schedstat(tid: int | None = None) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable waiting for one) of thread ``tid`` (None: this)."""
    path = Path(
        "/proc/thread-self/schedstat" if tid is None else f"/proc/self/task/{tid}/schedstat"
    )
    on_cpu, waiting, _ = path.read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


@dataclass
class Trial:
    """One hazard's timeline (``time.monotonic`` seconds)."""

    injected: float
    runq_at_inject: float
    #: The event loop's thread's run-queue seconds (it may hold the GIL the sampler wants).
    loop_runq_at_inject: float
    conversions: list[tuple[float, float]] = field(default_factory=list)
    tripped: float | None = None
    runq_at_trip: float | None = None
    loop_runq_at_trip: float | None = None


@dataclass
class SamplerTrace:
    """Installs the wrappers; :meth:`begin` at each injection, :meth:`end` with the coil."""

    _tid: int | None = None
    #: The thread that runs the event loop (the bench runs it on its main thread).
    _loop_tid: int = field(default_factory=lambda: threading.main_thread().native_id or 0)
    _trial: Trial | None = None
    _rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    #: Garbage collections (start, end, generation): CPython's collector holds the GIL.
    _collections: list[tuple[float, float, int]] = field(default_factory=list)
    _gc_started: float = 0.0

    def install(self) -> None:
        self._wrap(Ads1115, "read_raw", self._around_read)
        self._wrap(Interlock, "trip", self._before_trip)
        gc.callbacks.append(self._on_gc)
        self._undo.append(lambda: gc.callbacks.remove(self._on_gc))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            self._collections.append((self._gc_started, time.monotonic(), info["generation"]))
            del self._collections[:-1000]

    def uninstall(self) -> None:
        for undo in self._undo:
            undo()

    def _wrap(self, cls: type, name: str, hook: Callable[..., Any]) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name != SAMPLER:
                return original(*args, **kwargs)
            return hook(original, *args, **kwargs)

        setattr(cls, name, wrapper)
        self._undo.append(lambda: setattr(cls, name, original))

    def _around_read(self, original: Callable[..., int], *args: Any) -> int:
        self._tid = threading.get_native_id()
        started = time.monotonic()
        raw = original(*args)
        ended = time.monotonic()
        with self._lock:
            if self._trial is not None and self._trial.tripped is None:
                self._trial.conversions.append((started, ended))
        return raw

    def _before_trip(self, original: Callable[..., int], *args: Any) -> int:
        stamp = time.monotonic()
        runq = schedstat()[1]
        loop_runq = schedstat(self._loop_tid)[1]
        with self._lock:
            trial = self._trial
            if trial is not None and trial.tripped is None:
                trial.tripped, trial.runq_at_trip = stamp, runq
                trial.loop_runq_at_trip = loop_runq
        return original(*args)

    def begin(self, injected: float) -> None:
        """Right after the hazard was injected (its stamp), on any thread."""
        runq = schedstat(self._tid)[1] if self._tid is not None else 0.0
        loop_runq = schedstat(self._loop_tid)[1]
        with self._lock:
            self._trial = Trial(injected, runq, loop_runq)

    def end(self, row: str, coil_low: float) -> None:
        """The coil went low at ``coil_low``: file the trial under ``row``."""
        with self._lock:
            trial, self._trial = self._trial, None
        if (
            trial is None
            or trial.tripped is None
            or trial.runq_at_trip is None
            or trial.loop_runq_at_trip is None
        ):
            return  # not a sampler hazard (the RCD trips on its edge thread)
        if trial.tripped > coil_low:
            return  # the sampler tripped too, after another detector had dropped the coil
        seeing = [c for c in trial.conversions if c[0] >= trial.injected]
        first = seeing[0][0] if seeing else trial.tripped
        nominal_s = 1 / 860
        self._rows.setdefault(row, []).append(
            {
                "phase": first - trial.injected,
                "detect": trial.tripped - first,
                "coil": coil_low - trial.tripped,
                "run queue": trial.runq_at_trip - trial.runq_at_inject,
                "loop run queue": trial.loop_runq_at_trip - trial.loop_runq_at_inject,
                "over": sum(max(0.0, e - s - nominal_s) for s, e in trial.conversions),
                "conversions": float(len(trial.conversions)),
                "gc": sum(
                    max(0.0, min(end, trial.tripped) - max(start, trial.injected))
                    for start, end, _ in list(self._collections)
                ),
            }
        )

    def collections(self) -> str:
        """The last 1,000 garbage collections: how many of each generation, the longest."""
        done = list(self._collections)
        parts = []
        for generation in (0, 1, 2):
            times = [end - start for start, end, gen in done if gen == generation]
            if times:
                parts.append(f"gen {generation}: {len(times)}, longest {max(times) * 1000:.2f} ms")
        return "garbage collections (last 1,000): " + "; ".join(parts)

    def report(self) -> dict[str, str]:
        """Row -> one line: median / p99 of each part, in ms (conversions: a count)."""
        lines = {}
        for row, trials in self._rows.items():
            parts = []
            for key in KEYS:
                values = [t[key] for t in trials]
                scale, unit = (1.0, "") if key == "conversions" else (1000.0, " ms")
                parts.append(
                    f"{key} {statistics.median(values) * scale:.2f}/"
                    f"{percentile(values, 99) * scale:.2f}{unit}"
                )
            lines[row] = f"  where it went (median/p99, n={len(trials)}): " + ", ".join(parts)
            worst = max(trials, key=lambda t: t["phase"] + t["detect"] + t["coil"])
            lines[row] += "\n  the slowest trial: " + ", ".join(
                f"{key} {worst[key]:.0f}"
                if key == "conversions"
                else f"{key} {worst[key] * 1000:.2f} ms"
                for key in KEYS
            )
        return lines
