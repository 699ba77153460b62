"""UpdateFirmware over the OCPP 1.6 adapter: a picharge package fetched from real local HTTP
and FTP servers at retrieveDate, with retries, checked, installed by a pluggable installer and
restarted into, with each FirmwareStatusNotification; failures end in DownloadFailed or
InstallationFailed and leave the running version alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.connector_types import StopReason
from controller.domain import ResetKind
from controller.firmware_install import FirmwarePackage, InstallFailed
from controller.ocpp16 import Ocpp16Adapter
from controller.ocpp16.firmware import installed_version
from controller.ocpp16.keys import OcppConfig
from controller.storage import Storage
from tests.csms import ACCEPTED_TAG, MakeCsms, make_csms_fixture  # noqa: F401
from tests.test_diagnostics_support import FtpFiles, HttpFiles, closed_port
from tests.test_ocpp16_support import CP_ID, FAST, FakeControl, Rig, until

FINAL = {"DownloadFailed", "Installed", "InstallationFailed"}
OK = ["Downloading", "Downloaded", "Installing", "Installed"]
#: Modules the installer's import check loads from a new version.
MODULES = (
    "controller/__init__.py",
    "controller/cli.py",
    "controller/app.py",
    "controller/ocpp16/__init__.py",
    "controller/ocpp16/adapter.py",
    "drivers/__init__.py",
    "drivers/base.py",
)


def build_wheel(
    version: str = "9.9.9", name: str = "picharge", broken: bool = False
) -> tuple[str, bytes]:
    """A tiny real wheel of ``name``: (file name, bytes); ``broken``: cli.py fails to import."""
    dist = f"{name}-{version}.dist-info"
    files = {m: f"VERSION = {version!r}\n" for m in MODULES}
    if broken:
        files["controller/cli.py"] = "raise ImportError('this firmware is broken')\n"
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return f"{name}-{version}-py3-none-any.whl", data.getvalue()


@dataclass
class FakeInstaller:
    """Records what it is given; fails with ``failure`` when set."""

    installed: list[FirmwarePackage] = field(default_factory=list)
    failure: str | None = None
    restarts: int = 0
    confirmed: int = 0

    def install(self, package: FirmwarePackage) -> Path:
        if self.failure is not None:
            raise InstallFailed(self.failure)
        assert package.path.exists()
        self.installed.append(package)
        return package.path.parent

    def prepare_restart(self) -> None:
        self.restarts += 1

    def confirm(self) -> str | None:
        self.confirmed += 1
        return None


@dataclass
class FwRig:
    rig: Rig
    installer: FakeInstaller


MakeFwRig = Callable[..., Awaitable[FwRig]]


@pytest.fixture(name="make_fw_rig")
async def make_fw_rig_fixture(make_csms: MakeCsms, tmp_path: Path) -> AsyncIterator[MakeFwRig]:
    rigs: list[Rig] = []

    async def make() -> FwRig:
        csms = await make_csms()
        storage = await Storage.open(tmp_path / "state")
        config = OcppConfig(storage, number_of_connectors=1)
        await config.load()
        control = FakeControl((1,))
        installer = FakeInstaller()
        adapter = Ocpp16Adapter(
            url=csms.url,
            chargepoint_id=CP_ID,
            vendor="picharge",
            model="picharge-pi",
            serial="SN-1",
            firmware_version="0.1.0",
            control=control,
            config=config,
            storage=storage,
            timing=FAST,
            firmware_installer=installer,
        )
        control.link = adapter
        task = asyncio.create_task(adapter.run(), name="adapter")
        rig = Rig(csms, adapter, control, config, storage, task)
        rigs.append(rig)
        await rig.registered()
        return FwRig(rig, installer)

    yield make
    for rig in rigs:
        await rig.stop_adapter()
        await rig.storage.close()


def now_iso(offset_s: float = 0.0) -> str:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset_s)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def update(rig: Rig, location: str, offset_s: float = 0.0, **kwargs: Any) -> int:
    """Send UpdateFirmware; returns the mark in the CSMS's received list from before it."""
    mark = len(rig.csms.received)
    request = call.UpdateFirmware(location=location, retrieve_date=now_iso(offset_s), **kwargs)
    await rig.csms.call(CP_ID, request)
    return mark


async def statuses(rig: Rig, after: int, final: set[str] = FINAL) -> list[str]:
    await rig.csms.wait_for(
        "FirmwareStatusNotification", lambda p: p["status"] in final, after=after, timeout_s=8
    )
    return [
        r.payload["status"]
        for r in rig.csms.received[after:]
        if r.action == "FirmwareStatusNotification"
    ]


