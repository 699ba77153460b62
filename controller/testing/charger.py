"""A simulated charger for a test suite: ``picharge run --sim`` in a process of its own.

What a CSMS project's tests need of a charger, and nothing of picharge's insides: it starts
the controller as the command line does (against the CSMS URL, with a key preset, in its own
state directory), drives the car, the card reader and the faults through the simulation's
control endpoint (the wire protocol ``picharge sim`` speaks: one JSON line per request, see
docs/simulator.md), reads ``status``, and stops it with SIGTERM as systemd would. It imports
neither the simulator nor the controller's runtime, so it works from any Python process.

All methods block the calling thread (subprocess and socket calls of a few milliseconds;
:meth:`SimulatedCharger.start` and :meth:`SimulatedCharger.wait_for` wait up to their
timeouts); call them from a thread of their own inside an asyncio test.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.sim_client import SimControlError, send

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for the control endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def preset_text(keys: Mapping[str, Any]) -> str:
    """An ``--ocpp-keys`` TOML document: OCPP 1.6 keys as ``Key = value`` (booleans,
    integers, strings, lists of strings); a mapping value is an OCPP 2.0.1 component's
    table (``{"SampledDataCtrlr": {"TxUpdatedInterval": 10}}``)."""
    plain = [f"{key} = {json.dumps(value)}\n" for key, value in keys.items() if not _table(value)]
    tables = [
        f"[{component}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in variables.items())
        for component, variables in keys.items()
        if _table(variables)
    ]
    return "".join(plain) + "".join(tables)


def _table(value: Any) -> bool:
    return isinstance(value, Mapping)


class ChargerError(Exception):
    """The simulated charger would not start, answer or do what was asked."""


class SimulatedCharger:
    """One simulated charge point; :meth:`start` it, drive it, :meth:`stop` it.

    ``csms_url`` is the CSMS's websocket base URL (the charge point id is appended as its
    last path segment); ``keys`` is the OCPP 1.6 key preset applied on the first start of
    ``state_dir`` (for ``ocpp="2.0.1"``, device-model variables: a mapping per component);
    ``speed`` makes the car and the meter run faster than the wall clock (protocol timers
    do not); ``ocpp`` is the OCPP version spoken ("1.6" or "2.0.1"); ``extra_args`` go to
    ``picharge run`` as they are (``["--sim-cable", "tethered"]``,
    ``["--sim-connectors", "2"]``).
    """

    def __init__(
        self,
        csms_url: str,
        state_dir: Path,
        *,
        chargepoint_id: str = "picharge-sim",
        keys: Mapping[str, Any] | None = None,
        speed: float = 10.0,
        ocpp: str = "1.6",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.csms_url = csms_url
        self.ocpp = ocpp
        self.state_dir = state_dir
        self.chargepoint_id = chargepoint_id
        self.control = f"127.0.0.1:{free_port()}"
        self.log_path = state_dir.with_name(state_dir.name + ".log")
        self._keys = dict(keys or {})
        self._speed = speed
        self._extra = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> SimulatedCharger:
        """Start the controller; returns once its control endpoint answers."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        preset = self.state_dir.with_name(self.state_dir.name + "-keys.toml")
        preset.write_text(preset_text(self._keys))
        argv = [
            sys.executable, "-m", "controller.cli", "run", "--sim",
            "--csms", self.csms_url, "--id", self.chargepoint_id,
            "--state-dir", str(self.state_dir), "--ocpp-keys", str(preset),
            "--sim-control", self.control, "--sim-speed", str(self._speed),
            "--ocpp", self.ocpp, *self._extra,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                raise ChargerError(
                    f"picharge run exited with {self._process.returncode}:\n{self.log()[-2000:]}"
                )
            try:
                self.status()
                return self
            except ChargerError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise ChargerError(f"no control endpoint after {timeout_s} s") from None
                time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (running transactions stop, contactors open), wait; the exit code.
        SIGKILL after ``timeout_s``. Idempotent."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: a power cut. :meth:`start` again to boot in the same state directory."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def log(self) -> str:
        """What the controller logged (stderr) in every run of this charger."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> SimulatedCharger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the car, the reader, the hardware --------------------------------------------------

    def plug(self, connector: int = 1) -> None:
        """Plug the car in (state B; it asks for energy once offered)."""
        self.act("plug", connector)

    def unplug(self, connector: int = 1) -> None:
        self.act("unplug", connector)

    def charge(self, connector: int = 1) -> None:
        """The car asks for energy (state C)."""
        self.act("charge", connector)

    def pause(self, connector: int = 1) -> None:
        """The car stops asking (state B)."""
        self.act("pause", connector)

    def tap(self, uid: str) -> None:
        """Present a card (hex UID); each call is one presentation, never merged or lost."""
        self.act("tap", uid=uid)

    def fault(self, fault: str, connector: int = 1) -> None:
        """Inject a fault (``rcd``, ``weld``, ``undervoltage``, ...) or ``clear`` them all."""
        self.act("fault", connector, fault=fault)

    def power_fail(self) -> None:
        """The UPS HAT warns that the supply failed; ``fault("clear")`` restores it."""
        self.act("power-fail")

    def status(self) -> dict[str, Any]:
        """``picharge sim status``: every connector's hardware and OCPP view."""
        return self.act("status")

    def connector(self, connector: int = 1) -> dict[str, Any]:
        entry: dict[str, Any] = self.status()["connectors"][connector - 1]
        return entry

    def wait_for(
        self,
        check: Callable[[dict[str, Any]], bool],
        timeout_s: float = 20.0,
        connector: int = 1,
    ) -> dict[str, Any]:
        """The first status of ``connector`` for which ``check`` holds (polled every 50 ms);
        ChargerError after ``timeout_s`` with the last one seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.connector(connector)
            if check(seen):
                return seen
            if time.monotonic() > deadline:
                raise ChargerError(f"timed out after {timeout_s} s; last status {seen}")
            time.sleep(0.05)

    def act(self, action: str, connector: int = 1, **fields: Any) -> dict[str, Any]:
        """One request to the control endpoint; the answer without its ``ok``."""
        try:
            answer = send(self.control, {"action": action, "connector": connector, **fields})
        except SimControlError as exc:
            raise ChargerError(f"{action}: {exc}") from exc
        answer.pop("ok", None)
        return answer
