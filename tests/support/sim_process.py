"""`picharge run --sim` as a child process against the loopback CSMS, driven with `picharge sim`.

For end-to-end tests that must go through the real process (the CLI, its arguments, the
re-exec after a CSMS Reset): the controller runs as users run it, the tests act on the
simulated car and devices with the `picharge sim` command line, and read the hardware's side
through the same control endpoint (``picharge sim status``) and the CSMS's side through
:class:`controller.local_csms.LocalCsms`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.sim_client import SimControlError, send

PICHARGE = [sys.executable, "-m", "controller.cli"]
#: OCPP keys for a quick, quiet test run (the preset applies to a new state directory).
TEST_KEYS: dict[str, Any] = {
    "HeartbeatInterval": 300,
    "MeterValueSampleInterval": 5,
    "ClockAlignedDataInterval": 0,
    "ConnectionTimeOut": 30,
    "WebSocketPingInterval": 0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimProcess:
    """One controller process; :meth:`start`, then :meth:`stop` (SIGTERM, as systemd does)."""

    def __init__(
        self,
        state_dir: Path,
        csms_url: str,
        cp_id: str,
        *,
        speed: float = 30.0,
        keys: dict[str, Any] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.control = f"127.0.0.1:{free_port()}"
        self.log_path = state_dir / "controller.log"
        state_dir.mkdir(parents=True, exist_ok=True)
        keys_file = state_dir / "keys.toml"
        keys_file.write_text(
            "".join(
                f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n"
                for k, v in {**TEST_KEYS, **(keys or {})}.items()
            )
        )
        self.argv = [
            *PICHARGE,
            "run",
            "--sim",
            "--csms",
            csms_url,
            "--id",
            cp_id,
            "--state-dir",
            str(state_dir / "state"),
            "--sim-control",
            self.control,
            "--sim-speed",
            str(speed),
            "--ocpp-keys",
            str(keys_file),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM and wait (killed after 10 s); returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    async def sim(self, *args: str) -> None:
        """``picharge sim ARGS`` through the command line; fails the test if it fails."""
        proc = await asyncio.create_subprocess_exec(
            *PICHARGE,
            "sim",
            "--control",
            self.control,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode == 0, f"picharge sim {' '.join(args)}: {err.decode()}"

    def status(self, connector: int = 1) -> dict[str, Any] | None:
        """Connector ``connector`` of ``picharge sim status`` (the same request, sent
        directly: a poll loop need not start a Python process each time); None while the
        controller is not answering (starting, or restarting after a Reset)."""
        try:
            answer = send(self.control, {"action": "status"}, timeout_s=2.0)
        except (SimControlError, json.JSONDecodeError):
            return None
        connectors: list[dict[str, Any]] = answer["connectors"]
        return connectors[connector - 1]

    async def until(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout_s: float = 10.0
    ) -> float:
        """Wait until ``check(status)`` holds; returns when, in ``time.monotonic()``."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while True:
            assert self.process is not None and self.process.poll() is None, (
                f"the controller exited ({self.process and self.process.returncode}):\n"
                + self.log()[-3000:]
            )
            last = self.status()
            if last is not None and check(last):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last status {last}")
            await asyncio.sleep(0.02)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
