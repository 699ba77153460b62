"""Fault trials: nothing lost, nothing duplicated, through power cuts and CSMS outages.

Two kinds of trial, against the bundled loopback CSMS (:class:`LocalCsms`):

- **kill**: ``picharge run --sim`` runs as a separate process and is killed with SIGKILL at a
  random moment of a session: right after the card tap, while the CSMS handles the
  StartTransaction (before it answers), just after it answered, while charging, right after
  the car was unplugged or the card tapped again, and likewise around the StopTransaction.
  It is restarted with the same state directory (the simulated meter's register lives
  there, as a real meter keeps counting) and must then close each transaction exactly once
  at the CSMS, with meterStop within one meter reading of the register.
- **outage**: the controller runs in this process; the CSMS refuses connections, drops them,
  or freezes them (a dead but open link), for a random time while a session starts, charges
  or stops. Afterwards the CSMS must have every transaction message the charge point made,
  in order, each with the timestamp of when it happened and the CSMS's transactionId.

The CSMS recognises a StartTransaction repeated after a restart (same connector, idTag,
timestamp and meterStart) and answers with the same transactionId, as SteVe does
(``OcppServerRepositoryImpl.insertIgnoreTransaction``): OCPP 1.6 delivers at least once, so a
message whose answer was lost with the power is sent again. Such repeats are counted
("redelivered"); a repeat that differs, or a second transaction for one session, is a
duplicate.

    .venv/bin/python bench/fault_trials.py [--kill-trials 45] [--outage-trials 12] [--seed 1]
        [--ocpp 1.6|2.0.1]

Both OCPP versions run through the same driver and judge (``--ocpp``; what differs, the
words each version has for a transaction's start and end, lives in
``bench/trial_protocols.py``). Under 2.0.1 the judge reads the CSMS's TransactionEvents:
Started and Ended per transaction, identical repeats of a seqNo allowed, no seqNo missing.
Every trial also checks the stop reason (PowerLoss after a cut, else what ended the session:
EVDisconnected for an unplugged car, Local for the card) and that nothing is left in the
outbox once the restarted controller settled.

The figures printed: trials, transactions lost, transactions duplicated, worst meterStop
error (Wh, and in meter readings: the energy between two readings, 1 s apart, at the trial's
power and simulation speed; meterStop is whole Wh, so add up to 0.5 Wh of rounding), plus
the journal's write cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from controller.local_csms import LocalCsms, Received, parse_timestamp

try:
    from bench.trial_protocols import DIALECTS, Dialect, TxView
except ModuleNotFoundError:  # run as a script: bench/ itself is on sys.path
    from trial_protocols import DIALECTS, Dialect, TxView  # type: ignore[no-redef, import-not-found]

CARD = "04A1B2C3"
CP_STATE_DB = "picharge.db"
REPO = Path(__file__).resolve().parents[1]
#: The time between two meter readings (the supervisor polls every second): "within one
#: meter reading" is the energy drawn in this long, plus the half Wh OCPP's whole-Wh
#: meterStop may round by (:data:`ROUNDING_WH`).
READING_PERIOD_S = 1.0
ROUNDING_WH = 0.5
#: Two taps of one card this close together are one presentation to the reader.
CARD_GAP_S = 1.5

log = logging.getLogger("fault_trials")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(0.02)


# --- the CSMS side ------------------------------------------------------------------------


class TrialCsms:
    """A :class:`LocalCsms` that recognises repeated starts and can run a hook (a kill)
    while it handles the next message starting or ending a transaction (``dialect``: the
    OCPP version's words for them)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.csms = LocalCsms(authorized_tags={CARD: "Accepted"}, call_timeout_s=10.0)
        self.repeated_starts = 0
        self.hooks: dict[str, tuple[str, Callable[[], None]]] = {}
        for action in dialect.hooked:
            self.csms.set_response(action, self._handler(action))

    def _handler(self, action: str) -> Callable[[dict[str, Any]], Any]:
        async def handle(request: dict[str, Any]) -> dict[str, Any] | None:
            moment = self.dialect.moment(action, request)
            if moment is not None:
                await self._run_hook(moment)
            if action == "StartTransaction":
                return self._repeated_start(request)
            if moment == "start" and any(
                event["eventType"] == "Started"
                for (_, tid), events in self.csms.transaction_events.items()
                if tid == request["transactionInfo"]["transactionId"]
                for event in events
            ):
                self.repeated_starts += 1  # 2.0.1: the charger's id, nothing to look up
            return None

        return handle

    async def start(self) -> str:
        return await self.csms.start()

    async def stop(self) -> None:
        await self.csms.stop()

    def arm(self, moment: str, when: str, hook: Callable[[], None]) -> None:
        """Run ``hook`` while handling the next message of ``moment`` (``start`` or ``stop``
        of a transaction): ``before`` answering, or a moment ``after`` the answer went out."""
        self.hooks[moment] = (when, hook)

    async def _run_hook(self, moment: str) -> None:
        armed = self.hooks.pop(moment, None)
        if armed is None:
            return
        when, hook = armed
        if when == "before":
            hook()
            await asyncio.sleep(0.05)  # the process is gone before the answer is written
        else:
            asyncio.get_running_loop().call_later(random.uniform(0.0, 0.01), hook)

    def _repeated_start(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """1.6: the id given before to the same StartTransaction (as SteVe does)."""
        started = parse_timestamp(request["timestamp"])
        for record in self.csms.transactions.values():
            if (
                record.connector_id == request["connectorId"]
                and record.id_tag == request["idTag"]
                and record.meter_start_wh == request["meterStart"]
                and record.started_at == started
            ):
                self.repeated_starts += 1
                status = self.csms.tag_status(request["idTag"])
                return {
                    "transactionId": record.transaction_id,
                    "idTagInfo": {"status": status},
                }
        return None


# --- the controller as a separate process -------------------------------------------------


class ControllerProcess:
    """``picharge run --sim`` in a subprocess, driven through its sim control endpoint."""

    def __init__(
        self, workdir: Path, csms_url: str, cp_id: str, speed: float, dialect: Dialect
    ) -> None:
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.version = dialect.version
        self.keys = dialect.write_keys(workdir / "keys.toml")
        self.csms_url = csms_url
        self.cp_id = cp_id
        self.speed = speed
        self.proc: subprocess.Popen[bytes] | None = None
        self.control = ""
        self._log: IO[bytes] | None = None

    async def start(self, timeout_s: float = 20.0) -> None:
        self.control = f"127.0.0.1:{free_port()}"
        self._log = (self.workdir / "controller.log").open("ab")
        self.proc = await asyncio.to_thread(
            subprocess.Popen,
            [
                sys.executable,
                "-m",
                "controller.cli",
                "run",
                "--sim",
                "--csms",
                self.csms_url,
                "--id",
                self.cp_id,
                "--state-dir",
                str(self.state_dir),
                "--sim-control",
                self.control,
                "--sim-speed",
                str(self.speed),
                "--ocpp-keys",
                str(self.keys),
                "--ocpp",
                self.version,
            ],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the controller exited with {self.proc.returncode}")
            try:
                await self.status()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def sim(self, action: str, **extra: Any) -> dict[str, Any]:
        from controller.sim_client import SimControlError, send

        request = {"action": action, "connector": 1, **extra}
        try:
            return await asyncio.to_thread(send, self.control, request, 5.0)
        except SimControlError as exc:
            raise OSError(str(exc)) from exc

    async def status(self) -> dict[str, Any]:
        connector: dict[str, Any] = (await self.sim("status"))["connectors"][0]
        return connector

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut (the hook-safe part)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def reap(self) -> None:
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 15)
            except TimeoutError:
                self.proc.kill()
        await self.reap()

    def outbox_size(self) -> int | None:
        """Messages still in the controller's outbox (read-only peek at its database)."""
        path = self.state_dir / CP_STATE_DB
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error:
            return None
        try:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            return None
        finally:
            conn.close()


# --- kill trials --------------------------------------------------------------------------

KILL_MOMENTS: tuple[tuple[str, str], ...] = (
    ("start", "after-tap"),
    ("start", "csms-before-answer"),
    ("start", "csms-after-answer"),
    ("charging", "charging"),
    ("stop", "after-stop"),
    ("stop", "csms-before-answer"),
    ("stop", "csms-after-answer"),
)


@dataclasses.dataclass
class KillResult:
    phase: str
    moment: str
    transactions: int  # distinct transactions the CSMS opened in this trial
    closed: int
    lost: int  # opened and never closed, or energy delivered with no closed transaction
    duplicated: int  # a second transaction for the session, or an end that differs
    redelivered: int  # identical repeats: 1.6 of a Stop, 2.0.1 of any event
    energy_wh: float
    meter_stop_error_wh: float
    reading_wh: float  # the energy between two meter readings at this trial's power
    sim_lag_wh: float  # the simulated meter's own loss at the kill (saved every 0.2 s)
    reasons: list[str]
    trigger: str = ""  # what ended the session: unplug or tap ("" when the cut did)
    wrong_reason: int = 0  # an end whose stop reason is not the cut's or the trigger's
    sequence_faults: int = 0  # 2.0.1: a seqNo missing or repeated differently
    outbox_left: int = 0  # messages still in the outbox once the trial settled


async def _wait(
    csms: LocalCsms,
    cp_id: str,
    what: tuple[str, Callable[[dict[str, Any]], bool]],
    after: int,
    timeout_s: float = 10.0,
) -> None:
    action, predicate = what
    await csms.wait_for(action, predicate, after=after, cp_id=cp_id, timeout_s=timeout_s)


#: The stop reason an end may carry: the cut's, or that of what ended the session first.
CUT_REASON = "PowerLoss"
TRIGGER_REASONS = {"unplug": "EVDisconnected", "tap": "Local"}


async def kill_trial(
    trial_csms: TrialCsms,
    ctl: ControllerProcess,
    phase: str,
    moment: str,
    rng: random.Random,
) -> KillResult:
    """One session killed at ``moment``; the controller runs (registered, Available) before
    and after."""
    csms = trial_csms.csms
    dialect = trial_csms.dialect
    cp = ctl.cp_id
    known = dialect.known(csms, cp)
    mark = len(csms.received)
    start_wh = float((await ctl.status())["energy_wh"])
    await ctl.sim("plug")
    await ctl.sim("charge")
    await _wait(csms, cp, dialect.plugged(), mark)
    killed = asyncio.Event()
    pre_kill_wh = start_wh
    trigger = ""

    def kill() -> None:
        ctl.kill()
        killed.set()

    async def snapshot_then_kill() -> None:
        nonlocal pre_kill_wh
        with contextlib.suppress(OSError):
            pre_kill_wh = float((await ctl.status())["energy_wh"])
        kill()

    if phase == "start":
        if moment.startswith("csms-"):
            when = "before" if moment == "csms-before-answer" else "after"
            trial_csms.arm("start", when, kill)
            await ctl.sim("tap", uid=CARD)
            await asyncio.wait_for(killed.wait(), 10)
        else:
            await ctl.sim("tap", uid=CARD)
            await asyncio.sleep(rng.uniform(0.0, 0.25))
            await snapshot_then_kill()
    else:
        await ctl.sim("tap", uid=CARD)
        await _wait(csms, cp, dialect.charging(), mark)
        if phase == "charging":
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            await snapshot_then_kill()
        else:
            # > 1 s: the reader collapses a card still in its field into one presentation
            await asyncio.sleep(rng.uniform(1.2, 2.0))
            with contextlib.suppress(OSError):
                pre_kill_wh = float((await ctl.status())["energy_wh"])
            trigger = rng.choice(("unplug", "tap"))
            if moment.startswith("csms-"):
                when = "before" if moment == "csms-before-answer" else "after"
                trial_csms.arm("stop", when, kill)
            if trigger == "unplug":
                await ctl.sim("unplug")
            else:
                await ctl.sim("tap", uid=CARD)
            if moment.startswith("csms-"):
                await asyncio.wait_for(killed.wait(), 10)
            else:
                await asyncio.sleep(rng.uniform(0.0, 0.2))
                kill()
    trial_csms.hooks.clear()
    await ctl.reap()
    restart_mark = len(csms.received)
    await ctl.start()
    await csms.wait_for("BootNotification", after=restart_mark, cp_id=cp, timeout_s=15)
    end_wh = float((await ctl.status())["energy_wh"])
    # The simulated car is still plugged in after the power cut, as a real one is; the
    # trial ends by taking it away, so the next one starts from Available.
    await ctl.sim("unplug")

    def opened() -> list[TxView]:
        return dialect.transactions(csms, cp, known, mark)

    def settled() -> bool:
        return ctl.outbox_size() == 0 and all(view.closed for view in opened())

    with contextlib.suppress(TimeoutError):
        await until(settled, 20.0, "outbox drained")
    await _wait(csms, cp, dialect.connector_is("Available"), restart_mark)
    result = _judge(opened(), phase, moment, start_wh, end_wh, pre_kill_wh, ctl.speed)
    result.trigger = trigger
    allowed = {CUT_REASON} | ({TRIGGER_REASONS[trigger]} if trigger else set())
    for view in opened():
        if view.closed and view.stop_reason not in allowed:
            result.wrong_reason += 1
            result.reasons.append(
                f"transaction {view.tx_id} ended {view.stop_reason}, not one of {sorted(allowed)}"
            )
    result.outbox_left = ctl.outbox_size() or 0
    if result.outbox_left:
        result.reasons.append(f"{result.outbox_left} message(s) left in the outbox")
    return result


def _judge(
    views: list[TxView],
    phase: str,
    moment: str,
    start_wh: float,
    end_wh: float,
    pre_kill_wh: float,
    speed: float,
) -> KillResult:
    """Each transaction the CSMS heard of closed exactly once, at the register (either
    OCPP version: ``views`` are the CSMS's transactions of the trial)."""
    reasons: list[str] = []
    closed = [view for view in views if view.closed]
    lost = len(views) - len(closed)
    energy = end_wh - start_wh
    if energy > 1.0 and not closed:
        lost += 1
        reasons.append(f"{energy:.0f} Wh delivered and no transaction closed")
    duplicated = max(0, len(views) - 1)
    redelivered = 0
    sequence_faults = 0
    for view in views:
        distinct = set(view.ends)
        if len(distinct) > 1:
            duplicated += 1
            reasons.append(f"transaction {view.tx_id} ended {len(distinct)} different ways")
        redelivered += view.redelivered
        sequence_faults += len(view.problems)
        reasons += view.problems
    error = 0.0
    for view in closed:
        assert view.meter_stop_wh is not None
        error = max(error, abs(view.meter_stop_wh - end_wh))
        if view.meter_start_wh is not None and view.meter_start_wh > view.meter_stop_wh:
            reasons.append(f"transaction {view.tx_id}: the register at its end below its start")
    if lost:
        reasons.append(f"{lost} transaction(s) lost")
    power_w = 3 * 16 * 230.0  # the simulated car: 16 A on three phases
    return KillResult(
        phase=phase,
        moment=moment,
        transactions=len(views),
        closed=len(closed),
        lost=lost,
        duplicated=duplicated,
        redelivered=redelivered,
        energy_wh=energy,
        meter_stop_error_wh=error,
        reading_wh=power_w * speed * READING_PERIOD_S / 3600.0,
        sim_lag_wh=max(0.0, pre_kill_wh - end_wh),
        reasons=reasons,
        sequence_faults=sequence_faults,
    )


async def run_kill_trials(
    count: int,
    seed: int,
    workdir: Path,
    *,
    speed: float = 10.0,
    moments: tuple[tuple[str, str], ...] = KILL_MOMENTS,
    progress: Callable[[int, KillResult], None] | None = None,
    ocpp: str = "1.6",
) -> tuple[list[KillResult], int, list[str]]:
    """``count`` kill trials on one controller and state directory, cycling through
    ``moments`` (shuffled), under OCPP ``ocpp``; returns the results, the CSMS's repeated
    starts and its OCPP violations."""
    rng = random.Random(seed)
    dialect = DIALECTS[ocpp]
    trial_csms = TrialCsms(dialect)
    url = await trial_csms.start()
    ctl = ControllerProcess(workdir, url, "kill-trials", speed, dialect)
    plan = [moments[i % len(moments)] for i in range(count)]
    rng.shuffle(plan)
    results = []
    try:
        mark = len(trial_csms.csms.received)
        await ctl.start()
        await _wait(trial_csms.csms, ctl.cp_id, dialect.connector_is("Available"), mark, 20.0)
        for index, (phase, moment) in enumerate(plan):
            result = await kill_trial(trial_csms, ctl, phase, moment, rng)
            results.append(result)
            if progress is not None:
                progress(index, result)
    finally:
        await ctl.stop()
        await trial_csms.stop()
    return (
        results,
        trial_csms.repeated_starts,
        [f"{v.problem} in {v.frame[:120]}" for v in trial_csms.csms.violations],
    )


# --- outage trials (the controller in this process) ---------------------------------------


@dataclasses.dataclass
class OutageResult:
    mode: str
    plan: str
    outage_s: float
    generated: int  # transaction messages the charge point made
    delivered: int
    lost: int
    out_of_order: int
    duplicated: int  # differing repeats
    wrong_id: int  # a Stop or MeterValues without the CSMS's id of its Start
    restamped: int  # a timestamp that is not the one the charge point gave it
    max_delay_s: float  # longest wait between a message's timestamp and its arrival
    reasons: list[str]


class OutageRig:
    """The controller (ChargePointApp on the simulation) in this process, its transaction
    messages recorded as the adapter queues them."""

    def __init__(
        self,
        csms: LocalCsms,
        state_dir: Path,
        cp_id: str = "outage-trials",
        dialect: Dialect = DIALECTS["1.6"],
    ) -> None:
        self.csms = csms
        self.dialect = dialect
        self.state_dir = state_dir
        self.cp_id = cp_id
        self.app: Any = None
        self.generated: list[tuple[str, str, dict[str, Any]]] = []  # kind, local id, body
        self._stop = asyncio.Event()
        self._task: asyncio.Task[Any] | None = None
        self._last_tap = -CARD_GAP_S

    async def start(self, speed: float = 10.0) -> None:
        from controller.app import ChargePointApp, RunOptions
        from controller.config import parse_config
        from controller.csms.link import LinkTiming

        keys = self.dialect.write_keys(self.state_dir / "keys.toml")
        config = parse_config(
            {
                "chargepoint": {"id": self.cp_id},
                "ocpp": {"url": self.csms.url, "version": self.dialect.version},
            }
        )
        self.app = ChargePointApp(
            dataclasses.replace(config, state_dir=self.state_dir / "state"),
            RunOptions(sim=True, sim_speed=speed, ocpp_keys=keys),
        )
        mark = len(self.csms.received)
        await self.app.start()
        self.app.adapter.timing = LinkTiming(
            response_timeout_s=5.0,
            backoff_initial_s=0.2,
            backoff_max_s=0.5,
            backoff_jitter=0.1,
            open_timeout_s=2.0,
            close_timeout_s=0.5,
            boot_retry_s=0.5,
        )
        queue = self.app.adapter._queue  # instrumentation: what the charge point queued
        put = queue.put

        def recording_put(message: Any) -> None:
            self.generated.append((message.kind.value, message.local_id, dict(message.body)))
            put(message)

        queue.put = recording_put
        self._task = asyncio.create_task(self.app.run(self._stop), name="outage-rig")
        await _wait(self.csms, self.cp_id, self.dialect.connector_is("Available"), mark, 15.0)

    async def act(self, action: str, **extra: Any) -> None:
        if action == "tap":  # the reader takes a card still in its field for the same tap
            await asyncio.sleep(max(0.0, self._last_tap + CARD_GAP_S - time.monotonic()))
            self._last_tap = time.monotonic()
        await self.app.sim.handle({"action": action, "connector": 1, **extra})

    def hw(self, key: str) -> Any:
        return self.app.sim.status()["connectors"][0][key]

    def idle(self) -> bool:
        view = self.app.supervisor.view(1)
        return str(view.status) == "Available" and not self.hw("contactor_closed")

    async def warm_up(self) -> None:
        """One session online, so the card is in the authorization cache (offline starts)."""
        mark = len(self.csms.received)
        await self.act("plug")
        await self.act("charge")
        await self.act("tap", uid=CARD)
        await _wait(self.csms, self.cp_id, self.dialect.started(), mark)
        await until(lambda: self.hw("contactor_closed"), 10.0, "charging")
        await self.act("unplug")
        await _wait(self.csms, self.cp_id, self.dialect.ended(), mark)
        await until(self.idle, 10.0, "connector idle")

    async def stop(self) -> None:
        self._stop.set()
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, 15)
        finally:
            if self.app is not None:
                await self.app.close()


class Outage:
    """One CSMS outage: ``refuse`` (connections dropped, new ones refused with HTTP 503),
    ``flap`` (every connection dropped as soon as it is up, every 0.3 s), ``freeze`` (the
    link stays open but dead, not even pings answered; new connections refused)."""

    def __init__(self, csms: LocalCsms, mode: str) -> None:
        self.csms = csms
        self.mode = mode
        self._flapper: asyncio.Task[None] | None = None

    async def begin(self) -> None:
        if self.mode == "flap":
            self._flapper = asyncio.create_task(self._flap(), name="flap")
            return
        self.csms.refuse_connections = True
        if self.mode == "freeze":
            await self.csms.freeze_connections()
        else:
            await self.csms.drop_connections()

    async def _flap(self) -> None:
        while True:
            await self.csms.drop_connections()
            await asyncio.sleep(0.3)

    async def end(self) -> None:
        self.csms.refuse_connections = False
        if self._flapper is not None:
            self._flapper.cancel()
            await asyncio.gather(self._flapper, return_exceptions=True)
            self._flapper = None


async def outage_trial(rig: OutageRig, mode: str, plan: str, outage_s: float) -> OutageResult:
    """One session with one outage placed by ``plan``: ``charging`` (start and stop online),
    ``stop`` (the session ends offline), ``start`` (it starts and ends offline)."""
    csms = rig.csms
    first = len(rig.generated)
    mark = len(csms.received)
    wall_offset = time.time() - time.monotonic()
    outage = Outage(csms, mode)
    if plan == "start":
        await outage.begin()
        await asyncio.sleep(0.2)
    await rig.act("plug")
    await rig.act("charge")
    await rig.act("tap", uid=CARD)
    await until(lambda: rig.hw("contactor_closed"), 10.0, "contactor closed")
    if plan != "start":
        await asyncio.sleep(0.5)
        await outage.begin()
    await asyncio.sleep(outage_s / 2)
    if plan in ("stop", "start"):
        await rig.act("unplug")
    await asyncio.sleep(outage_s / 2)
    await outage.end()
    if plan == "charging":
        await until(lambda: csms.connected == [rig.cp_id], 15.0, "reconnected")
        await asyncio.sleep(0.5)
        await rig.act("unplug")
    # the session has ended (its end is queued) before an empty queue means anything
    await until(rig.idle, 10.0, "connector idle")
    await until(
        lambda: rig.app.adapter.queued == 0 and str(rig.app.adapter.state) == "registered",
        30.0,
        "queue empty",
    )
    await asyncio.sleep(0.2)
    return _judge_outage(rig, mode, plan, outage_s, first, mark, wall_offset)


def _judge_outage(
    rig: OutageRig,
    mode: str,
    plan: str,
    outage_s: float,
    first: int,
    mark: int,
    wall_offset: float,
) -> OutageResult:
    """Every message the charger queued arrived once (identical repeats collapse), in
    order, with its transaction's id and the time it happened (either OCPP version: the
    rig's dialect says how a queued message looks on the wire)."""
    dialect = rig.dialect
    reasons: list[str] = []
    generated = rig.generated[first:]
    arrived: list[Received] = [
        r
        for r in rig.csms.received[mark:]
        if r.cp_id == rig.cp_id and dialect.is_transaction_message(r)
    ]
    # identical repeats (at least once) collapse; anything else must match one to one
    unique: list[Received] = []
    duplicated = 0
    for item in arrived:
        if unique and unique[-1].action == item.action and unique[-1].payload == item.payload:
            continue
        if any(u.action == item.action and u.payload == item.payload for u in unique):
            duplicated += 1
            reasons.append(f"{item.action} repeated after other messages")
            continue
        if any(dialect.wire_key(u) == dialect.wire_key(item) for u in unique):
            duplicated += 1  # 2.0.1: one seqNo, two different events
            reasons.append(f"{item.action} {dialect.wire_key(item)} repeated differently")
            continue
        unique.append(item)
    ids: dict[str, str | None] = {}
    lost = out_of_order = wrong_id = restamped = 0
    max_delay = 0.0
    position = 0
    for kind, local_id, body in generated:
        key = dialect.queued_key(kind, body)
        stamp = dialect.queued_stamp(kind, body)
        match = next((i for i, u in enumerate(unique) if dialect.wire_key(u) == key), None)
        if match is None:
            lost += 1
            reasons.append(f"{kind} of {local_id} at {stamp} never arrived")
            continue
        if match < position:
            out_of_order += 1
            reasons.append(f"{kind} at {stamp} arrived out of order")
        position = max(position, match)
        item = unique[match]
        if kind == "StartTransaction":
            ids[local_id] = dialect.csms_id(rig.csms, rig.cp_id, item)
        elif dialect.carried_id(item) != ids.get(local_id):
            wrong_id += 1
            reasons.append(f"{kind} of {local_id} carried {dialect.carried_id(item)}")
        moment = parse_timestamp(dialect.wire_stamp(item.payload))
        if moment is None or dialect.wire_stamp(item.payload) != stamp:
            restamped += 1
            reasons.append(f"{kind} queued at {stamp} arrived stamped otherwise")
            continue
        arrived_at = item.monotonic_s + wall_offset
        delay = arrived_at - moment.timestamp()
        if delay < -0.5:
            restamped += 1
            reasons.append(f"{kind} stamped {stamp} after it arrived")
        max_delay = max(max_delay, delay)
    return OutageResult(
        mode=mode,
        plan=plan,
        outage_s=outage_s,
        generated=len(generated),
        delivered=len(generated) - lost,
        lost=lost,
        out_of_order=out_of_order,
        duplicated=duplicated,
        wrong_id=wrong_id,
        restamped=restamped,
        max_delay_s=max_delay,
        reasons=reasons,
    )


OUTAGE_MODES = ("refuse", "flap", "freeze")
OUTAGE_PLANS = ("charging", "stop", "start")


async def run_outage_trials(
    count: int,
    seed: int,
    workdir: Path,
    *,
    durations_s: tuple[float, ...] = (1.0, 3.0, 8.0, 20.0),
    combos: list[tuple[str, str]] | None = None,
    progress: Callable[[int, OutageResult], None] | None = None,
    ocpp: str = "1.6",
) -> tuple[list[OutageResult], list[str]]:
    """``count`` sessions with an outage each, cycling through ``combos`` (mode, plan; all
    of them shuffled by default) and ``durations_s``, under OCPP ``ocpp``; returns the
    results and the CSMS's OCPP violations."""
    rng = random.Random(seed)
    csms = LocalCsms(authorized_tags={CARD: "Accepted"}, call_timeout_s=10.0)
    await csms.start()
    rig = OutageRig(csms, workdir, dialect=DIALECTS[ocpp])
    results = []
    try:
        await rig.start()
        await rig.warm_up()
        if combos is None:
            combos = [(m, p) for m in OUTAGE_MODES for p in OUTAGE_PLANS]
            rng.shuffle(combos)
        for index in range(count):
            mode, plan = combos[index % len(combos)]
            duration = durations_s[index % len(durations_s)]
            result = await outage_trial(rig, mode, plan, duration)
            results.append(result)
            if progress is not None:
                progress(index, result)
            await until(rig.idle, 10.0, "connector idle")
    finally:
        csms.refuse_connections = False
        await rig.stop()
        await csms.stop()
    return results, [f"{v.problem} in {v.frame[:120]}" for v in csms.violations]


# --- the journal's cost -------------------------------------------------------------------


async def journal_write_cost(workdir: Path, writes: int = 300) -> tuple[float, float]:
    """Median and p99 of one persisted meter reading (ms), on this machine's disk."""
    from controller.domain import Transaction, utc_now
    from controller.journal import READING_STEP_WH, TransactionJournal
    from controller.storage import Storage

    storage = await Storage.open(workdir / "journal-cost")
    try:
        journal = TransactionJournal(storage)
        tx = Transaction("bench", 1, CARD, 0.0, utc_now())
        journal.started(tx)
        await journal.committed(tx.local_id)
        times = []
        for n in range(1, writes + 1):
            began = time.perf_counter()
            journal.reading(tx, n * READING_STEP_WH * 2, utc_now())
            await storage.run(lambda conn: None)
            times.append(time.perf_counter() - began)
    finally:
        await storage.close()
    times.sort()
    return statistics.median(times) * 1000, times[int(0.99 * (len(times) - 1))] * 1000


# --- report -------------------------------------------------------------------------------


def kill_summary(results: list[KillResult], repeated_starts: int) -> dict[str, Any]:
    return {
        "trials": len(results),
        "transactions": sum(r.transactions for r in results),
        "lost": sum(r.lost for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "redelivered_starts": repeated_starts,
        "redelivered_stops": sum(r.redelivered for r in results),
        "worst_meter_stop_error_wh": max((r.meter_stop_error_wh for r in results), default=0.0),
        "worst_meter_stop_error_readings": max(
            (r.meter_stop_error_wh / r.reading_wh for r in results), default=0.0
        ),
        "worst_sim_lag_wh": max((r.sim_lag_wh for r in results), default=0.0),
        "meter_stop_beyond_one_reading": sum(
            r.meter_stop_error_wh > r.reading_wh + ROUNDING_WH for r in results
        ),
        "wrong_reason": sum(r.wrong_reason for r in results),
        "sequence_faults": sum(r.sequence_faults for r in results),
        "outbox_left": sum(r.outbox_left for r in results),
        "reading_wh": results[0].reading_wh if results else 0.0,
    }


def outage_summary(results: list[OutageResult]) -> dict[str, Any]:
    return {
        "trials": len(results),
        "messages": sum(r.generated for r in results),
        "lost": sum(r.lost for r in results),
        "out_of_order": sum(r.out_of_order for r in results),
        "duplicated": sum(r.duplicated for r in results),
        "wrong_id": sum(r.wrong_id for r in results),
        "restamped": sum(r.restamped for r in results),
        "longest_outage_s": max((r.outage_s for r in results), default=0.0),
        "longest_delay_s": max((r.max_delay_s for r in results), default=0.0),
    }


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="picharge-trials-") as tmp:
        work = Path(tmp)
        median_ms, p99_ms = await journal_write_cost(work)
        print(
            f"journal: one persisted meter reading  median {median_ms:.2f} ms  p99 {p99_ms:.2f} ms"
        )
        started = time.monotonic()

        def show_kill(i: int, r: KillResult) -> None:
            flag = "" if not r.reasons else "  <- " + "; ".join(r.reasons)
            print(
                f"  kill {i + 1:3d} {r.phase:8s} {r.moment:19s} tx={r.transactions} "
                f"closed={r.closed} {r.energy_wh:7.0f} Wh  "
                f"stop error {r.meter_stop_error_wh:5.1f} Wh{flag}",
                flush=True,
            )

        kills, repeats, kill_violations = await run_kill_trials(
            args.kill_trials,
            args.seed,
            work / "kill",
            speed=args.speed,
            progress=show_kill,
            ocpp=args.ocpp,
        )
        ks = kill_summary(kills, repeats)

        def show_outage(i: int, r: OutageResult) -> None:
            flag = "" if not r.reasons else "  <- " + "; ".join(r.reasons)
            print(
                f"  outage {i + 1:3d} {r.mode:6s} {r.plan:8s} {r.outage_s:5.1f} s "
                f"messages {r.delivered}/{r.generated}  delay <= {r.max_delay_s:5.1f} s{flag}",
                flush=True,
            )

        outages, outage_violations = await run_outage_trials(
            args.outage_trials, args.seed, work / "outage", progress=show_outage, ocpp=args.ocpp
        )
        os_ = outage_summary(outages)
        elapsed = time.monotonic() - started
    print()
    print(f"kill trials (OCPP {args.ocpp}, SIGKILL at random moments, speed {args.speed:g}):")
    print(f"  trials                      {ks['trials']}")
    print(f"  transactions                {ks['transactions']}")
    print(f"  transactions lost           {ks['lost']}")
    print(f"  transactions duplicated     {ks['duplicated']}")
    print(
        f"  worst meterStop error       {ks['worst_meter_stop_error_wh']:.1f} Wh "
        f"({ks['worst_meter_stop_error_readings']:.2f} meter readings of "
        f"{ks['reading_wh']:.1f} Wh)"
    )
    print(
        f"  redelivered (identical)     {ks['redelivered_starts']} start(s), "
        f"{ks['redelivered_stops']} other message(s)"
    )
    print(f"  meterStop beyond a reading  {ks['meter_stop_beyond_one_reading']}")
    print(f"  wrong stop reason           {ks['wrong_reason']}")
    print(f"  seqNo gaps or differing     {ks['sequence_faults']}")
    print(f"  left in the outbox          {ks['outbox_left']}")
    print(f"  simulated meter lag at kill {ks['worst_sim_lag_wh']:.1f} Wh (worst)")
    print(
        f"outage trials (OCPP {args.ocpp}; refuse, flap, freeze; sessions starting, "
        "charging, stopping offline):"
    )
    for key in ("trials", "messages", "lost", "out_of_order", "duplicated", "wrong_id"):
        print(f"  {key:27s} {os_[key]}")
    print(f"  restamped                   {os_['restamped']}")
    print(f"  longest outage              {os_['longest_outage_s']:.1f} s")
    print(f"  longest message delay       {os_['longest_delay_s']:.1f} s")
    violations = kill_violations + outage_violations
    print(f"OCPP violations seen by the CSMS: {len(violations)}")
    for violation in violations[:10]:
        print(f"  {violation}")
    print(f"elapsed {elapsed:.0f} s")
    bad = (
        len(violations)
        + ks["lost"]
        + ks["meter_stop_beyond_one_reading"]
        + ks["duplicated"]
        + ks["wrong_reason"]
        + ks["sequence_faults"]
        + ks["outbox_left"]
        + sum(os_[k] for k in ("lost", "out_of_order", "duplicated", "wrong_id", "restamped"))
    )
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-trials", type=int, default=49)
    parser.add_argument("--outage-trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--ocpp", choices=sorted(DIALECTS), default="1.6", help="OCPP version")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "KILL_MOMENTS",
    "ControllerProcess",
    "KillResult",
    "OutageResult",
    "OutageRig",
    "TrialCsms",
    "kill_summary",
    "outage_summary",
    "run_kill_trials",
    "run_outage_trials",
]
