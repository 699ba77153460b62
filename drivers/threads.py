"""Thread names the operating system can see, so ``top -H`` and ``ps -L`` tell threads apart.

Python's ``threading.Thread.name`` lives only inside the interpreter (Python 3.11 does not pass
it to the OS; 3.14 will). Without a native name every thread shows the name of the thread
that created it, so an idle charger appears as seven threads all called ``python`` and
nobody can say which one spends the CPU. Every thread the product and the simulator start
is named here, both ways, with a short name from :data:`THREAD_NAMES`: the simulator's all
start with ``sim-`` so their CPU can be summed apart from the controller's.

Linux allows 15 bytes (plus the NUL) per native name; longer names are cut, never refused.
Where the platform has no way to set it, the Python name is still set and a debug line says
so: a name is a diagnostic, never a reason to fail.

Kept in ``drivers/`` so that drivers, the simulator and the controller may all import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Linux's TASK_COMM_LEN is 16 bytes including the terminating NUL.
NATIVE_NAME_BYTES = 15
#: prctl(2) option that names the calling thread (linux/prctl.h).
_PR_SET_NAME = 15

#: The controller's event loop (the main thread) and its default executor.
LOOP_THREAD = "picharge-loop"
LOOP_EXECUTOR = "to-thread"

#: Every thread name the product and the simulator use, and what runs there. An executor's
#: threads add ``_N`` to their name. Library threads that we cannot name at their start are
#: listed in docs/benchmarks.md (footprint section) with how to tell them apart.
THREAD_NAMES: dict[str, str] = {
    "picharge-loop": "the main thread: the controller's asyncio event loop",
    "to-thread": "the loop's default executor (asyncio.to_thread, DNS lookups)",
    "storage": "SQLite: every read and write of the state database",
    "cp-sampler": "the control pilot's ADC sampling (one per connector)",
    "loop-watchdog": "opens every contactor when the event loop stops beating",
    "rfid-pn532": "the PN532 card reader's polling",
    "led-blink": "gpiozero's blink or flash thread of the status LED",
    "web": "the web page: session history reads (own read-only SQLite) and password hashing",
    "sim-ev-meter": "simulator: the cars' physics and the meters' Modbus servers (a loop)",
    "sim-io": "simulator: its loop's default executor",
    "sim-pwmchip": "simulator: the fake sysfs PWM chip (one per chip: sim-pwmchip0...)",
    "sim-pn532-uart": "simulator: the PN532 answering on its pseudo-terminal",
    "sim-rdm6300": "simulator: the RDM6300 writing card frames into its pseudo-terminal",
    "sim-pty-todev": "simulator: the Modbus RTU line, driver to meter",
    "sim-pty-todrv": "simulator: the Modbus RTU line, meter to driver",
    "sim-relay": "simulator: a contactor's or RCM's delayed mechanical response",
}


def _native(name: str) -> bytes:
    """``name`` as the OS stores it: UTF-8, cut to 15 bytes without splitting a character."""
    return name.encode()[:NATIVE_NAME_BYTES].decode(errors="ignore").encode()


def _libc() -> Any:
    """The C library the interpreter runs on (the process's own symbols: no library search,
    which would start ``ldconfig`` at import); None where there is no such thing."""
    if sys.platform == "win32":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _set_native_name_of_current(name: str) -> bool:
    """Name the calling thread for the OS; False where the platform offers no way."""
    if _LIBC is None:
        return False
    raw = _native(name)
    if sys.platform.startswith("linux"):
        return bool(_LIBC.prctl(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0)
    if sys.platform == "darwin":  # macOS names only the calling thread, with one argument
        return bool(_LIBC.pthread_setname_np(ctypes.c_char_p(raw)) == 0)
    return False


def name_current_thread(name: str) -> None:
    """Give the calling thread ``name``, in Python and (cut to 15 bytes) in the OS."""
    threading.current_thread().name = name
    if not _set_native_name_of_current(name):
        log.debug("no native thread names on %s: %r is named in Python only", sys.platform, name)


def name_thread(thread: threading.Thread, name: str) -> None:
    """Name a thread that is already running, such as one a library started for us.

    Another thread's native name is written to ``/proc/self/task/<tid>/comm`` (what glibc's
    ``pthread_setname_np`` does too), never through its pthread handle: that handle may
    belong to a thread that has just ended. A thread that ended meanwhile is left alone.
    """
    if thread is threading.current_thread():
        name_current_thread(name)
        return
    thread.name = name
    tid = thread.native_id
    if tid is None or not sys.platform.startswith("linux"):
        log.debug("cannot name thread %s natively on %s", name, sys.platform)
        return
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it has ended
        Path(f"/proc/self/task/{tid}/comm").write_bytes(_native(name))


class NamedThread(threading.Thread):
    """A :class:`threading.Thread` that also carries its ``name`` natively while it runs.

    Use it wherever ``threading.Thread(target=..., name=...)`` would do; ``name`` is required.
    """

    def __init__(self, *, target: Callable[..., object], name: str, **kwargs: Any) -> None:
        super().__init__(target=target, name=name, **kwargs)

    def run(self) -> None:
        name_current_thread(self.name)
        super().run()


def named_executor(name: str, max_workers: int | None = None) -> ThreadPoolExecutor:
    """A thread pool whose threads are named ``<name>_<n>``, natively too."""
    return ThreadPoolExecutor(
        max_workers=max_workers, thread_name_prefix=name, initializer=_name_worker
    )


def _name_worker() -> None:
    name_current_thread(threading.current_thread().name)  # "<prefix>_<n>", set by the pool


async def on_named_loop(
    main: Awaitable[T], name: str = LOOP_THREAD, executor_name: str = LOOP_EXECUTOR
) -> T:
    """``asyncio.run(on_named_loop(main()))``: run ``main`` on a loop named by
    :func:`name_loop_thread` (the process's main thread also names the process in ``ps``)."""
    name_loop_thread(name, executor_name)
    return await main


def name_loop_thread(name: str, executor_name: str) -> None:
    """Name the running loop's thread ``name`` and give the loop a default executor whose
    threads are ``<executor_name>_<n>`` (``asyncio.to_thread`` and DNS lookups run there).

    Call it first thing in the loop's main coroutine. The executor has asyncio's default size;
    ``asyncio.run`` shuts it down as it would its own.
    """
    loop = asyncio.get_running_loop()
    name_current_thread(name)
    loop.set_default_executor(named_executor(executor_name))
