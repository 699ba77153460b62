"""Running under systemd: readiness, status lines and a watchdog that means something.

The unit (``systemd/picharge.service``) is ``Type=notify`` with ``WatchdogSec=10``:

- ``READY=1`` goes out once the hardware is initialised and the CSMS link (or standalone
  mode) has started, so ``systemctl start`` returns when the charger is really up;
- ``STATUS=`` lines say what it is doing (``systemctl status picharge`` shows the last one);
- ``WATCHDOG=1`` goes out only while the charger is healthy: :func:`run_watchdog` runs on
  the controller's asyncio loop, so a blocked loop stops the pings by itself, and it asks a
  ``healthy()`` callable (usually :meth:`Heartbeats.healthy`) before each ping, so a stalled
  supervisor tick or meter poll stops them too. systemd then kills the process (the
  contactor's pull-down opens it; the driver stage holds CP steady) and restarts it.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op, so the same code runs
from a shell, in tests and in ``picharge demo``.

Threads: :class:`ServiceNotifier` methods may be called from any thread (one datagram
each, through ``sd_notify``); :class:`Heartbeats` and the coroutines belong to the loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

import systemd.daemon as sd_daemon

from controller.connector_types import ConnectorStatus
from controller.status_snapshot import STANDALONE, ConnectorSnapshot, StatusSnapshot

log = logging.getLogger(__name__)

#: How often :func:`run_watchdog` pings per watchdog interval. sd_watchdog_enabled(3)
#: suggests at least twice; four times means one unhealthy check (a brief stall) does not
#: end a charging session, while a stall that lasts most of the interval still does.
PINGS_PER_INTERVAL = 4
#: How often :func:`run_status` re-evaluates the status line, in seconds.
STATUS_PERIOD_S = 2.0
#: Longest silence of the supervisor's timer loop (it ticks every 0.1 s) before the
#: charger counts as hung.
SUPERVISOR_STALL_S = 5.0
#: Longest time between two finished meter polls (success or failure) before the meter
#: poll counts as stalled. A failing poll still finishes: with the driver's defaults
#: (timeout 1 s per request, 3 retries, backoff up to 2 s) one read gives up well within
#: this, so an offline meter is a fault the charger reports, never a restart loop.
METER_STALL_S = 30.0

Sender = Callable[[str], bool]


def _sd_notify(message: str) -> bool:
    result: bool = sd_daemon.notify(message)
    return result


class ServiceNotifier:
    """The sd_notify(3) protocol towards systemd; silent when not started by systemd.

    ``send`` and ``environ`` exist for tests; by default it is ``systemd.daemon.notify``
    and ``os.environ`` (read at each call: a CSMS Reset re-executes the process, which
    inherits the same variables and so keeps talking to systemd).
    """

    def __init__(self, send: Sender = _sd_notify, environ: Mapping[str, str] | None = None) -> None:
        self._send = send
        self._environ = os.environ if environ is None else environ
        self._last_status: str | None = None
        self._failed = False

    @property
    def active(self) -> bool:
        """True when systemd gave us a notification socket."""
        return bool(self._environ.get("NOTIFY_SOCKET"))

    def watchdog_interval_s(self) -> float | None:
        """The unit's WatchdogSec in seconds, or None when no watchdog is asked of this process.

        Follows sd_watchdog_enabled(3): ``WATCHDOG_USEC`` holds the interval and, when
        ``WATCHDOG_PID`` is set, it must be our PID (a child inherits the variables, not the
        duty).
        """
        usec = self._environ.get("WATCHDOG_USEC", "")
        pid = self._environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and (not pid.isdigit() or int(pid) != os.getpid()):
            return None
        return int(usec) / 1_000_000

    def ready(self, status: str | None = None) -> bool:
        """READY=1: hardware initialised and the link started. Safe to call again after a
        re-exec; it also restores the unit's watchdog interval if :meth:`before_restart`
        had stretched it."""
        lines = ["READY=1"]
        if status is not None:
            self._last_status = self._status_line(status)
            lines.append(self._last_status)
        interval = self.watchdog_interval_s()
        if interval is not None:
            lines.append(f"WATCHDOG_USEC={round(interval * 1_000_000)}")
        return self.notify("\n".join(lines))

    def status(self, text: str) -> bool:
        """STATUS=text, sent only when it differs from the last one sent."""
        line = self._status_line(text)
        if line == self._last_status:
            return False
        self._last_status = line
        return self.notify(line)

    def stopping(self, status: str = "stopping: contactors open, last messages out") -> bool:
        """STOPPING=1 at the start of a shutdown (SIGTERM or a CSMS Reset)."""
        return self.notify(f"STOPPING=1\n{self._status_line(status)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the charger is alive and healthy now."""
        return self.notify("WATCHDOG=1")

    def before_restart(self, grace_s: float = 60.0) -> bool:
        """Before the process re-executes itself (CSMS Reset): give the new process
        ``grace_s`` before the watchdog bites, since it pings only once it is up again.
        Its :meth:`ready` restores the unit's interval."""
        return self.notify(
            f"{self._status_line('restarting (reset requested by the CSMS)')}\n"
            f"WATCHDOG=1\nWATCHDOG_USEC={round(grace_s * 1_000_000)}"
        )

    def notify(self, message: str) -> bool:
        """Send one raw notification; False when not under systemd or when sending failed.

        A failure is logged once (then at debug level): losing systemd's ear must not stop
        the charger, and the watchdog will say the rest.
        """
        if not self.active:
            return False
        try:
            sent = self._send(message)
        except OSError as exc:
            level = logging.DEBUG if self._failed else logging.WARNING
            self._failed = True
            log.log(level, "sd_notify failed (%s): %r not delivered", exc, message.split("\n")[0])
            return False
        return sent

    @staticmethod
    def _status_line(text: str) -> str:
        # One line: a newline would start a new notification variable.
        return "STATUS=" + " ".join(text.split())


