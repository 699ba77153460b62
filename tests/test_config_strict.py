"""The configuration is strict, through the real command line (`picharge run --config F`).

Every key of every section and ``[[connector]]`` table is read by someone, or the program
stops with exit code 2 and one line naming the key and the nearest valid one; every bad file
(encoding, syntax, type, range) is exit 2 in one line without a traceback; a machine without
a usable GPIO library is one line and exit 2, which the systemd unit does not restart
(tests/test_unit_file.py); ``[hardware] backend`` picks the hardware; ``--id`` is checked as
the configured id is. Every example configuration still runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.wait import until_sync

PICHARGE = [sys.executable, "-m", "controller.cli"]
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "deploy" / "examples").glob("*.toml"))
PREFIX = "picharge: configuration error: "


def picharge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PICHARGE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def run_with(tmp_path: Path, text: str | bytes, *flags: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text)
    return picharge("run", "--config", str(config), "--state-dir", str(tmp_path / "state"), *flags)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UNKNOWN_KEYS = [
    # the typos the review found, each of which used to start without a word
    (
        "[[connector]]\ncontactor_active_hi = false\n",
        "connector.1.contactor_active_hi: unknown key; did you mean contactor_active_high?",
    ),
    (
        "[[connector]]\nfeeback_pin = 27\n",
        "connector.1.feeback_pin: unknown key; did you mean feedback_pin?",
    ),
    (
        "[[connector]]\nrcm_falt_pin = 22\n",
        "connector.1.rcm_falt_pin: unknown key; did you mean rcm_fault_pin?",
    ),
    ('[ocpp]\nuri = "ws://csms/ocpp"\n', "ocpp.uri: unknown key; did you mean url?"),
    (
        "[ocpp]\nsecurity_profle = 1\n",
        "ocpp.security_profle: unknown key; did you mean security_profile?",
    ),
    (
        '[authorization]\ncard = ["04AABBCC"]\n',
        "authorization.card: unknown key; did you mean cards?",
    ),
    # every other section, and the connector's second table
    ('[chargepoint]\nvendr = "x"\n', "chargepoint.vendr: unknown key; did you mean vendor?"),
    ('[storage]\nstatedir = "/tmp"\n', "storage.statedir: unknown key; did you mean state_dir?"),
    ("[hardware]\nled_pn = 5\n", "hardware.led_pn: unknown key; did you mean led_pin?"),
    (
        '[meter]\nserial_prot = "/dev/ttyUSB0"\n',
        "meter.serial_prot: unknown key; did you mean serial_port?",
    ),
    (
        '[rfid]\ntype = "rdm6300"\nbaudrat = 9600\n',
        "rfid.baudrat: unknown key; did you mean baudrate?",
    ),
    ('[rfid]\ntyp = "rdm6300"\n', "rfid.typ: unknown key; did you mean type?"),
    (
        "[[connector]]\n[[connector]]\nmax_curent_a = 16\n",
        "connector.2.max_curent_a: unknown key; did you mean max_current_a?",
    ),
    (
        "[[connector]]\n[connector.meter]\nunitid = 2\n",
        "connector.1.meter.unitid: unknown key; did you mean unit_id?",
    ),
    ("[ocp]\n", "ocp: unknown section; did you mean ocpp?"),
    # a key only another driver type reads
    (
        '[[connector]]\ntemperature_sensor = "auto"\n',
        "connector.1.temperature_sensor: unknown key here; "
        'it is read only with temperature_type = "ds18b20"',
    ),
    (
        '[rfid]\ntype = "rdm6300"\ni2c_bus = 1\n',
        'rfid.i2c_bus: unknown key here; it is read only with type = "pn532_i2c"',
    ),
    (
        '[hardware]\nled_type = "none"\nled_pin = 5\n',
        'hardware.led_pin: unknown key here; it is read only with led_type = "gpio"',
    ),
    (
        '[[connector]]\ncontactor_type = "relay"\n',
        "connector.1.contactor_type: unknown contactor type 'relay'; expected one of gpio",
    ),
]


@pytest.mark.parametrize(("text", "line"), UNKNOWN_KEYS)
def test_an_unknown_key_stops_the_program_naming_it_and_the_nearest(
    tmp_path: Path, text: str, line: str
) -> None:
    result = run_with(tmp_path, text)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [PREFIX + line]
    assert not (tmp_path / "state").exists()  # refused before anything was opened


BAD_FILES = [
    (b"\xff\xfe[chargepoint]\n", "is not UTF-8 text (byte 0xff at 0)"),
    (b'[chargepoint]\nid = "caf\xe9"\n', "is not UTF-8 text (byte 0xe9 at 23)"),
    (b"[connector\n", "is not valid TOML"),
    (b'[chargepoint]\nid = "a\nb"\n', "is not valid TOML"),
    (b'[[connector]]\nphases = "3"\n', "connector.1.phases: must be int, got '3'"),
    (
        b"[[connector]]\nmax_current_a = 100\n",
        "connector.1.max_current_a: must be between 6 and 80 A",
    ),
    (
        b"[[connector]]\nmax_current_a = nan\n",
        "connector.1.max_current_a: must be between 6 and 80 A",
    ),
    (b"[ocpp]\nsecurity_profile = 7\n", "ocpp.security_profile: must be 0, 1, 2 or 3, got 7"),
    (b'[hardware]\nbackend = "arduino"\n', "hardware.backend: must be 'pi' or 'sim'"),
    (b"connector = 5\n", "connector: must be one or more [[connector]] tables"),
]


@pytest.mark.parametrize(("raw", "text"), BAD_FILES)
def test_a_bad_file_is_exit_2_in_one_line(tmp_path: Path, raw: bytes, text: str) -> None:
    result = run_with(tmp_path, raw)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(PREFIX) and text in line, line


def test_a_bad_driver_value_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    """Values the drivers judge as they are built (here on the simulated charger)."""
    result = run_with(tmp_path, "[[connector]]\nadc_address = 0x50\n", "--sim")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(PREFIX + "connector.1.adc_address: must be")


def test_no_usable_gpio_library_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A Pi without its GPIO library (or not a Pi at all): gpiozero finds no pin factory.
    The factory named here does not exist on any machine, so the test means the same on a
    Pi; without it, this machine (no lgpio, no RPi.GPIO, not a Pi) fails the same way."""
    config = EXAMPLES[0]
    result = picharge(
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "state"),
        env={"GPIOZERO_PIN_FACTORY": "no-such-gpio-library"},
    )
    assert result.returncode == 2  # systemd: RestartPreventExitStatus=2, no restart loop
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("picharge:")]
    assert errors == [
        PREFIX + 'hardware.backend: "pi": no usable GPIO library: gpiozero found no pin factory '
        "(Unable to find pin factory 'no-such-gpio-library'); on a Raspberry Pi install "
        "python3-lgpio (deploy/install.sh does), elsewhere use --sim"
    ]


