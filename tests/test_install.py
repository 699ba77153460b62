"""deploy/install.sh and uninstall.sh, run for real into a temporary staging root.

With ``PICHARGE_ROOT`` set, every file goes under the root and every command that would
change the running system is written to ``var/log/picharge-install.log`` there instead. As
a second line of defence each test puts stand-ins for those commands first on PATH; they
record it if anything calls them, and the tests check that nothing did.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "deploy" / "install.sh"
UNINSTALL = REPO / "deploy" / "uninstall.sh"
SYSTEM_COMMANDS = (
    "apt-get",
    "groupadd",
    "useradd",
    "usermod",
    "userdel",
    "chown",
    "chgrp",
    "systemctl",
    "udevadm",
    "raspi-config",
)


@dataclass
class Staging:
    root: Path
    bin: Path
    ran: Path

    @property
    def log(self) -> Path:
        return self.root / "var/log/picharge-install.log"

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def run(
        self, script: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "PICHARGE_ROOT": str(self.root),
            "PICHARGE_PYTHON": sys.executable,
            **(env or {}),
        }
        result = subprocess.run(
            ["bash", str(script), *args],
            capture_output=True,
            text=True,
            env=environ,
            timeout=60,
            check=False,
        )
        assert not self.ran.exists(), f"ran on the real system: {self.ran.read_text()}"
        return result

    def fake(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)


@pytest.fixture
def staging(tmp_path: Path) -> Staging:
    s = Staging(tmp_path / "root", tmp_path / "bin", tmp_path / "ran")
    s.root.mkdir()
    s.bin.mkdir()
    for name in SYSTEM_COMMANDS:
        if name != "raspi-config":  # only present on Raspberry Pi OS (see the tests)
            s.fake(name, f'echo "{name} $*" >> {s.ran}; exit 1')
    s.fake("apt-cache", "exit 100")  # knows no python3-lgpio, like plain Debian
    return s


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_install_creates_the_files_and_logs_the_system_commands(staging: Staging) -> None:
    result = staging.run(INSTALL)
    assert result.returncode == 0, result.stderr
    root = staging.root
    unit = root / "etc/systemd/system/picharge.service"
    assert unit.read_text() == (REPO / "systemd/picharge.service").read_text()
    assert mode(unit) == 0o644
    config = root / "etc/picharge/config.toml"
    example = REPO / "deploy/examples/single-phase-sdm120-rdm6300.toml"
    assert config.read_text() == example.read_text()
    assert mode(config) == 0o600
    assert mode(root / "etc/picharge") == 0o750
    venv_python = root / "opt/picharge/venv/bin/python"
    assert subprocess.run([venv_python, "-c", "pass"], check=False).returncode == 0
    assert (
        "include-system-site-packages = true" in (root / "opt/picharge/venv/pyvenv.cfg").read_text()
    )
    assert sorted(p.name for p in (root / "opt/picharge/examples").iterdir()) == [
        "single-phase-sdm120-rdm6300.toml",
        "three-phase-sdm630-pn532-i2c.toml",
    ]
    rules = (root / "etc/udev/rules.d/60-picharge.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in rules
    commands = staging.commands()
    assert commands[1].endswith(
        "apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev gcc "
        "pkg-config libsystemd-dev i2c-tools"
    )
    for expected in (
        "useradd --system --user-group --home-dir /var/lib/picharge --no-create-home "
        "--shell /usr/sbin/nologin --comment picharge\\ EV\\ charge\\ point\\ controller picharge",
        "usermod --append --groups gpio,i2c,dialout picharge",
        "/opt/picharge/venv/bin/pip install --quiet --upgrade pip",
        f"/opt/picharge/venv/bin/pip install --quiet --upgrade {REPO}",
        "chgrp picharge /etc/picharge",
        "chown picharge:picharge /etc/picharge/config.toml",
        "systemctl daemon-reload",
        "systemctl try-restart picharge.service",
    ):
        assert expected in commands
    # A first install never enables the service: the next boot would start it on the example
    # configuration before anyone checked the wiring.
    assert not any("systemctl enable" in command for command in commands)
    assert "only when check-hw passed: sudo systemctl enable --now picharge" in result.stdout
    assert "raspi-config not found" in result.stdout
    assert "enable_uart=1" in result.stdout


def test_rerunning_upgrades_and_keeps_the_users_configuration(staging: Staging) -> None:
    assert staging.run(INSTALL).returncode == 0
    root = staging.root
    config = root / "etc/picharge/config.toml"
    config.write_text('[chargepoint]\nid = "my-wallbox"\n')
    marker = root / "opt/picharge/venv/marker"
    marker.write_text("the same venv")
    unit = root / "etc/systemd/system/picharge.service"
    unit.write_text("an older unit\n")
    staging.log.unlink()
    result = staging.run(INSTALL, "--example", "three-phase-sdm630-pn532-i2c")
    assert result.returncode == 0, result.stderr
    assert config.read_text() == '[chargepoint]\nid = "my-wallbox"\n'
    assert "kept: an existing configuration is never overwritten" in result.stdout
    assert marker.exists()  # upgraded in place, not recreated
    assert unit.read_text() == (REPO / "systemd/picharge.service").read_text()
    commands = staging.commands()
    assert f"/opt/picharge/venv/bin/pip install --quiet --upgrade {REPO}" in commands
    assert "systemctl try-restart picharge.service" in commands
    assert not [c for c in commands if c.startswith("chown")]  # the kept file is left alone


def test_existing_user_and_groups_are_not_created_again(staging: Staging) -> None:
    etc = staging.root / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("picharge:x:990:990::/var/lib/picharge:/usr/sbin/nologin\n")
    (etc / "group").write_text("gpio:x:997:\ni2c:x:998:\ndialout:x:20:\n")
    assert staging.run(INSTALL).returncode == 0
    commands = staging.commands()
    assert not [c for c in commands if c.startswith(("useradd", "groupadd"))]
    assert "usermod --append --groups gpio,i2c,dialout picharge" in commands


def test_on_raspberry_pi_os_raspi_config_enables_i2c_uart_and_pwm(staging: Staging) -> None:
    staging.fake("raspi-config", f'echo "raspi-config $*" >> {staging.ran}; exit 1')
    staging.fake("apt-cache", "exit 0")  # Raspberry Pi OS packages python3-lgpio
    boot = staging.root / "boot/firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text("[all]\ndtparam=audio=on\n")
    (staging.root / "etc/udev/rules.d").mkdir(parents=True)
    (staging.root / "etc/udev/rules.d/99-com.rules").write_text("# Raspberry Pi OS\n")
    assert staging.run(INSTALL).returncode == 0
    assert staging.run(INSTALL).returncode == 0  # twice: nothing added twice
    commands = staging.commands()
    assert commands.count("raspi-config nonint do_i2c 0") == 2
    assert "raspi-config nonint do_serial_hw 0" in commands
    assert "raspi-config nonint do_serial_cons 1" in commands
    assert commands[1].endswith("i2c-tools python3-lgpio")
    config_txt = (boot / "config.txt").read_text()
    assert config_txt.count("dtoverlay=pwm") == 1
    assert not (staging.root / "etc/udev/rules.d/60-picharge.rules").exists()
    assert not [c for c in commands if c.startswith("udevadm")]


@pytest.mark.parametrize(
    ("example", "overlay"),
    [("three-phase-sdm630-pn532-i2c", True), (None, False)],
)
def test_the_one_wire_overlay_is_added_only_when_a_temperature_sensor_is_configured(
    staging: Staging, example: str | None, overlay: bool
) -> None:
    boot = staging.root / "boot/firmware"
    boot.mkdir(parents=True)
    (boot / "config.txt").write_text("[all]\n")
    args = ["--example", example] if example else []
    assert staging.run(INSTALL, *args).returncode == 0
    assert staging.run(INSTALL).returncode == 0  # an upgrade: nothing added twice
    config_txt = (boot / "config.txt").read_text()
    assert config_txt.count("dtoverlay=w1-gpio,gpiopin=4") == (1 if overlay else 0)
    assert config_txt.count("dtoverlay=pwm") == 1


def test_an_unknown_example_or_option_is_refused(staging: Staging) -> None:
    result = staging.run(INSTALL, "--example", "no-such-build")
    assert result.returncode == 2
    assert "single-phase-sdm120-rdm6300.toml" in result.stderr
    assert not (staging.root / "etc").exists()
    assert staging.run(INSTALL, "--bogus").returncode == 2


def test_uninstall_keeps_configuration_and_state_unless_purged(staging: Staging) -> None:
    assert staging.run(INSTALL).returncode == 0
    root = staging.root
    state = root / "var/lib/picharge/state.db"
    state.parent.mkdir(parents=True)
    state.write_text("transactions not yet sent")
    staging.log.unlink()
    result = staging.run(UNINSTALL)
    assert result.returncode == 0, result.stderr
    assert not (root / "etc/systemd/system/picharge.service").exists()
    assert not (root / "opt/picharge").exists()
    assert not (root / "etc/udev/rules.d/60-picharge.rules").exists()
    assert (root / "etc/picharge/config.toml").exists()
    assert state.exists()
    assert staging.commands() == [
        "systemctl disable --now picharge.service",
        "systemctl daemon-reload",
        "udevadm control --reload-rules",
    ]
    again = staging.run(UNINSTALL)  # idempotent: nothing left to stop
    assert again.returncode == 0
    staging.log.unlink()
    result = staging.run(UNINSTALL, "--purge")
    assert result.returncode == 0
    assert not (root / "etc/picharge").exists()
    assert not (root / "var/lib/picharge").exists()
    assert staging.commands() == ["userdel picharge"]


def test_a_staging_root_is_never_the_running_system(staging: Staging) -> None:
    result = staging.run(INSTALL, "--enable", env={"PICHARGE_DRY_SYSTEM": "0"})
    assert result.returncode == 0, result.stderr
    assert "systemctl enable picharge.service" in staging.commands()
    # staging.run asserted that none of the stand-ins on PATH was called


def test_scripts_are_valid_bash() -> None:
    for script in (INSTALL, UNINSTALL):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
        assert os.access(script, os.X_OK)


def test_the_install_guide_matches_what_is_installed() -> None:
    guide = (REPO / "docs/install.md").read_text()
    assert "mains voltage kills" in guide.lower()
    assert "qualified electrician" in guide and "RCD" in guide
    for name in ("single-phase-sdm120-rdm6300", "three-phase-sdm630-pn532-i2c"):
        assert name in guide
        assert (REPO / "deploy/examples" / f"{name}.toml").exists()
    check_hw = build_parser().parse_args(["check-hw", "--config", "x", "--card-timeout", "5"])
    assert (check_hw.command, check_hw.card_timeout) == ("check-hw", 5.0)
    assert "--card-timeout" in guide and "check-hw --sim" in guide
    args = ["--tester-timeout", "0", "--led-hold", "1", "--calibrate", "--sim"]
    check_hw = build_parser().parse_args(["check-hw", "--config", "x", *args])
    assert (check_hw.tester_timeout, check_hw.led_hold, check_hw.calibrate) == (0.0, 1.0, True)
    for option in ("--tester-timeout", "--led-hold", "--calibrate", "--sim-control"):
        assert option in guide, option
    assert "dtoverlay=w1-gpio,gpiopin=4" in guide
    unit = (REPO / "systemd/picharge.service").read_text()
    assert "WatchdogSec=10\n" in unit and "TimeoutStopSec=15\n" in unit
    assert "stalled after 5 s" in guide and "`WatchdogSec=10`" in guide
    assert "15 s stop timeout" in guide
    for field in ("CONNECTOR", "TRANSACTION_ID", "OCPP_ACTION", "OCPP_MESSAGE_ID"):
        assert field in guide
