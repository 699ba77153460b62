"""Footprint: CPU of an idle and of a charging controller, and its memory against its imports.

The controller runs in a child process, built as ``picharge run --sim`` builds it
(:class:`controller.app.ChargePointApp`, simulated hardware, INFO logging to a file), against
the loopback CSMS in this (the parent) process, so the CSMS costs the child nothing.

CPU, separated from the simulator's: a Pi has no simulator, so its cost is taken out. In
the child, the simulated charger (its physics ticker and Modbus meter server) runs on an
event loop of its own, on the thread ``sim-loop``; the simulated PN532 and PWM chip have
their own threads too (``sim-*``). What the simulator does on the controller's threads is
the simulated I2C chips' work inside the driver's bus calls: those calls are timed with
:func:`time.thread_time` (which adds about a microsecond per call to the controller's side).
So: controller CPU = process CPU - CPU of the simulator's threads - time inside the
simulated bus. Windows: idle (no car: CP in A, the meter read every second, the card
reader polling, heartbeats every 60 s as the CSMS sets them) and charging (car in C, the
contactor closed, MeterValues every 60 s, the OCPP default).

Memory: the child's RSS while charging (steady: the median of samples over the second half
of the charging window; peak: VmHWM) against the RSS of a fresh Python process that only
imports the modules the controller process had loaded (``sys.modules``: the controller,
its libraries, and the simulator's few modules), as a ratio.

    .venv/bin/python bench/footprint.py [--idle-s 60] [--minutes 1]
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
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from cpuclock import SimBusClock, thread_cpu

T = TypeVar("T")
CP_ID = "bench"
IDLE_TARGET_PCT = 0.5
RATIO_TARGET = 1.25
SIM_THREAD_PREFIXES = ("sim-", "pty-link")


# --- the child: the controller, with the simulator kept apart ------------------------------


class _SimLoop:
    """An event loop on its own thread (``sim-loop``) for the simulated charger."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim-loop", daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10.0)


def child(url: str, state_dir: Path) -> None:
    """Run the controller; answer the parent's one-line commands on stdin/stdout."""
    from controller.logging_setup import configure_logging

    configure_logging(False, journal=False)  # as `picharge run`: INFO lines on stderr
    bus_clock = SimBusClock()
    bus_clock.install()
    sim_loop = _SimLoop()

    import controller.sim_root
    from hw_sim.charger import SimCharger

    class SimChargerApart(SimCharger):
        """The simulated charger, run on the ``sim-loop`` thread's loop."""

        async def start(self) -> Any:
            return await sim_loop.run(SimCharger.start(self))

        async def stop(self) -> None:
            await sim_loop.run(SimCharger.stop(self))

    controller.sim_root.SimCharger = SimChargerApart  # type: ignore[misc]
    asyncio.run(_child_main(url, state_dir, sim_loop, bus_clock))


async def _child_main(url: str, state_dir: Path, sim_loop: _SimLoop, bus: SimBusClock) -> None:
    import dataclasses

    from controller.app import ChargePointApp, RunOptions
    from controller.config import parse_config

    config = parse_config({"chargepoint": {"id": CP_ID}, "ocpp": {"url": url}})
    app = ChargePointApp(dataclasses.replace(config, state_dir=state_dir), RunOptions(sim=True))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await app.start()

    def answer(line: str) -> str:
        command, _, argument = line.strip().partition(" ")
        if command == "stats":
            return json.dumps(
                {
                    "wall": time.monotonic(),
                    "cpu": time.process_time(),
                    "threads": thread_cpu(),
                    "sim_bus": bus.seconds,
                }
            )
        if command == "act":
            sim_loop.call(app.sim.handle(json.loads(argument)))
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

    threading.Thread(target=control, name="bench-control", daemon=True).start()
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
        result: dict[str, Any] = json.loads(await self.ask("stats"))
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


def cpu_split(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Percent of one core over the window: process, simulator, controller, busiest threads."""
    wall = after["wall"] - before["wall"]
    total = after["cpu"] - before["cpu"]
    sim = after["sim_bus"] - before["sim_bus"]
    threads: dict[str, float] = {}
    for key, value in after["threads"].items():
        spent = value - before["threads"].get(key, 0.0)
        if key.startswith(SIM_THREAD_PREFIXES):
            sim += spent
        else:
            threads[key.split("#")[0]] = threads.get(key.split("#")[0], 0.0) + spent
    pct = {"process": total, "simulator": sim, "controller": total - sim}
    pct |= {f"  thread {name}": spent for name, spent in threads.items()}
    return {k: 100.0 * v / wall for k, v in pct.items()}


def print_cpu(title: str, split: dict[str, float], target_pct: float | None = None) -> None:
    controller = split["controller"]
    verdict = ""
    if target_pct is not None:
        verdict = (
            f"  (target <= {target_pct:g} %: {'met' if controller <= target_pct else 'MISSED'})"
        )
    print(f"CPU {title:38s} controller {controller:6.2f} % of a core{verdict}")
    print(
        f"    whole process {split['process']:.2f} %, simulator {split['simulator']:.2f} %; "
        "controller threads: "
        + ", ".join(
            f"{k.strip()[7:]} {v:.2f}"
            for k, v in sorted(split.items(), key=lambda kv: -kv[1])
            if k.startswith("  thread") and v >= 0.005
        )
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle window (default 60 s)")
    parser.add_argument(
        "--minutes", type=float, default=1.0, help="charging window in minutes (default 1)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(parent(args.idle_s, args.minutes * 60.0))


if __name__ == "__main__":
    main()
