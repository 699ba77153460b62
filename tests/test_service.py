"""The sd_notify protocol against a real datagram socket, as systemd would receive it.

Each test binds an abstract AF_UNIX datagram socket, hands its name to the process as
NOTIFY_SOCKET and lets systemd-python's real ``sd_notify`` talk to it: READY, STATUS and
WATCHDOG arrive as systemd sees them, and the watchdog falls silent when the charger is
unhealthy or its loop is blocked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from controller.connector_types import ConnectorStatus
from controller.limits import FixedBound
from controller.service import (
    Heartbeats,
    ServiceNotifier,
    run_status,
    run_watchdog,
    status_text,
)
from controller.status_snapshot import (
    STANDALONE,
    ConnectorSnapshot,
    MeterSnapshot,
    StatusSnapshot,
)
from drivers.errors import FaultKind
from tests.support.wait import until_sync


class NotifySocket:
    """What systemd listens on: records every datagram with its arrival time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.settimeout(0.02)
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="notify-listener")
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.received.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        with self._lock:
            return [m for _, m in self.received]

    def times_of(self, message: str) -> list[float]:
        with self._lock:
            return [t for t, m in self.received if m == message]

    def wait_for(self, count: int, timeout_s: float = 2.0) -> list[str]:
        until_sync(lambda: len(self.messages()) >= count, timeout_s, interval_s=0.005)
        return self.messages()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def systemd_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket(f"picharge-test-{os.getpid()}-{time.monotonic_ns()}")
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + listener.name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def test_ready_status_and_stopping_reach_systemd_as_sd_notify_datagrams(
    systemd_socket: NotifySocket,
) -> None:
    notifier = ServiceNotifier()
    assert notifier.active
    assert notifier.ready("hardware up; CSMS connecting")
    assert not notifier.status("hardware up; CSMS connecting")  # READY carried it
    assert notifier.status("CSMS registered; connector 1: Available")
    assert not notifier.status("CSMS registered;  connector 1:\nAvailable")  # same line
    assert notifier.status("CSMS registered; connector 1: Charging at 16 A")
    assert notifier.stopping()
    assert systemd_socket.wait_for(4) == [
        "READY=1\nSTATUS=hardware up; CSMS connecting",
        "STATUS=CSMS registered; connector 1: Available",
        "STATUS=CSMS registered; connector 1: Charging at 16 A",
        "STOPPING=1\nSTATUS=stopping: contactors open, last messages out",
    ]


