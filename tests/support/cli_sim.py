"""`picharge run --sim` as a process of its own, driven through `picharge sim` commands.

What a CI job outside this repository does: start the controller with the command line, drive
the car, the reader and the faults with ``picharge sim ACTION`` (each a process of its own),
read ``picharge sim status``. :class:`CliSim` is that, for the tests of the command-line
contract (any flags, standalone or with a CSMS, several runs in one state directory);
:mod:`tests.support.sim_process` runs it against the loopback CSMS with a key preset, and
tests in the loop use :mod:`tests.support.sim_app`.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.wait import until_sync

PICHARGE = [sys.executable, "-m", "controller.cli"]


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def picharge(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """One ``picharge`` command, run to its end (stdout and stderr captured as text)."""
    return subprocess.run(
        [*PICHARGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class CliSim:
    """``picharge run --sim`` in ``state_dir`` with ``extra`` flags; :meth:`start` waits
    until its control port answers, :meth:`stop` sends SIGTERM and returns the exit code."""

    def __init__(
        self,
        state_dir: Path,
        extra: Sequence[str] = (),
        *,
        speed: float = 60.0,
        control: str | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.control = control or f"127.0.0.1:{free_port()}"
        self.args = [
            "run",
            "--sim",
            "--state-dir",
            str(state_dir),
            "--sim-speed",
            str(speed),
            "--sim-control",
            self.control,
            *extra,
        ]
        self.process: subprocess.Popen[str] | None = None
        #: The controller's log (stderr), in a file so a chatty run never fills a pipe.
        self.log_path = state_dir.with_name(state_dir.name + ".stderr")

    def start(self, timeout_s: float = 45.0) -> CliSim:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [*PICHARGE, *self.args], stdout=subprocess.DEVNULL, stderr=log, text=True
            )
        try:
            until_sync(self.listening, timeout_s, what="the --sim controller's control port")
        except BaseException:
            self.process.kill()  # a start that failed leaves no controller behind
            self.process.wait()
            raise
        return self

    def listening(self) -> bool:
        """Whether the control port answers (failing at once if the process died)."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the controller exited: {self.log()}")
        return picharge("sim", "status", "--control", self.control).returncode == 0

    def sim(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``picharge sim ARGS --control ...`` (the option after the action, as CI writes it)."""
        return picharge("sim", *args, "--control", self.control)

    def status(self) -> dict[str, Any]:
        result = self.sim("status")
        assert result.returncode == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def connector(self, connector_id: int = 1) -> dict[str, Any]:
        entry: dict[str, Any] = self.status()["connectors"][connector_id - 1]
        return entry

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout_s: float = 15.0, what: str = ""
    ) -> dict[str, Any]:
        """The first ``picharge sim status`` for which ``check`` holds."""
        seen: list[dict[str, Any]] = []

        def checked() -> dict[str, Any] | None:
            seen.append(self.status())
            return seen[-1] if check(seen[-1]) else None

        found = until_sync(checked, timeout_s, what=what or "a status", interval_s=0.1)
        assert found is not None
        return found

    def log(self) -> str:
        """Everything the controller wrote to stderr so far (every run in this state dir)."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait, and the exit code (SIGKILL if it does not end in ``timeout_s``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a power cut ends the controller (and the simulation with it)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