class Heartbeats:
    """Named liveness signals with a maximum age each; ``healthy()`` feeds the watchdog.

    The supervisor calls :meth:`beat` from the loops that must keep going (its timer tick,
    each meter poll after every finished read); :meth:`expect` declares them with how long
    silence may last. A signal counts from when it was expected, so a loop that never
    starts is caught too. Loop thread only.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limits: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._reported: tuple[str, ...] = ()

    def expect(self, name: str, max_age_s: float) -> None:
        """Watch ``name`` from now on; it must beat at least every ``max_age_s`` seconds."""
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {max_age_s}")
        self._limits[name] = max_age_s
        self._last[name] = self._clock()

    def beat(self, name: str) -> None:
        """``name`` made progress now. Beats of undeclared names are ignored."""
        if name in self._limits:
            self._last[name] = self._clock()

    def stale(self) -> list[str]:
        """The signals silent for longer than their limit, as ``"name (12.3 s)"``."""
        now = self._clock()
        return [
            f"{name} ({now - self._last[name]:.1f} s)"
            for name, limit in self._limits.items()
            if now - self._last[name] > limit
        ]

    def healthy(self) -> bool:
        """True when every signal is fresh; logs each change of the verdict once."""
        stale = tuple(self.stale())
        names = tuple(s.split(" ")[0] for s in stale)
        if names != self._reported:
            if stale:
                log.error("not healthy: no progress from %s", ", ".join(stale))
            else:
                log.warning("healthy again: every watched loop makes progress")
            self._reported = names
        return not stale


async def run_watchdog(
    notifier: ServiceNotifier,
    healthy: Callable[[], bool],
    *,
    pings_per_interval: int = PINGS_PER_INTERVAL,
) -> None:
    """Ping the systemd watchdog while ``healthy()`` says so; runs until cancelled.

    Without a watchdog (no ``WATCHDOG_USEC``, or not under systemd) it just waits to be
    cancelled, so it can sit in a task group or an ``asyncio.wait`` set next to the
    supervisor without ending it. ``healthy`` runs on the loop and must be quick.
    """
    interval_s = notifier.watchdog_interval_s() if notifier.active else None
    if interval_s is None:
        await asyncio.Event().wait()
        return
    period_s = interval_s / max(2, pings_per_interval)
    log.info("systemd watchdog: %.1f s, pinging every %.2f s while healthy", interval_s, period_s)
    withheld = False
    while True:
        if healthy():
            notifier.watchdog()
            if withheld:
                log.warning("watchdog pings resumed")
            withheld = False
        elif not withheld:
            withheld = True
            log.error(
                "watchdog pings withheld: systemd restarts the service if this lasts %.0f s",
                interval_s,
            )
        await asyncio.sleep(period_s)


def status_text(snapshot: StatusSnapshot) -> str:
    """One line for ``systemctl status``: the link, then each connector.

    Example: ``CSMS registered; connector 1: Charging at 16 A, 7.4 kW``; without a CSMS
    the link reads ``standalone``.
    """
    link = snapshot.csms_link
    if link and link != STANDALONE:
        link = f"CSMS {link}"
    body = "; ".join(f"connector {c.id}: {_connector_text(c)}" for c in snapshot.connectors)
    if link:
        return f"{link}; {body}" if body else link
    return body


def _connector_text(connector: ConnectorSnapshot) -> str:
    status = connector.status
    if connector.fault is not None:
        return f"{status} ({connector.fault})"
    if status is ConnectorStatus.CHARGING:
        text = f"Charging at {connector.offered_a:g} A"
        power = connector.meter.power_w if connector.meter is not None else None
        if power is not None:
            text += f", {power / 1000:.1f} kW"
        return text
    if status in (ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE):
        return f"{status} ({connector.offered_a:g} A offered)"
    return str(status)


async def run_status(
    notifier: ServiceNotifier,
    describe: Callable[[], str],
    *,
    period_s: float = STATUS_PERIOD_S,
) -> None:
    """Send ``describe()`` as the STATUS line whenever it changes; runs until cancelled.

    Polling keeps the supervisor free of service concerns; only changes are sent.
    """
    while True:
        notifier.status(describe())
        await asyncio.sleep(period_s)
