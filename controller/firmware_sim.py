"""The firmware install step of a ``--sim`` run: simulated, so CI can play whole updates.

A CSMS's test suite wants to see the whole firmware status sequence (Downloading,
Downloaded, SignatureVerified, Installing, InstallRebooting, Installed) from the simulated
charger, with whatever file it has at hand. Everything before the install step runs
unchanged: the download with its retries and checksum, the signing certificate's chain and
the file's signature (SignedUpdateFirmware). Only what would run the new code is replaced:
:class:`SimulatedInstaller` records the new version in the state directory instead of
installing it, so the restart that follows re-executes the same code, which then *reports*
the new version (BootNotification's firmwareVersion, and the verdict Installed once it has
registered), as a real update does after its restart.

A file that is a picharge wheel or sdist keeps its version; any other file gets
``sim-<first 12 hex digits of its SHA-256>``, so two different files are two versions.
``failing()`` (``picharge sim fault firmware``) makes the installation fail.

Layout: ``<state_dir>/firmware/simulated.json`` = ``{"version": "...", "trial": bool}``.
Blocking file I/O: the methods run in a worker thread, as every :class:`Installer`'s do.
"""

from __future__ import annotations

import json
import logging
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from controller.firmware_install import (
    FirmwarePackage,
    FirmwareRejected,
    InstallFailed,
    PackageKind,
    expected_sha256,
    inspect_package,
    sha256_of,
)

log = logging.getLogger(__name__)

STATE_FILE = "simulated.json"


class SimulatedInstaller:
    """:class:`~controller.firmware_install.Installer` that records instead of installing;
    also reports the version it recorded (:meth:`running_version`) and checks any file as a
    package (:meth:`inspect`)."""

    def __init__(self, root: Path, failing: Callable[[], bool] = lambda: False) -> None:
        self.root = root
        self._failing = failing

    # --- Installer ---------------------------------------------------------------------------

    def install(self, package: FirmwarePackage) -> Path:
        if self._failing():
            raise InstallFailed("simulated installation failure (picharge sim fault firmware)")
        self._write({"version": package.version, "trial": True})
        log.warning("firmware %s: installation simulated (nothing executed)", package.version)
        return self.root / STATE_FILE

    def prepare_restart(self) -> None:
        """Nothing to switch: the restart runs the same code, which reports the new version."""

    def confirm(self) -> str | None:
        state = self._read()
        if not state.get("trial"):
            return None
        version = str(state["version"])
        self._write({"version": version, "trial": False})
        return version

    # --- what a real installation would show -------------------------------------------------

    def running_version(self) -> str | None:
        """The version the last simulated installation left running; None: none yet."""
        version = self._read().get("version")
        return None if version is None else str(version)

    def inspect(
        self, download: Path, current_version: str, url: str = "", *, allow_downgrade: bool
    ) -> FirmwarePackage:
        """:func:`~controller.firmware_install.inspect_package` for a picharge package; any
        other file becomes version ``sim-<sha256 prefix>`` (no order: never a downgrade).
        The URL's checksum and the version running now are refused as on a real charger."""
        wanted = expected_sha256(url)
        digest = sha256_of(download)
        if wanted is not None and digest != wanted:
            raise FirmwareRejected("sha256 of the download does not match the URL's")
        if zipfile.is_zipfile(download) or tarfile.is_tarfile(download):
            return inspect_package(download, current_version, url, allow_downgrade=allow_downgrade)
        version = f"sim-{digest[:12]}"
        if version == current_version:
            raise FirmwareRejected(f"version {version} is the one running")
        return FirmwarePackage("picharge", version, PackageKind.WHEEL, download)

    # --- the record ----------------------------------------------------------------------------

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads((self.root / STATE_FILE).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("simulated firmware record unreadable (%s): none installed", exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, state: dict[str, object]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.root / STATE_FILE)