async def test_a_wheel_over_http_is_installed_and_the_charger_restarts_into_it(
    make_fw_rig: MakeFwRig,
) -> None:
    fw = await make_fw_rig()
    rig = fw.rig
    name, wheel = build_wheel()
    with HttpFiles(files={"/fw/latest": wheel}) as server:
        mark = await update(rig, f"{server.base}/fw/latest")
        assert await statuses(rig, mark) == OK
    [package] = fw.installer.installed
    assert (package.name, package.version, package.path.name) == ("picharge", "9.9.9", name)
    await until(lambda: rig.control.named("reset") == [(ResetKind.HARD,)])
    assert fw.installer.restarts == 1
    assert fw.installer.confirmed == 1  # at the first registration, once
    after = len(rig.csms.received)
    trigger = call.TriggerMessage(requested_message="FirmwareStatusNotification")
    assert (await rig.csms.call(CP_ID, trigger)).status == "Accepted"
    assert await statuses(rig, after, {"Idle"}) == ["Idle"]


async def test_a_wheel_over_ftp_with_a_matching_checksum_is_installed(
    make_fw_rig: MakeFwRig, tmp_path: Path
) -> None:
    fw = await make_fw_rig()
    root = tmp_path / "ftp"
    root.mkdir()
    name, wheel = build_wheel("9.9.10")
    (root / name).write_bytes(wheel)
    digest = hashlib.sha256(wheel).hexdigest()
    with FtpFiles(root) as ftp:
        mark = await update(fw.rig, ftp.url(f"/{name}#sha256={digest}"))
        assert await statuses(fw.rig, mark) == OK
    assert [p.version for p in fw.installer.installed] == ["9.9.10"]


async def test_the_download_waits_for_the_retrieve_date(make_fw_rig: MakeFwRig) -> None:
    fw = await make_fw_rig()
    _, wheel = build_wheel()
    with HttpFiles(files={"/w": wheel}) as server:
        mark = await update(fw.rig, f"{server.base}/w", offset_s=0.6)
        await asyncio.sleep(0.3)
        assert server.requests == [] and "FirmwareStatusNotification" not in fw.rig.actions(mark)
        assert await statuses(fw.rig, mark) == OK


async def test_a_failing_server_is_retried_at_the_retry_interval(make_fw_rig: MakeFwRig) -> None:
    fw = await make_fw_rig()
    _, wheel = build_wheel()
    with HttpFiles(files={"/w": wheel}, fail_next=2) as server:
        mark = await update(fw.rig, f"{server.base}/w", retries=2, retry_interval=1)
        assert await statuses(fw.rig, mark) == OK
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "problem", ["404", "refused", "other project", "same version", "bad checksum", "not a wheel"]
)
async def test_download_failed_after_the_retries_and_nothing_installed(
    make_fw_rig: MakeFwRig, problem: str
) -> None:
    fw = await make_fw_rig()
    files = {
        "/other": build_wheel(name="someone-else")[1],
        "/same": build_wheel(installed_version())[1],
        "/good": build_wheel()[1],
        "/text": b"<html>not found</html>",
    }
    with HttpFiles(files=files) as server:
        location = {
            "404": f"{server.base}/missing",
            "refused": f"http://127.0.0.1:{closed_port()}/w",
            "other project": f"{server.base}/other",
            "same version": f"{server.base}/same",
            "bad checksum": f"{server.base}/good#sha256={'0' * 64}",
            "not a wheel": f"{server.base}/text",
        }[problem]
        mark = await update(fw.rig, location, retries=1, retry_interval=0)
        assert await statuses(fw.rig, mark) == ["Downloading", "DownloadFailed"]
    assert len(server.requests) == (0 if problem == "refused" else 2)
    assert fw.installer.installed == [] and fw.rig.control.named("reset") == []


async def test_a_failed_installation_reports_it_and_does_not_restart(
    make_fw_rig: MakeFwRig,
) -> None:
    fw = await make_fw_rig()
    fw.installer.failure = "import check exited 1"
    with HttpFiles(files={"/w": build_wheel()[1]}) as server:
        mark = await update(fw.rig, f"{server.base}/w")
        assert await statuses(fw.rig, mark) == [
            "Downloading",
            "Downloaded",
            "Installing",
            "InstallationFailed",
        ]
    await asyncio.sleep(0.1)
    assert fw.rig.control.named("reset") == [] and fw.installer.restarts == 0


async def test_installing_waits_until_the_running_transaction_ends(
    make_fw_rig: MakeFwRig,
) -> None:
    fw = await make_fw_rig()
    rig = fw.rig
    tx = rig.control.start(1, ACCEPTED_TAG, 100.0)
    with HttpFiles(files={"/w": build_wheel()[1]}) as server:
        mark = await update(rig, f"{server.base}/w")
        await statuses(rig, mark, {"Downloaded"})
        await asyncio.sleep(0.3)
        assert "Installing" not in await statuses(rig, mark, {"Downloaded"})
        rig.control.stop(tx, 200.0, StopReason.LOCAL)
        assert await statuses(rig, mark) == OK


def test_firmware_management_is_a_supported_profile() -> None:
    from controller.ocpp16.keys import SUPPORTED_PROFILES

    assert "FirmwareManagement" in SUPPORTED_PROFILES
