"""CPU clocks for the bench scripts: per thread (as the OS counts them), and inside the
simulated I2C bus.

Kept free of the controller's imports: the footprint bench's child process imports it, and
the modules that process loads are its memory baseline.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SimBusClock:
    """Thread CPU spent inside the simulated I2C bus: the simulated chips' work, which runs
    on the driver's thread. :meth:`install` times every bus call with
    :func:`time.thread_time` (about a microsecond per call, on the caller's side)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def install(self) -> None:
        from hw_sim.smbus import SimSMBus

        for name in ("read_i2c_block_data", "write_i2c_block_data", "i2c_rdwr"):
            setattr(SimSMBus, name, self._timed(getattr(SimSMBus, name)))

    def _timed(self, method: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.seconds += spent

        return timed


def task_cpu(pid: int) -> tuple[float, dict[int, tuple[str, float]]]:
    """CPU seconds (user + system) of process ``pid`` and of each of its live threads, as
    the OS counts them (``/proc/PID/stat`` and ``/proc/PID/task/TID/stat``, in clock ticks
    of 10 ms): (process, {thread id: (native name, seconds)}). Readable from outside the
    process, so it needs nothing from the process but its threads' native names. The
    process figure includes threads that have ended."""
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    def seconds(stat: str) -> float:
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
        return (int(fields[11]) + int(fields[12])) * tick_s  # utime, stime

    process = seconds(Path(f"/proc/{pid}/stat").read_text())
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it just ended
            name = (task / "comm").read_text().rstrip("\n")
            threads[int(task.name)] = (name, seconds((task / "stat").read_text()))
    return process, threads
