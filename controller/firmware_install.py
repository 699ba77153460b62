"""Firmware packages of picharge: checking one, installing it beside the running one, switching.

Free of OCPP (:mod:`controller.csms.firmware` drives it). On a Pi the firmware is a Python
distribution of picharge, a wheel (``.whl``) or an sdist (``.tar.gz``).

Layout under the state directory (:data:`FIRMWARE_DIR`)::

    <state_dir>/firmware/0.2.0/      pip install --target of that version (controller, drivers,
    <state_dir>/firmware/0.3.0/      hw_sim and the picharge-X.dist-info)
    <state_dir>/firmware/current  -> 0.3.0      (symlink, switched atomically)
    <state_dir>/firmware/previous -> 0.2.0      (what ``current`` was: the fall-back)

The running controller is never touched: a version is installed into a directory of its own,
checked by importing the controller from it in a fresh interpreter, and only then is
``current`` switched (a new symlink renamed over the old one: atomic), ``previous`` kept, and
older versions removed. :func:`rollback` puts ``previous`` back (or, after the first update,
removes ``current`` so that the venv's own version runs).

The guard also retires an over-the-air version that is not newer than the venv's own
(:func:`retire_stale`): re-running ``deploy/install.sh`` upgrades the venv, and an older
version left in ``current`` would otherwise stay first on ``PYTHONPATH`` and hide it.

A new version is on trial (``<state_dir>/firmware/trial``) until it registers with the CSMS
(:func:`confirm`, from the OCPP adapter). The unit's
``ExecStartPre=/usr/bin/env -u PYTHONPATH <venv>/bin/python -m controller.firmware_install
guard <state_dir>/firmware`` (:func:`guard`, the venv's own code) counts the starts of a
version on trial and rolls back after :data:`MAX_TRIAL_STARTS` starts without registering,
or at once when the controller no longer imports from it: a broken update that crashes
(systemd ``Restart=``) ends with the previous version running again.

How the new version is started: ``PYTHONPATH=<state_dir>/firmware/current`` puts it ahead of
the venv's site-packages. :meth:`PipTargetInstaller.prepare_restart` sets it for the re-exec
of the CSMS reset path (``python -m controller.cli`` with the same arguments); the systemd
unit carries ``Environment=PYTHONPATH=/var/lib/picharge/firmware/current`` so that a boot
starts it too (a missing ``current`` is skipped by Python: the venv's version runs).
Installing uses ``--no-deps``: the new version runs on the venv's libraries, and the import
check refuses one that needs others. Every function here blocks: run it in a thread.
"""

from __future__ import annotations

import email.parser
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from packaging.version import InvalidVersion, Version

DIST_NAME = "picharge"
FIRMWARE_DIR = "firmware"
CURRENT = "current"
PREVIOUS = "previous"
#: Modules imported from the new version before it is switched to (most of the controller:
#: a missing dependency or a syntax error shows here, not after the restart).
SMOKE_IMPORTS = "import controller.cli, controller.app, controller.ocpp16.adapter, drivers.base"
PIP_TIMEOUT_S = 600.0
#: A new version on trial; starts it may take without registering before the fall-back.
TRIAL = "trial"
MAX_TRIAL_STARTS = 3
SMOKE_TIMEOUT_S = 120.0
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")


class FirmwareRejected(Exception):
    """The file is not a picharge package we may install (the text says why)."""


class Downgrade(FirmwareRejected):
    """The package is older than the running version (refused unless the operator allows
    downgrades): a CSMS must not bring back a version with known holes."""


class InstallFailed(Exception):
    """Installing or checking the new version failed; the running one is still current."""


class VerificationFailed(InstallFailed):
    """The package installed, but the installed controller fails its check (it does not
    import from where it went): OCPP's InstallVerificationFailed."""


class PackageKind(StrEnum):
    WHEEL = "wheel"
    SDIST = "sdist"


