"""Footprint: CPU of an idle and of a charging controller, and its memory against its imports.

The controller runs in a child process, built as ``picharge run --sim`` builds it
(:class:`controller.app.ChargePointApp`, simulated hardware, INFO logging to a file), against
the loopback CSMS in this (the parent) process, so the CSMS costs the child nothing.

CPU, separated from the simulator's: a Pi has no simulator, so its cost is taken out. The
parent reads the child's CPU per thread from outside, as ``top -H`` does
(``/proc/PID/task/*/stat``, user + system time over the window), grouped by the threads'
native names (see :mod:`drivers.threads`): ``sim-*`` threads (the cars' physics and the
Modbus meter servers on ``sim-ev-meter``, the simulated PN532 and PWM chip) are the
simulator, ``bench-*`` the benchmark's own, the rest the controller. What the simulator does
on the controller's threads is the simulated I2C chips' work inside the driver's bus calls:
those calls are timed in the child with :func:`time.thread_time` (about a microsecond per
call, left on the controller's side) and moved to the simulator. Windows: idle (no car: CP
in A, the meter read every second, the card reader polling, heartbeats every 60 s as the
CSMS sets them) and charging (car in C, the contactor closed, MeterValues every 60 s, the
OCPP default).

Memory: the child's RSS while charging (steady: the median of samples over the second half
of the charging window; peak: VmHWM) against the RSS of a fresh Python process that only
imports the modules the controller process had loaded (``sys.modules``: the controller,
its libraries, and the simulator's few modules), as a ratio.

    .venv/bin/python bench/footprint.py [--idle-s 60] [--minutes 1]
    .venv/bin/python bench/footprint.py --attach PID [--idle-s 60]   # any running controller
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpuclock import SimBusClock, task_cpu

CP_ID = "bench"
IDLE_TARGET_PCT = 0.5
RATIO_TARGET = 1.25
SIM_THREAD_PREFIX = "sim-"
BENCH_THREAD_PREFIX = "bench-"


# --- the child: the controller, as `picharge run --sim` builds it ----------------------------


def child(url: str, state_dir: Path) -> None:
    """Run the controller; answer the parent's one-line commands on stdin/stdout."""
    from controller.logging_setup import configure_logging
    from drivers.threads import on_named_loop

    configure_logging(False, journal=False)  # as `picharge run`: INFO lines on stderr
    bus_clock = SimBusClock()
    bus_clock.install()
    asyncio.run(on_named_loop(_child_main(url, state_dir, bus_clock)))  # as `picharge run`


async def _child_main(url: str, state_dir: Path, bus: SimBusClock) -> None:
    import dataclasses

    from controller.app import ChargePointApp, RunOptions
    from controller.config import parse_config
    from drivers.threads import NamedThread

    config = parse_config({"chargepoint": {"id": CP_ID}, "ocpp": {"url": url}})
    app = ChargePointApp(dataclasses.replace(config, state_dir=state_dir), RunOptions(sim=True))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await app.start()

    def answer(line: str) -> str:
        command, _, argument = line.strip().partition(" ")
        if command == "stats":
            return json.dumps({"wall": time.monotonic(), "sim_bus": bus.seconds})
        if command == "act":  # as `picharge sim` does: through the loop, to the simulator
            request = json.loads(argument)
            asyncio.run_coroutine_threadsafe(app.sim.handle(request), loop).result(10.0)
            return "ok"
        if command == "modules":
            return json.dumps(sorted(sys.modules))
        if command == "quit":
            loop.call_soon_threadsafe(stop.set)
            return "bye"
        return "?"

    def control() -> None:  # blocks in readline: wakes only when the parent asks
        for line in sys.stdin:
            sys.stdout.write(answer(line) + "\n")
            sys.stdout.flush()
            if line.startswith("quit"):
                return

    NamedThread(target=control, name=f"{BENCH_THREAD_PREFIX}control", daemon=True).start()
    try:
        await app.run(stop)
    finally:
        await app.close()