def test_outside_systemd_the_notifier_is_silent_and_never_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = ServiceNotifier()
    assert not notifier.active
    assert not notifier.ready()
    assert not notifier.status("anything")
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_a_vanished_notify_socket_is_logged_once_and_the_charger_carries_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"@picharge-nobody-listens-{time.monotonic_ns()}")
    notifier = ServiceNotifier()
    with caplog.at_level(logging.DEBUG, logger="controller.service"):
        assert not notifier.ready()
        assert not notifier.watchdog()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sd_notify failed" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("10000000", None, 10.0),
        ("10000000", "self", 10.0),
        ("10000000", "1", None),  # the watchdog belongs to another process
        ("0", None, None),
        ("ten", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval_follows_watchdog_usec_and_watchdog_pid(
    usec: str | None, pid: str | None, expected: float | None
) -> None:
    environ = {"NOTIFY_SOCKET": "@x"}
    if usec is not None:
        environ["WATCHDOG_USEC"] = usec
    if pid is not None:
        environ["WATCHDOG_PID"] = str(os.getpid()) if pid == "self" else pid
    assert ServiceNotifier(environ=environ).watchdog_interval_s() == expected


@pytest.mark.timing  # pings every 50 ms of wall-clock time: run alone
async def test_watchdog_pings_only_while_healthy_and_resumes_after(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.05 s
    state = {"healthy": True}
    task = asyncio.create_task(run_watchdog(ServiceNotifier(), lambda: state["healthy"]))
    try:
        # watchdog timing is the point: pings every 50 ms while healthy
        await asyncio.sleep(0.3)
        healthy_pings = len(systemd_socket.times_of("WATCHDOG=1"))
        assert healthy_pings >= 4
        state["healthy"] = False
        await asyncio.sleep(0.07)  # a ping already on its way may still land
        withheld_from = len(systemd_socket.times_of("WATCHDOG=1"))
        await asyncio.sleep(0.4)  # twice the watchdog interval: systemd would restart us
        assert len(systemd_socket.times_of("WATCHDOG=1")) == withheld_from
        state["healthy"] = True
        # pings resume within three ping periods: watchdog timing is the point
        await asyncio.sleep(0.15)
        assert len(systemd_socket.times_of("WATCHDOG=1")) > withheld_from
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def _hang_the_loop(seconds: float, window: list[float]) -> None:
    """A loop callback that blocks, as a hung blocking driver call on the loop would."""
    window.append(time.monotonic())
    # the loop hangs this long on purpose
    time.sleep(seconds)
    window.append(time.monotonic())


async def test_a_blocked_loop_sends_no_watchdog_pings(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    task = asyncio.create_task(run_watchdog(ServiceNotifier(), lambda: True))
    try:
        # a few healthy pings first
        await asyncio.sleep(0.2)
        window: list[float] = []
        asyncio.get_running_loop().call_soon(_hang_the_loop, 0.5, window)
        await asyncio.sleep(0)  # the hang runs now
        await asyncio.sleep(0.2)  # and the loop is free again
        blocked_at, unblocked_at = window
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    pings = systemd_socket.times_of("WATCHDOG=1")
    assert any(t < blocked_at for t in pings)
    assert not [t for t in pings if blocked_at + 0.01 < t < unblocked_at]
    assert any(t > unblocked_at for t in pings)


async def test_a_stalled_meter_poll_stops_the_pings_through_heartbeats(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    heartbeats = Heartbeats()
    heartbeats.expect("supervisor", 0.1)
    heartbeats.expect("meter-1", 0.15)

    async def supervisor_tick() -> None:
        while True:
            heartbeats.beat("supervisor")
            # a supervisor beating every 20 ms
            await asyncio.sleep(0.02)

    async def meter_poll(stall: asyncio.Event) -> None:
        while True:
            heartbeats.beat("meter-1")
            # a meter poll beating every 20 ms
            await asyncio.sleep(0.02)
            if stall.is_set():
                await asyncio.Event().wait()  # a read that never returns

    stall = asyncio.Event()
    tasks = [
        asyncio.create_task(supervisor_tick()),
        asyncio.create_task(meter_poll(stall)),
        asyncio.create_task(run_watchdog(ServiceNotifier(), heartbeats.healthy)),
    ]
    try:
        # both beat for a while: the limits are what is checked
        await asyncio.sleep(0.25)
        assert heartbeats.healthy()
        stall.set()
        await asyncio.sleep(0.25)  # the meter's limit passes
        assert heartbeats.stale() and heartbeats.stale()[0].startswith("meter-1 ")
        count = len(systemd_socket.times_of("WATCHDOG=1"))
        # no ping while a heartbeat is stale: watchdog timing is the point
        await asyncio.sleep(0.3)
        assert len(systemd_socket.times_of("WATCHDOG=1")) == count
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_without_a_watchdog_run_watchdog_just_waits_to_be_cancelled(
    systemd_socket: NotifySocket,
) -> None:
    task = asyncio.create_task(run_watchdog(ServiceNotifier(), lambda: True))
    # the watchdog keeps running: nothing may happen here; the charger acts within tens of ms, so
    # 0.1 s is a wide margin on a loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert systemd_socket.messages() == []


def test_a_restart_stretches_the_watchdog_and_ready_restores_it(
    systemd_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    notifier = ServiceNotifier()
    notifier.before_restart(60.0)
    notifier.ready()
    assert systemd_socket.wait_for(2) == [
        "STATUS=restarting (reset requested by the CSMS)\nWATCHDOG=1\nWATCHDOG_USEC=60000000",
        "READY=1\nWATCHDOG_USEC=10000000",
    ]


def test_heartbeats_name_what_went_silent_including_a_loop_that_never_started(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    heartbeats = Heartbeats(clock=lambda: now[0])
    heartbeats.expect("supervisor", 5.0)
    heartbeats.expect("meter-1", 30.0)
    heartbeats.beat("not-declared")  # ignored
    now[0] = 104.0
    heartbeats.beat("supervisor")
    assert heartbeats.healthy()
    now[0] = 131.0  # meter-1 never beat since it was expected at 100
    with caplog.at_level(logging.WARNING, logger="controller.service"):
        assert not heartbeats.healthy()
        assert not heartbeats.healthy()  # logged once, not at every check
    assert heartbeats.stale() == ["supervisor (27.0 s)", "meter-1 (31.0 s)"]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["not healthy: no progress from supervisor (27.0 s), meter-1 (31.0 s)"]
    heartbeats.beat("supervisor")
    heartbeats.beat("meter-1")
    assert heartbeats.healthy()
    with pytest.raises(ValueError, match="max_age_s"):
        heartbeats.expect("x", 0)


def _connector(
    connector_id: int,
    status: ConnectorStatus,
    *,
    fault: FaultKind | None = None,
    offered_a: float = 0.0,
    power_w: float | None = None,
) -> ConnectorSnapshot:
    meter = None
    if power_w is not None:
        meter = MeterSnapshot(1000.0, power_w, (0.0, 0.0, 0.0), (230.0, 230.0, 230.0))
    charging = status is ConnectorStatus.CHARGING
    return ConnectorSnapshot(
        id=connector_id,
        cp_state="C" if charging else None,
        contactor_closed=charging,
        status=status,
        fault=fault,
        faults=() if fault is None else (fault,),
        transaction_id="t1" if charging else None,
        id_tag="04AABBCC" if charging else None,
        meter=meter,
        offered_a=offered_a,
        limit_a=32.0,
        limited_by=(FixedBound.CONNECTOR,),
        limits=(),
    )


def test_status_line_says_what_each_connector_is_doing() -> None:
    connectors = (
        _connector(1, ConnectorStatus.CHARGING, offered_a=16.0, power_w=7360.0),
        _connector(2, ConnectorStatus.FAULTED, fault=FaultKind.CONTACTOR_WELDED),
        _connector(3, ConnectorStatus.SUSPENDED_EVSE, offered_a=0.0),
        _connector(4, ConnectorStatus.AVAILABLE),
    )
    assert status_text(StatusSnapshot(connectors, "registered")) == (
        "CSMS registered; connector 1: Charging at 16 A, 7.4 kW; "
        "connector 2: Faulted (contactor_welded); connector 3: SuspendedEVSE (0 A offered); "
        "connector 4: Available"
    )
    preparing = (_connector(1, ConnectorStatus.PREPARING),)
    assert status_text(StatusSnapshot(preparing, STANDALONE)) == (
        "standalone; connector 1: Preparing"
    )
    assert status_text(StatusSnapshot((), "connecting")) == "CSMS connecting"


async def test_status_reporter_sends_only_changes(systemd_socket: NotifySocket) -> None:
    lines = iter(["connecting", "connecting", "connecting", "registered"])
    last = ["registered"]

    def describe() -> str:
        last[0] = next(lines, last[0])
        return last[0]

    task = asyncio.create_task(run_status(ServiceNotifier(), describe, period_s=0.01))
    try:
        # status lines are written every 10 ms for a while
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert systemd_socket.wait_for(2) == ["STATUS=connecting", "STATUS=registered"]
