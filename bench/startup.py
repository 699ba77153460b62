"""Start-up: from starting ``picharge run --sim`` to its BootNotification at the CSMS.

Each run starts the installed console script ``picharge run --sim`` as a new process (what
systemd does on a Pi) against the loopback CSMS in this process, and takes the time from
just before the process is created to the BootNotification's arrival at the CSMS (stamped
on arrival; loopback adds a fraction of a millisecond). The process is then stopped with
SIGTERM, as systemd stops it. The first run boots a new state directory (the SQLite
database is created and migrated); the others restart on it, as after a reboot. For
comparison: a bare ``python -c pass`` and a process that only imports what ``picharge run``
imports before it connects.

    .venv/bin/python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import CP_ID, figure

from controller.local_csms import LocalCsms

PICHARGE = Path(sys.executable).parent / "picharge"
#: What `picharge run --sim` imports before its first connection attempt.
IMPORTS = (
    "import controller.cli, controller.runner, controller.app, controller.ocpp16,"
    " controller.sim_root"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def one_start(csms: LocalCsms, url: str, state_dir: Path) -> float:
    mark = len(csms.received)
    command = [
        str(PICHARGE),
        "run",
        "--sim",
        "--csms",
        url,
        "--id",
        CP_ID,
        "--state-dir",
        str(state_dir),
        "--sim-control",
        f"127.0.0.1:{free_port()}",
    ]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await csms.wait_for("BootNotification", after=mark, timeout_s=60)
        boot = next(r for r in csms.received[mark:] if r.action == "BootNotification")
        await csms.wait_for("StatusNotification", after=mark, timeout_s=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    return boot.monotonic_s - started


def process_time_s(*args: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, *args], check=True)
    return time.monotonic() - started


async def measure(runs: int) -> None:
    bare = [process_time_s("-c", "pass") for _ in range(5)]
    imports = [process_time_s("-c", IMPORTS) for _ in range(5)]
    csms = LocalCsms()
    url = await csms.start()
    try:
        with tempfile.TemporaryDirectory(prefix="picharge-startup-") as tmp:
            state_dir = Path(tmp) / "state"
            first = await one_start(csms, url, state_dir)
            again = [await one_start(csms, url, state_dir) for _ in range(runs)]
    finally:
        await csms.stop()
    print(figure("process start -> BootNotification (restart)", again))
    print(figure("process start -> BootNotification (first boot)", [first]))
    print(figure("  for comparison: python -c pass", bare))
    print(figure("  for comparison: python importing picharge run", imports))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="restarts to time (default 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(measure(args.runs))


if __name__ == "__main__":
    main()