# --- the parent ------------------------------------------------------------------------------


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return (await asyncio.wait_for(self.proc.stdout.readline(), 15)).decode().strip()

    async def stats(self) -> dict[str, Any]:
        """The child's clocks, and its CPU per thread as the OS counts it."""
        result: dict[str, Any] = json.loads(await self.ask("stats"))
        result["cpu"], result["threads"] = task_cpu(self.proc.pid)
        return result

    async def act(self, action: str, **extra: object) -> None:
        await self.ask("act " + json.dumps({"action": action, "connector": 1, **extra}))

    def status_kib(self) -> dict[str, int]:
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return fields


def cpu_split(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Percent of one core over the window: process, simulator, controller, and per thread
    name (threads of one name summed; CPU of threads that ended within the window is the
    process's minus the live threads')."""
    wall = after["wall"] - before["wall"]
    bus = after["sim_bus"] - before["sim_bus"]
    by_name: dict[str, float] = {}
    for tid, (name, spent) in after["threads"].items():
        spent -= before["threads"].get(tid, (name, 0.0))[1]
        by_name[name] = by_name.get(name, 0.0) + spent
    total = after["cpu"] - before["cpu"]
    ended = total - sum(by_name.values())  # counted as the controller's below
    if "cp-sampler" in by_name:  # the simulated ADS1115's work ran on the sampling thread
        by_name["cp-sampler"] -= bus
    sim = bus + sum(v for k, v in by_name.items() if k.startswith(SIM_THREAD_PREFIX))
    bench = sum(v for k, v in by_name.items() if k.startswith(BENCH_THREAD_PREFIX))
    pct: dict[str, Any] = {
        "process": total,
        "simulator": sim,
        "bench": bench,
        "controller": total - sim - bench,
        "sim_bus": bus,
        "ended": ended,
    }
    pct = {k: 100.0 * v / wall for k, v in pct.items()}
    pct["threads"] = {k: 100.0 * v / wall for k, v in by_name.items()}
    return pct


def print_cpu(
    title: str, split: dict[str, Any], target_pct: float | None = None, *, bus_timed: bool = True
) -> None:
    controller = split["controller"]
    verdict = ""
    if target_pct is not None:
        verdict = (
            f"  (target <= {target_pct:g} %: {'met' if controller <= target_pct else 'MISSED'})"
        )
    print(
        f"CPU {title:38s} {split['process']:5.2f} % of a core, of which simulator"
        f" {split['simulator']:.2f} %, controller {controller:.2f} %{verdict}"
    )

    def listing(simulator: bool) -> str:
        picked = [
            (name, pct)
            for name, pct in split["threads"].items()
            if name.startswith(SIM_THREAD_PREFIX) == simulator
            and not name.startswith(BENCH_THREAD_PREFIX)
        ]
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(picked, key=lambda kv: -kv[1]))

    print(f"    controller threads: {listing(False)}")
    bus = (
        f"simulated I2C chips {split['sim_bus']:.2f} (run on cp-sampler, taken out of its figure)"
        if bus_timed
        else "the simulated I2C chips' work, if any, is in cp-sampler's figure"
    )
    print(f"    simulator threads: {listing(True)}; {bus}")
    print(
        f"    threads that ended in the window {split['ended']:.2f}, the bench's own"
        f" {split['bench']:.2f} (resolution of the OS counters: 10 ms)"
    )


def baseline_rss_kib(modules: list[str]) -> tuple[int, int]:
    """RSS of a fresh interpreter that imports ``modules``; also how many would not import."""
    script = (
        "import importlib, sys\n"
        "failed = 0\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed += 1\n"
        "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
        "print(rss, failed)\n"
    )
    wanted = [m for m in modules if m not in ("__main__", "cpuclock", "footprint")]
    out = subprocess.run(
        [sys.executable, "-c", script, *wanted], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


async def parent(idle_s: float, charge_s: float) -> None:
    from benchlib import CARD

    from controller.local_csms import LocalCsms

    csms = LocalCsms(authorized_tags={CARD: "Accepted"}, heartbeat_interval_s=60)
    url = await csms.start()
    with tempfile.TemporaryDirectory(prefix="picharge-footprint-") as tmp:
        log = (Path(tmp) / "controller.log").open("w")  # the child's stderr: its log
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--child",
            url,
            str(Path(tmp) / "state"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        child_proc = Child(proc)
        try:
            await csms.wait_for(
                "StatusNotification", lambda p: p["status"] == "Available", timeout_s=30
            )
            await asyncio.sleep(5.0)  # start-up is over: first meter reads, status sweep
            before = await child_proc.stats()
            await asyncio.sleep(idle_s)
            idle = cpu_split(before, await child_proc.stats())
            idle_rss = child_proc.status_kib()["VmRSS"]

            await child_proc.act("plug")
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
            await asyncio.sleep(1.0)
            await child_proc.act("tap", uid=CARD)
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
            await asyncio.sleep(3.0)  # the car ramps its current up
            before = await child_proc.stats()
            rss_samples: list[int] = []
            started = time.monotonic()
            while time.monotonic() - started < charge_s:
                await asyncio.sleep(min(2.0, charge_s / 10))
                rss_samples.append(child_proc.status_kib()["VmRSS"])
            charging = cpu_split(before, await child_proc.stats())
            status = child_proc.status_kib()
            modules: list[str] = json.loads(await child_proc.ask("modules"))
            await child_proc.ask("quit")
            await asyncio.wait_for(proc.wait(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await csms.stop()
            log.close()
    base_kib, failed = baseline_rss_kib(modules)
    steady = statistics.median(rss_samples[len(rss_samples) // 2 :])
    peak = status["VmHWM"]

    print_cpu(f"idle ({idle_s:.0f} s, no car)", idle, IDLE_TARGET_PCT)
    print_cpu(f"charging ({charge_s:.0f} s, 16 A three-phase)", charging)
    imported = len(modules) - failed
    print(
        f"memory baseline (imports only, {imported} modules) {base_kib / 1024:.1f} MiB;"
        f" controller idle {idle_rss / 1024:.1f} MiB"
    )
    for name, kib in (("steady while charging", steady), ("peak (VmHWM)", peak)):
        ratio = kib / base_kib
        verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
        print(
            f"memory {name:24s} {kib / 1024:6.1f} MiB  ratio {ratio:.3f}"
            f"  (target <= {RATIO_TARGET}: {verdict})"
        )
    half = len(rss_samples) // 2
    first = (rss_samples[half] - rss_samples[0]) / 1024
    second = (rss_samples[-1] - rss_samples[half]) / 1024
    print(
        f"memory drift while charging {first:+.2f} MiB in the first half,"
        f" {second:+.2f} MiB in the second (of {charge_s:.0f} s)"
    )


def attach(pid: int, window_s: float) -> None:
    """Measure process ``pid`` over ``window_s`` from outside, as ``top -H`` would."""

    def sample() -> dict[str, Any]:
        cpu, threads = task_cpu(pid)
        return {"wall": time.monotonic(), "sim_bus": 0.0, "cpu": cpu, "threads": threads}

    before = sample()
    time.sleep(window_s)
    print_cpu(f"process {pid} ({window_s:.0f} s)", cpu_split(before, sample()), bus_timed=False)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle window (default 60 s)")
    parser.add_argument(
        "--minutes", type=float, default=1.0, help="charging window in minutes (default 1)"
    )
    parser.add_argument(
        "--attach",
        type=int,
        metavar="PID",
        help="instead: measure a running controller (e.g. picharge run --sim, or on a Pi)"
        " from outside for --idle-s seconds, by thread name; no simulated-I2C split",
    )
    args = parser.parse_args()
    if args.attach is not None:
        attach(args.attach, args.idle_s)
        return
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(parent(args.idle_s, args.minutes * 60.0))


if __name__ == "__main__":
    main()
