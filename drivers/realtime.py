"""Real-time scheduling for a thread the safety reaction runs on (the CP sampler).

Why: the CP sampler (:mod:`drivers.pilot_sensor`) drops the contactor coil on its own
thread, but it sleeps through every ADS1115 conversion, and each wake-up under normal
scheduling queues behind whatever else wants the CPU: another process spinning, the
controller's loop serving a CSMS flood. On a 2-core machine with a CPU-bound neighbour that
stretched a C -> B reaction from 4 to 6-10 ms (docs/benchmarks.md). Under ``SCHED_FIFO``
the sampler's wake-up preempts every normally scheduled thread at once. The priority is
modest on purpose (10 by default, of 1-99): above every normal task, below the kernel's
interrupt threads (50) and anything an integrator runs at real-time priority on purpose.

Cost and bounds: the sampler blocks at least once per conversion (about every 1.3 ms) and
runs for well under 0.1 ms between, so it takes little from the rest of the system; the
kernel still reserves 5 % of each second for normal tasks (``sched_rt_runtime_us``), and
the systemd unit caps the CPU a real-time thread may use without blocking
(``LimitRTTIME=``), so a sampler that ever spun would be stopped rather than starve the Pi.
``SCHED_RESET_ON_FORK``: nothing the thread might start inherits the policy.

Permission: the unit grants ``LimitRTPRIO=`` (the ``RLIMIT_RTPRIO`` resource limit, which
lets an unprivileged user pick ``SCHED_FIFO`` up to that priority; no capability needed).
Without it (a developer's shell, CI, a unit without the grant) the request is refused;
the thread then runs as before, under normal scheduling, and the process logs once that it
runs without real-time priority: the charger keeps working, only the reaction's tail under
CPU load is longer.

:func:`tight_timer_slack` is the lesser lever for the same thread, and the one left when
real-time priority is refused: sleeps that end on time.

Threads: both functions change the *calling* thread only.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from typing import Final

log = logging.getLogger(__name__)

#: The default priority of the CP sampler; the systemd unit's ``LimitRTPRIO=`` allows it.
DEFAULT_PRIORITY: Final = 10
#: Highest priority the configuration accepts: below the kernel's threaded interrupts (50).
MAX_PRIORITY: Final = 49

_PR_SET_TIMERSLACK: Final = 29  # linux/prctl.h

_refusal_logged = False
_refusal_lock = threading.Lock()


def tight_timer_slack() -> None:
    """Let the calling thread's sleeps end on time (Linux: ``PR_SET_TIMERSLACK`` to 1 ns).

    The kernel may stretch a normal thread's sleep by up to 50 us to batch wake-ups. The
    sampler sleeps once per conversion (1.2 ms) and C->B needs about three conversions, so
    the slack would add a measurable part of the reaction time; for this one thread it is
    not worth the saving. (A ``SCHED_FIFO`` thread gets no slack anyway; this covers the
    thread that was refused real-time priority.) Elsewhere, or if the call fails, the
    default slack stays.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0) != 0:
            log.debug("PR_SET_TIMERSLACK failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.debug("PR_SET_TIMERSLACK unavailable: %s", exc)


def request_fifo(priority: int, who: str) -> bool:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority``; True when granted.

    ``priority`` 0 asks for nothing (normal scheduling, False). A refusal (no permission,
    a kernel or platform without the policy) leaves the thread as it was; the first refusal
    in the process is logged as a warning naming ``who`` and what to grant, later ones at
    debug level (a charger with two connectors has two samplers: one warning).
    """
    if priority <= 0:
        return False
    try:
        policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
        os.sched_setscheduler(threading.get_native_id(), policy, os.sched_param(priority))
    except (AttributeError, OSError) as exc:  # AttributeError: no such policy on this OS
        _log_refusal(who, priority, exc)
        return False
    log.info("%s runs at real-time priority (SCHED_FIFO %d)", who, priority)
    return True


def _log_refusal(who: str, priority: int, exc: BaseException) -> None:
    global _refusal_logged
    with _refusal_lock:
        first, _refusal_logged = not _refusal_logged, True
    if first:
        log.warning(
            "%s runs without real-time priority (SCHED_FIFO %d refused: %s): the CP reaction "
            "waits for the CPU under load; the systemd unit grants it with LimitRTPRIO=",
            who,
            priority,
            exc,
        )
    else:
        log.debug("%s: SCHED_FIFO %d refused too: %s", who, priority, exc)
