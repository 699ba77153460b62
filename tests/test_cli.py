"""`picharge run --sim` and `picharge sim` from the command line, as users and CI jobs use them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.wait import until_sync

PICHARGE = [sys.executable, "-m", "controller.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def picharge(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PICHARGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Controller:
    def __init__(self, state_dir: Path) -> None:
        self.control = f"127.0.0.1:{free_port()}"
        config = state_dir / "config.toml"
        config.write_text('[authorization]\ncards = ["04AABBCC"]\n')
        self.process = subprocess.Popen(
            [
                *PICHARGE,
                "run",
                "--sim",
                "--config",
                str(config),
                "--state-dir",
                str(state_dir),
                "--sim-speed",
                "60",
                "--sim-control",
                self.control,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sim(self, *args: str) -> subprocess.CompletedProcess[str]:
        return picharge("sim", "--control", self.control, *args)

    def status(self) -> dict[str, Any]:
        result = self.sim("status")
        assert result.returncode == 0, result.stderr
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def wait_for(self, check: Any, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first ``picharge sim status`` for which ``check`` holds."""
        seen: list[dict[str, Any]] = []

        def status_if_checked() -> dict[str, Any] | None:
            seen.append(self.status())
            return seen[-1] if check(seen[-1]) else None

        found = until_sync(status_if_checked, timeout_s, what="a status", interval_s=0.1)
        assert found is not None
        return found

    def listening(self) -> bool:
        """Whether the --sim controller opened its control port (failing if it died)."""
        assert self.process.poll() is None, self.process.communicate()[1]
        return self.sim("status").returncode == 0


@contextlib.contextmanager
def started(tmp_path: Path) -> Iterator[Controller]:
    """A --sim controller listening; killed on the way out if it is still running (a start
    that timed out must not leave a controller behind for the rest of the suite)."""
    c = Controller(tmp_path)
    try:
        until_sync(c.listening, 45, what="the --sim controller to open its control port")
        yield c
    finally:
        if c.process.poll() is None:
            c.process.kill()
        c.process.communicate()


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    with started(tmp_path) as c:
        yield c
        c.process.send_signal(signal.SIGTERM)
        c.process.wait(timeout=10)


def test_status_reports_every_connector_field_and_the_meter_endpoint(
    controller: Controller,
) -> None:
    status = controller.status()
    connector = status["connectors"][0]
    for key in (
        "id",
        "cp_state",
        "contactor_closed",
        "offered_current_a",
        "ev_current_a",
        "energy_wh",
        "power_w",
    ):
        assert key in connector
    assert connector["cp_state"] == "A"
    assert connector["contactor_closed"] is False
    host, _, port = status["meter_modbus_tcp"].rpartition(":")
    assert host == "127.0.0.1" and port.isdigit()
    assert connector["ocpp_status"] == "Available"
    assert connector["transaction_id"] is None


def test_plugging_the_car_in_is_seen_by_the_running_drivers(controller: Controller) -> None:
    assert controller.sim("plug").returncode == 0
    status = controller.wait_for(lambda s: s["connectors"][0]["ocpp_status"] == "Preparing")
    # nothing is offered without an authorized session: the car waits in B, contactor open
    assert status["connectors"][0]["cp_state"] == "B"
    assert status["connectors"][0]["contactor_closed"] is False


def test_card_from_the_configured_list_starts_charging(controller: Controller) -> None:
    assert controller.sim("plug").returncode == 0
    controller.wait_for(lambda s: s["connectors"][0]["ocpp_status"] == "Preparing")
    assert controller.sim("tap", "04aabbcc").returncode == 0
    status = controller.wait_for(lambda s: s["connectors"][0]["ocpp_status"] == "Charging")
    assert status["connectors"][0]["transaction_id"] is not None
    status = controller.wait_for(lambda s: s["connectors"][0]["ev_current_a"] > 15)
    assert status["connectors"][0]["contactor_closed"] is True


def test_rcd_fault_injected_from_the_command_line_is_reported(controller: Controller) -> None:
    assert controller.sim("fault", "rcd").returncode == 0
    assert controller.status()["connectors"][0]["faults"] == ["rcd"]
    assert controller.sim("fault", "clear").returncode == 0
    assert controller.status()["connectors"][0]["faults"] == []


def test_mbpoll_reads_the_running_simulated_meter(controller: Controller) -> None:
    host, _, port = controller.status()["meter_modbus_tcp"].rpartition(":")
    # SDM630 frequency: input register 0x46, 1-based 71 for mbpoll, float32 big-endian
    result = subprocess.run(
        [
            "mbpoll",
            "-m",
            "tcp",
            "-p",
            port,
            "-a",
            "1",
            "-t",
            "3:float",
            "-B",
            "-r",
            "71",
            "-c",
            "1",
            "-1",
            host,
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[71]: \t50" in result.stdout or "[71]:\t50" in result.stdout, result.stdout


def test_bad_tap_is_refused_with_the_reason(controller: Controller) -> None:
    result = controller.sim("tap", "0102")
    assert result.returncode == 1
    assert "4, 7 or 10" in result.stderr


def test_sigterm_stops_the_controller_promptly(tmp_path: Path) -> None:
    with started(tmp_path) as c:
        c.process.send_signal(signal.SIGTERM)
        assert c.process.wait(timeout=10) == 0


def test_sim_without_a_running_simulation_says_how_to_start_one() -> None:
    result = picharge("sim", "--control", f"127.0.0.1:{free_port()}", "status")
    assert result.returncode == 1
    assert "picharge run --sim" in result.stderr


def test_bad_configuration_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[[connector]]\nmax_current_a = 100\n")
    result = picharge("run", "--sim", "--config", str(config), "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "connector.1.max_current_a" in result.stderr


def test_bad_driver_setting_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[meter]\nmodel = "sdm999"\n')
    result = picharge("run", "--sim", "--config", str(config), "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "meter.model" in result.stderr


@pytest.mark.parametrize(
    ("preset", "named"),
    [
        ("[NoSuchCtrlr]\nX = 1\n", "[NoSuchCtrlr]"),
        ("[OCPPCommCtrlr]\nNoSuchVariable = 1\n", "OCPPCommCtrlr.NoSuchVariable"),
        ("[OCPPCommCtrlr]\nHeartbeatInterval = -1\n", "OCPPCommCtrlr.HeartbeatInterval"),
        ('[SecurityCtrlr]\nIdentity = "x"\n', "SecurityCtrlr.Identity"),
        ("HeartbeatInterval = 10\n", "HeartbeatInterval"),  # 1.6's flat form
    ],
)
def test_an_ocpp_201_preset_is_as_strict_as_1_6(tmp_path: Path, preset: str, named: str) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(preset)
    state = tmp_path / "state"
    result = picharge(
        *("run", "--sim", "--ocpp", "2.0.1", "--csms", "ws://127.0.0.1:9/ocpp"),
        *("--ocpp-keys", str(keys), "--state-dir", str(state)),
        *("--sim-control", f"127.0.0.1:{free_port()}"),
    )
    assert result.returncode == 2, result.stderr
    assert f"--ocpp-keys {named}" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--sim-speed", "0"],
        ["run", "--sim-control", "nohost"],
        ["sim", "fault", "flood"],
        ["fly"],
    ],
)
def test_bad_flags_exit_2(args: list[str]) -> None:
    result = picharge(*args)
    assert result.returncode == 2
    assert result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("picharge")
    assert script.exists()
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, env={**os.environ}
    )
    assert result.returncode == 0
    assert "demo" in result.stdout
