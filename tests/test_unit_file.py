"""systemd/picharge.service: `systemd-analyze verify` is silent and the exposure score <= 2.0.

``verify`` checks that ExecStart's binary exists, which it does only on an installed Pi.
The test therefore verifies the unchanged unit file inside a throw-away root
(``systemd-analyze verify --root=DIR``): the unit in DIR/etc/systemd/system, a stand-in
executable at DIR/opt/picharge/venv/bin/picharge, and a copy of the host's
/usr/lib/systemd/system so that the targets it refers to resolve.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from controller.cli import EXIT_FAILURE, EXIT_USAGE
from drivers import realtime

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "picharge.service"
MAX_EXPOSURE = 2.0


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value assigned, in order (units repeat keys)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def install_root(root: Path, unit_text: str) -> None:
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/picharge.service").write_text(unit_text)
    for stand_in in (
        "opt/picharge/venv/bin/picharge",
        "opt/picharge/venv/bin/python",
        "usr/bin/env",
    ):
        binary = root / stand_in
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "picharge.service"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    install_root(tmp_path, UNIT.read_text())
    result = verify(tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_in_the_test_root_would_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly")
    install_root(tmp_path, broken)
    result = verify(tmp_path)
    assert "Failed to parse protect system value" in result.stdout + result.stderr
    (tmp_path / "opt/picharge/venv/bin/picharge").unlink()
    result = verify(tmp_path)
    assert result.returncode != 0
    assert "/opt/picharge/venv/bin/picharge" in result.stdout + result.stderr


def security(unit: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze security`` of the unit file as it is, offline."""
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def exposure(unit: Path) -> float:
    result = security(unit)
    match = re.search(r"Overall exposure level for picharge\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_security_exposure_score_is_at_most_2(tmp_path: Path) -> None:
    score = exposure(UNIT)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}"
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_score_would_notice_a_dropped_sandbox(tmp_path: Path) -> None:
    weakened = tmp_path / "picharge.service"
    text = UNIT.read_text()
    for line in (
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ):
        text = text.replace(f"\n{line}\n", "\n")
    weakened.write_text(text)
    assert exposure(weakened) > MAX_EXPOSURE


@pytest.fixture(scope="module")
def settings() -> dict[str, list[str]]:
    return unit_settings(UNIT.read_text())


def test_the_service_notifies_has_a_watchdog_and_restarts_on_failure(
    settings: dict[str, list[str]],
) -> None:
    assert settings["Service.Type"] == ["notify"]
    assert settings["Service.NotifyAccess"] == ["main"]
    assert settings["Service.WatchdogSec"] == ["10"]
    assert settings["Service.Restart"] == ["on-failure"]
    assert settings["Service.RestartPreventExitStatus"] == ["2"]  # bad configuration
    assert settings["Service.TimeoutStopSec"] == ["15"]
    assert settings["Install.WantedBy"] == ["multi-user.target"]


def test_it_runs_the_installed_controller_as_the_service_user(
    settings: dict[str, list[str]],
) -> None:
    assert settings["Service.ExecStart"] == [
        "/opt/picharge/venv/bin/picharge run --config /etc/picharge/config.toml "
        "--state-dir /var/lib/picharge"
    ]
    assert settings["Service.User"] == ["picharge"]
    assert settings["Service.SupplementaryGroups"] == ["gpio i2c dialout systemd-journal"]
    # the firmware guard runs first and may roll back an update that never registered
    assert settings["Service.ExecStartPre"] == [
        "/usr/bin/env -u PYTHONPATH /opt/picharge/venv/bin/python -m controller.firmware_install "
        "guard /var/lib/picharge/firmware"
    ]
    assert "PYTHONPATH=/var/lib/picharge/firmware/current" in settings["Service.Environment"]
    assert settings["Service.StateDirectory"] == ["picharge"]
    assert settings["Service.ConfigurationDirectory"] == ["picharge"]


def test_only_the_devices_the_drivers_open_are_allowed(settings: dict[str, list[str]]) -> None:
    assert settings["Service.DevicePolicy"] == ["closed"]
    assert settings["Service.DeviceAllow"] == [
        "char-gpiochip rw",
        "/dev/i2c-1 rw",
        "/dev/serial0 rw",
        "/dev/ttyAMA0 rw",
        "/dev/ttyS0 rw",
        "char-ttyUSB rw",
    ]
    assert settings["Service.CapabilityBoundingSet"] == [""]
    assert settings["Service.ReadWritePaths"] == ["-/sys/devices/platform"]


def test_every_group_the_unit_grants_is_explained_in_the_install_guide(
    settings: dict[str, list[str]],
) -> None:
    """A group is access: the operator must be told why each one is there, above all
    systemd-journal, which reads far more than the service's own entries."""
    guide = (REPO / "docs" / "install.md").read_text()
    notes = guide[guide.index("## 9. Notes on the sandbox") :]
    for group in settings["Service.SupplementaryGroups"][0].split():
        assert f"`{group}`" in notes, f"docs/install.md does not explain the group {group}"
    assert "reads the whole system journal" in notes
    assert "SupplementaryGroups=gpio i2c dialout" in notes  # how to do without it


def test_an_exit_that_restarting_cannot_fix_is_not_restarted(
    settings: dict[str, list[str]],
) -> None:
    """A bad configuration and a machine without a usable GPIO library both exit with
    EXIT_USAGE (tests/test_config_strict.py); systemd must not restart those every
    RestartSec forever, while a failure while running (EXIT_FAILURE) is restarted."""
    assert settings["Service.Restart"] == ["on-failure"]
    prevented = {
        code for value in settings["Service.RestartPreventExitStatus"] for code in value.split()
    }
    assert str(EXIT_USAGE) in prevented
    assert str(EXIT_FAILURE) not in prevented


def test_the_unit_grants_the_cp_sampler_its_real_time_priority_and_no_more(
    settings: dict[str, list[str]],
) -> None:
    """drivers/realtime.py: the CP sampler asks for SCHED_FIFO at DEFAULT_PRIORITY. The unit
    lets this unprivileged user do exactly that (RLIMIT_RTPRIO, no capability), lets the one
    system call through the @resources deny list, bounds a real-time thread that never
    sleeps, and leaves the process itself under normal scheduling."""
    assert settings["Service.LimitRTPRIO"] == [str(realtime.DEFAULT_PRIORITY)]
    assert settings["Service.RestrictRealtime"] == ["no"]
    assert settings["Service.LimitRTTIME"] == ["200ms"]
    filters = settings["Service.SystemCallFilter"]
    assert filters.index("sched_setscheduler") > filters.index("~@privileged @resources")
    assert "Service.CPUSchedulingPolicy" not in settings
    assert "Service.CPUSchedulingPriority" not in settings
    assert settings["Service.CapabilityBoundingSet"] == [""]
    assert settings["Service.AmbientCapabilities"] == [""]


def test_systemd_reads_the_filter_as_allowing_sched_setscheduler() -> None:
    """The order of SystemCallFilter= lines matters (a later allow line adds back to the
    allow list): systemd's own reading must be that sched_setscheduler is allowed."""
    resources = [line for line in security(UNIT).stdout.splitlines() if "~@resources" in line]
    assert len(resources) == 1 and "e.g. sched_setscheduler is allowed" in resources[0]
