"""CPU clocks for the bench scripts: per thread, and inside the simulated I2C bus.

Kept free of the controller's imports: the footprint bench's child process imports it, and
the modules that process loads are its memory baseline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
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


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, keyed ``name#native_id``."""
    cpu: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        with contextlib.suppress(OSError):
            clock = time.pthread_getcpuclockid(thread.ident)
            cpu[f"{thread.name}#{thread.native_id}"] = time.clock_gettime(clock)
    return cpu