@dataclass(frozen=True, slots=True)
class FirmwarePackage:
    """A checked package: its distribution name and version, and the file under its proper
    name (pip requires a wheel's file name to match its metadata)."""

    name: str
    version: str
    kind: PackageKind
    path: Path


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def expected_sha256(url: str) -> str | None:
    """The checksum a URL carries: ``#sha256=<hex>`` (pip's convention) or ``?sha256=<hex>``."""
    parts = urllib.parse.urlsplit(url)
    for text in (parts.fragment, parts.query):
        value = urllib.parse.parse_qs(text).get("sha256")
        if value:
            return value[0].lower()
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def _metadata(text: str) -> tuple[str, str]:
    message = email.parser.Parser().parsestr(text, headersonly=True)
    name, version = message.get("Name"), message.get("Version")
    if not name or not version:
        raise FirmwareRejected("package metadata without Name or Version")
    return str(name).strip(), str(version).strip()


def check_sha256(download: Path, url: str) -> None:
    """FirmwareRejected when ``url`` carries a checksum the file does not match (reads the
    file, opens nothing inside it: safe before the signature is checked)."""
    wanted = expected_sha256(url)
    if wanted is not None and sha256_of(download) != wanted:
        raise FirmwareRejected("sha256 of the download does not match the URL's")


def is_older(version: str, than: str) -> bool:
    """``version`` < ``than`` by PEP 440; a version PEP 440 cannot read counts as older
    (FirmwareRejected when ``version`` is that one: it cannot be ordered, so not trusted)."""
    try:
        new = Version(version)
    except InvalidVersion:
        raise FirmwareRejected(f"version {version!r} is not a PEP 440 version") from None
    try:
        return new < Version(than)
    except InvalidVersion:
        return False  # the running version is unreadable ("0" when not installed is fine)


def inspect_package(
    download: Path,
    current_version: str,
    url: str = "",
    dist_name: str = DIST_NAME,
    *,
    allow_downgrade: bool = False,
) -> FirmwarePackage:
    """Check a downloaded file and give it its proper name beside it. Opens the archive:
    call it only once the file's signature has been verified.

    Refused: a checksum mismatch (when ``url`` carries one), anything but a wheel or sdist,
    another project than ``dist_name``, an unreadable version, the version running now, and
    (:class:`Downgrade`) an older one unless ``allow_downgrade``.
    """
    check_sha256(download, url)
    if zipfile.is_zipfile(download):
        kind = PackageKind.WHEEL
        with zipfile.ZipFile(download) as wheel:
            names = wheel.namelist()
            meta = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            tags = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/WHEEL", n)]
            if len(meta) != 1 or len(tags) != 1:
                raise FirmwareRejected("a zip file that is not a wheel")
            name, version = _metadata(wheel.read(meta[0]).decode("utf-8", "replace"))
            wheel_info = _metadata_tags(wheel.read(tags[0]).decode("utf-8", "replace"))
        stem = meta[0].split("/")[0].removesuffix(".dist-info")
        proper = f"{stem}-{wheel_info}.whl"
    elif tarfile.is_tarfile(download):
        kind = PackageKind.SDIST
        with tarfile.open(download) as sdist:
            infos = [m for m in sdist.getmembers() if re.fullmatch(r"[^/]+/PKG-INFO", m.name)]
            if len(infos) != 1:
                raise FirmwareRejected("a tar file that is not an sdist")
            member = sdist.extractfile(infos[0])
            if member is None:
                raise FirmwareRejected("an sdist whose PKG-INFO is not a file")
            name, version = _metadata(member.read().decode("utf-8", "replace"))
        proper = f"{infos[0].name.split('/')[0]}.tar.gz"
    else:
        raise FirmwareRejected("neither a wheel nor an sdist")
    if canonical(name) != canonical(dist_name):
        raise FirmwareRejected(f"a package of {name!r}, not of {dist_name}")
    if not _VERSION.fullmatch(version):
        raise FirmwareRejected(f"unusable version {version!r}")
    if version == current_version:
        raise FirmwareRejected(f"version {version} is the one running")
    if not allow_downgrade and is_older(version, current_version):
        raise Downgrade(f"version {version} is older than the running {current_version}")
    if "/" in proper or proper.startswith("."):
        raise FirmwareRejected("an unusable file name")
    target = download.with_name(proper)
    if target != download:
        download.replace(target)
    return FirmwarePackage(name, version, kind, target)


