"""Installing a firmware package for real: pip into <state>/firmware/<version>, an import check
from a fresh interpreter, an atomic switch of ``current`` with ``previous`` kept, and a broken
package that never becomes current. Offline: the wheels are built by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from controller.firmware_install import (
    Downgrade,
    FirmwareRejected,
    InstallFailed,
    PackageKind,
    PipTargetInstaller,
    expected_sha256,
    guard,
    inspect_package,
    is_older,
    main,
    retire_stale,
    rollback,
    start_trial,
    switch_link,
    venv_version,
)
from tests.support.firmware_packages import build_wheel


def downloaded(tmp_path: Path, data: bytes) -> Path:
    """The wheel as the downloader leaves it: under a name that says nothing."""
    path = tmp_path / "download"
    path.write_bytes(data)
    return path


def current_of(root: Path) -> str:
    return str((root / "current").readlink())


def test_versions_are_installed_beside_each_other_and_switched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "state" / "firmware"
    installer = PipTargetInstaller(root)
    first = inspect_package(downloaded(tmp_path, build_wheel("9.9.1")[1]), "0.1.0")
    assert first.path.name == "picharge-9.9.1-py3-none-any.whl"
    assert installer.install(first) == root / "9.9.1"
    assert current_of(root) == "9.9.1" and not (root / "previous").exists()

    second = inspect_package(downloaded(tmp_path, build_wheel("9.9.2")[1]), "9.9.1")
    installer.install(second)
    assert (current_of(root), str((root / "previous").readlink())) == ("9.9.2", "9.9.1")

    broken = inspect_package(downloaded(tmp_path, build_wheel("9.9.3", broken=True)[1]), "9.9.2")
    with pytest.raises(InstallFailed, match="import check"):
        installer.install(broken)
    assert current_of(root) == "9.9.2"  # the working version stays
    assert sorted(p.name for p in root.iterdir()) == [
        "9.9.1",
        "9.9.2",
        "current",
        "previous",
        "trial",
    ]

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    installer.prepare_restart()
    assert os.environ["PYTHONPATH"] == f"{root / 'current'}{os.pathsep}/elsewhere"
    started = subprocess.run(
        [sys.executable, "-c", "import controller.cli; print(controller.cli.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert started.stdout.strip() == "9.9.2"  # a re-exec starts the current version

    assert rollback(root) == "9.9.1"
    assert current_of(root) == "9.9.1" and not (root / "previous").exists()


def test_an_sdist_is_recognised_by_its_pkg_info(tmp_path: Path) -> None:
    info = tmp_path / "PKG-INFO"
    info.write_text("Metadata-Version: 2.1\nName: picharge\nVersion: 0.2.0\n")
    archive = tmp_path / "download"
    with tarfile.open(archive, "w:gz") as sdist:
        sdist.add(info, "picharge-0.2.0/PKG-INFO")
    package = inspect_package(archive, "0.1.0")
    assert (package.kind, package.version, package.path.name) == (
        PackageKind.SDIST,
        "0.2.0",
        "picharge-0.2.0.tar.gz",
    )


def test_a_checksum_rides_in_the_fragment_or_the_query() -> None:
    assert expected_sha256("https://h/p.whl#sha256=ABC") == "abc"
    assert expected_sha256("ftp://h/p.whl?sha256=def") == "def"
    assert expected_sha256("https://h/p.whl") is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"just text", "neither a wheel nor an sdist"),
        (build_wheel(name="evil")[1], "not of picharge"),
        (build_wheel("0.1.0")[1], "is the one running"),
    ],
)
def test_packages_that_are_not_a_new_picharge_are_refused(
    tmp_path: Path, data: bytes, problem: str
) -> None:
    with pytest.raises(FirmwareRejected, match=problem):
        inspect_package(downloaded(tmp_path, data), "0.1.0")


def test_a_new_version_is_on_trial_until_it_registers(tmp_path: Path) -> None:
    root = tmp_path / "firmware"
    installer = PipTargetInstaller(root)
    installer.install(inspect_package(downloaded(tmp_path, build_wheel("9.9.1")[1]), "0.1.0"))
    assert (root / "trial").read_text() == "9.9.1 0\n"
    assert installer.confirm() == "9.9.1"
    assert not (root / "trial").exists() and installer.confirm() is None
    assert guard(root) == "no firmware on trial"


def test_a_version_that_never_registers_is_rolled_back_after_three_starts(
    tmp_path: Path,
) -> None:
    root = tmp_path / "firmware"
    installer = PipTargetInstaller(root)
    installer.install(inspect_package(downloaded(tmp_path, build_wheel("9.9.1")[1]), "0.1.0"))
    installer.confirm()
    installer.install(inspect_package(downloaded(tmp_path, build_wheel("9.9.2")[1]), "9.9.1"))
    assert [guard(root, max_starts=2) for _ in range(2)] == [
        "firmware 9.9.2 on trial: start 1 of 2",
        "firmware 9.9.2 on trial: start 2 of 2",
    ]
    assert guard(root, max_starts=2) == (
        "firmware 9.9.2 rolled back to 9.9.1: 2 starts without registering"
    )
    assert current_of(root) == "9.9.1" and not (root / "trial").exists()


def test_a_current_version_that_no_longer_imports_is_rolled_back_to_the_venv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "firmware"
    installer = PipTargetInstaller(root)
    installer.install(inspect_package(downloaded(tmp_path, build_wheel("9.9.1")[1]), "0.1.0"))
    (root / "9.9.1" / "controller" / "app.py").write_text("raise SystemExit(5)\n")
    assert main(["guard", str(root)]) == 0
    assert "firmware 9.9.1 rolled back to venv: import check exited 5" in capsys.readouterr().out
    assert not (root / "current").exists()  # the venv's own version runs again
    assert rollback(root) is None


def ota_version(root: Path, version: str, previous: str | None = None) -> None:
    """``current`` names an over-the-air ``version`` on trial (``previous`` before it)."""
    for name in filter(None, (version, previous)):
        (root / name).mkdir(parents=True)
    switch_link(root, "current", version)
    if previous is not None:
        switch_link(root, "previous", previous)
    start_trial(root, version)


@pytest.mark.parametrize("ota", ["0.0.9", "0.1.0"])
def test_an_installed_upgrade_is_not_hidden_by_an_older_over_the_air_version(
    tmp_path: Path, ota: str
) -> None:
    """deploy/install.sh upgraded the venv to 0.1.0: an over-the-air version that is not newer
    would stay first on PYTHONPATH and run instead of it."""
    root = tmp_path / "firmware"
    ota_version(root, ota, previous="0.0.8")
    assert guard(root, installed="0.1.0") == (
        f"firmware {ota} is not newer than the installed 0.1.0: the installed runs"
    )
    assert not any((root / n).exists() for n in ("current", "previous", "trial"))


def test_a_newer_over_the_air_version_stays_current(tmp_path: Path) -> None:
    root = tmp_path / "firmware"
    ota_version(root, "0.10.0")
    assert retire_stale(root, "0.9.0") is None
    assert str((root / "current").readlink()) == "0.10.0" and (root / "trial").exists()


def test_the_unit_guard_compares_with_the_venvs_own_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "firmware"
    ota_version(root, "0.0.1")
    assert main(["guard", str(root)]) == 0
    assert f"not newer than the installed {venv_version()}" in capsys.readouterr().out
    assert not (root / "current").exists()


@pytest.mark.parametrize(
    ("version", "running", "older"),
    [("0.0.9", "0.1.0", True), ("0.1.0rc1", "0.1.0", True), ("0.10.0", "0.9.0", False)],
)
def test_versions_are_ordered_by_pep_440(version: str, running: str, older: bool) -> None:
    assert is_older(version, running) is older
    with pytest.raises(FirmwareRejected, match="not a PEP 440 version"):
        is_older("nightly-build", running)


def test_an_older_package_is_refused_unless_downgrades_are_allowed(tmp_path: Path) -> None:
    with pytest.raises(Downgrade, match=r"older than the running 0\.2\.0"):
        inspect_package(downloaded(tmp_path, build_wheel("0.1.9")[1]), "0.2.0")
    package = inspect_package(
        downloaded(tmp_path, build_wheel("0.1.9")[1]), "0.2.0", allow_downgrade=True
    )
    assert package.version == "0.1.9"