@pytest.mark.parametrize(
    ("chargepoint_id", "problem"),
    [("a/b", "without '/'"), ("", "1-36"), ("x" * 37, "1-36"), ("cp\x07", "printable")],
)
def test_the_id_flag_is_checked_as_the_configured_id(
    tmp_path: Path, chargepoint_id: str, problem: str
) -> None:
    for flags, key in (
        (["--id", chargepoint_id], "--id"),
        ([], "chargepoint.id"),
    ):
        text = (
            "" if flags else f'[chargepoint]\nid = "{chargepoint_id}"\n'.replace("\x07", "\\u0007")
        )
        result = run_with(tmp_path, text, "--sim", *flags)
        assert result.returncode == 2
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"{PREFIX}{key}: must be") and problem in line, line


class Running:
    """A `picharge run` process with a control port, stopped with SIGTERM."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*PICHARGE, "run", *args, "--sim-control", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def answering(self) -> bool:
        assert self.process.poll() is None, self.process.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(b'{"action": "status"}\n')
                return b'"ok": true' in sock.makefile("rb").readline()
        except OSError:
            return False

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.communicate()


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        if process.process.poll() is None:
            process.stop()


def test_backend_sim_runs_the_simulated_charger(tmp_path: Path, running: list[Running]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[hardware]\nbackend = "sim"\n')
    charger = Running("--config", str(config), "--state-dir", str(tmp_path / "state"))
    running.append(charger)
    until_sync(charger.answering, 30, what="the simulated charger's control port")
    assert charger.stop() == 0


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_configuration_runs(
    tmp_path: Path, running: list[Running], example: Path
) -> None:
    charger = Running(
        "--sim",
        "--config",
        str(example),
        "--state-dir",
        str(tmp_path / "state"),
        "--csms",
        f"ws://127.0.0.1:{free_port()}/ocpp",  # nobody there: the link backs off, no matter
    )
    running.append(charger)
    until_sync(charger.answering, 30, what=f"{example.name} to run")
    assert charger.stop() == 0


def test_a_socket_lock_and_a_power_fail_input_are_configurable(
    tmp_path: Path, running: list[Running]
) -> None:
    """The keys docs/install.md gives for a locking socket and a UPS HAT's warning are read
    by their drivers: strict configuration refused them as unknown before."""
    config = tmp_path / "config.toml"
    config.write_text(
        "[hardware]\npower_fail_pin = 26\npower_fail_active_high = false\n"
        "[[connector]]\nlock_pin = 6\nunlock_pin = 12\nlock_feedback_pin = 13\n"
        "lock_feedback_active_high = true\nlock_pulse_s = 0.2\nlock_timeout_s = 1.5\n"
    )
    charger = Running("--sim", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    running.append(charger)
    until_sync(charger.answering, 30, what="the charger with a lock and a power-fail input")
    assert charger.stop() == 0


def test_a_lock_on_the_contactors_gpio_is_exit_2_in_one_line(tmp_path: Path) -> None:
    result = run_with(tmp_path, "[[connector]]\nlock_pin = 17\nlock_feedback_pin = 19\n", "--sim")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(PREFIX + "connector.1: pin GPIO17 is already in use"), last