def _metadata_tags(text: str) -> str:
    message = email.parser.Parser().parsestr(text, headersonly=True)
    tags = message.get_all("Tag") or []
    if not tags:
        raise FirmwareRejected("a wheel without tags")
    # one tag is enough for pip's file-name check; several compress to "py2.py3-none-any"
    pythons = sorted({t.split("-")[0] for t in tags})
    rest = str(tags[0]).split("-", 1)[1]
    return f"{'.'.join(pythons)}-{rest}"


class Installer(Protocol):
    """Installs a checked package beside the running version (blocking, worker thread)."""

    def install(self, package: FirmwarePackage) -> Path:
        """Install, check and make it current; returns where it went. Raises InstallFailed
        leaving the running version current."""
        ...

    def prepare_restart(self) -> None:
        """Make the coming re-exec start the current version."""
        ...

    def confirm(self) -> str | None:
        """The running version works (it registered with the CSMS): end its trial; returns
        the version confirmed, None when none was on trial."""
        ...


@runtime_checkable
class PackageInspector(Protocol):
    """An installer that checks downloads itself (the simulated one takes any file)."""

    def inspect(
        self, download: Path, current_version: str, url: str = "", *, allow_downgrade: bool
    ) -> FirmwarePackage:
        """Like :func:`inspect_package`: the checked package, or FirmwareRejected."""
        ...


@runtime_checkable
class VersionReporter(Protocol):
    """An installer that knows which version runs (the simulated one records it)."""

    def running_version(self) -> str | None:
        """The running version; None: the installed distribution's."""
        ...


def switch_link(root: Path, name: str, target: str) -> None:
    """Point ``root/name`` at ``target`` atomically (a new link renamed over the old)."""
    temporary = root / f".{name}.new"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(target)
    temporary.replace(root / name)


def rollback(root: Path) -> str | None:
    """Make ``previous`` current again and return it; without one, remove ``current`` so the
    venv's own version runs ("venv"); None when there was nothing to roll back."""
    previous = root / PREVIOUS
    current = root / CURRENT
    if previous.is_symlink():
        version = str(previous.readlink())
        switch_link(root, CURRENT, version)
        previous.unlink()
        return version
    if current.is_symlink():
        current.unlink()
        return "venv"
    return None


def start_trial(root: Path, version: str) -> None:
    """``version`` has just become current: on trial until :func:`confirm`."""
    _write_trial(root, version, 0)


def _write_trial(root: Path, version: str, starts: int) -> None:
    temporary = root / f".{TRIAL}.new"
    temporary.write_text(f"{version} {starts}\n")
    temporary.replace(root / TRIAL)


def confirm(root: Path) -> str | None:
    """End the trial of the current version (it works); returns it, None without a trial."""
    trial = root / TRIAL
    try:
        version = trial.read_text().split()[0]
    except (OSError, IndexError):
        return None
    trial.unlink(missing_ok=True)
    return version


def venv_version(dist_name: str = DIST_NAME) -> str | None:
    """The version installed in this interpreter's environment (the guard runs without
    ``PYTHONPATH``: the venv's own), None when it is not installed."""
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None


def retire_stale(root: Path, installed: str | None) -> str | None:
    """Remove ``current`` (and ``previous`` and the trial) when the over-the-air version it
    names is not newer than ``installed``, the venv's own: the venv was upgraded since
    (``deploy/install.sh`` run again), and an older ``current`` would run instead of it.
    Returns what it did, None when nothing was stale."""
    current = root / CURRENT
    if installed is None or not current.is_symlink():
        return None
    version = str(current.readlink())
    try:
        if Version(version) > Version(installed):
            return None
    except InvalidVersion:
        pass  # an unreadable version cannot be shown to be newer: the venv's runs
    for name in (CURRENT, PREVIOUS, TRIAL):
        (root / name).unlink(missing_ok=True)
    return f"firmware {version} is not newer than the installed {installed}: the installed runs"


def guard(
    root: Path,
    python: str = sys.executable,
    max_starts: int = MAX_TRIAL_STARTS,
    installed: str | None = None,
) -> str:
    """Before each start of the service (``ExecStartPre``): retire an over-the-air version
    the venv has overtaken (:func:`retire_stale`; ``installed`` None: the venv's version);
    count a start of a version on trial; roll back when it started ``max_starts`` times
    without confirming, or when the controller no longer imports from it. Returns what it
    did (one line for the journal)."""
    stale = retire_stale(root, installed if installed is not None else venv_version())
    if stale is not None:
        return stale
    trial = root / TRIAL
    try:
        version, starts_text = trial.read_text().split()[:2]
        starts = int(starts_text)
    except (OSError, ValueError):
        return "no firmware on trial"
    current = root / CURRENT
    if not current.is_symlink() or str(current.readlink()) != version:
        trial.unlink(missing_ok=True)
        return f"trial of {version} is stale: ended"
    starts += 1
    problem = None
    if starts > max_starts:
        problem = f"{max_starts} starts without registering"
    else:
        try:
            import_check(current, python)
        except InstallFailed as exc:
            problem = str(exc)
    if problem is not None:
        back = rollback(root)
        trial.unlink(missing_ok=True)
        return f"firmware {version} rolled back to {back}: {problem}"
    _write_trial(root, version, starts)
    return f"firmware {version} on trial: start {starts} of {max_starts}"


def run_checked(args: list[str], what: str, timeout_s: float, path: Path | None) -> None:
    """Run a command (``PYTHONPATH=path`` when given); InstallFailed unless it exits 0."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    env.pop("PYTHONHOME", None)
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallFailed(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InstallFailed(f"{what} exited {done.returncode}: {' | '.join(tail)}")


def import_check(path: Path, python: str = sys.executable) -> None:
    """The controller imports from ``path`` in a fresh interpreter (InstallFailed if not).

    ``-P``: the working directory does not go first on sys.path (it could hold another
    controller)."""
    check = (
        f"{SMOKE_IMPORTS}; import controller, pathlib, sys; "
        f"sys.exit(0 if pathlib.Path(controller.__file__).resolve()"
        f".is_relative_to(pathlib.Path({str(path.resolve())!r})) else 3)"
    )
    try:
        run_checked([python, "-P", "-c", check], "import check", SMOKE_TIMEOUT_S, path)
    except InstallFailed as exc:
        raise VerificationFailed(str(exc)) from None


class PipTargetInstaller:
    """``pip install --no-deps --target <root>/<version>`` with this interpreter."""

    def __init__(self, root: Path, python: str = sys.executable) -> None:
        self.root = root
        self._python = python

    def install(self, package: FirmwarePackage) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / package.version
        staging = self.root / f".{package.version}.installing"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            self._install_into(staging, package)
        except InstallFailed:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        current = self.root / CURRENT
        if current.is_symlink() and str(current.readlink()) != package.version:
            switch_link(self.root, PREVIOUS, str(current.readlink()))
        switch_link(self.root, CURRENT, package.version)
        start_trial(self.root, package.version)
        self._prune()
        return final

    def confirm(self) -> str | None:
        return confirm(self.root) if self.root.is_dir() else None

    def _install_into(self, staging: Path, package: FirmwarePackage) -> None:
        run_checked(
            [
                self._python,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-index",
                "--disable-pip-version-check",
                "--no-input",
                "--target",
                str(staging),
                str(package.path),
            ],
            "pip install",
            PIP_TIMEOUT_S,
            None,
        )
        import_check(staging, self._python)

    def _prune(self) -> None:
        """Remove versions that are neither current nor previous (and failed stagings)."""
        keep = {
            str((self.root / link).readlink())
            for link in (CURRENT, PREVIOUS)
            if (self.root / link).is_symlink()
        }
        for entry in self.root.iterdir():
            if entry.is_dir() and not entry.is_symlink() and entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)

    def prepare_restart(self) -> None:
        """``PYTHONPATH`` of this process (inherited by the re-exec) starts with current."""
        current = str(self.root / CURRENT)
        parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([current, *(p for p in parts if p != current)])


def main(argv: list[str] | None = None) -> int:
    """``python -m controller.firmware_install guard <state_dir>/firmware``: for the systemd
    unit's ``ExecStartPre`` (run with the venv's own code: ``env -u PYTHONPATH``). Prints what
    it did; always exits 0 so that a start is never blocked by it."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "guard":
        print("usage: python -m controller.firmware_install guard FIRMWARE_DIR", file=sys.stderr)
        return 2
    try:
        print(guard(Path(args[1])))
    except OSError as exc:
        print(f"firmware guard: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
