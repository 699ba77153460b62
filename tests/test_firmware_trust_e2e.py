"""Firmware only from a trusted signer, end to end: the real controller (`picharge run --sim`)
with its real installer (pip beside the running version, then an import check that runs the
new code) against the bundled CSMS. Every package here would leave a marker file if any of
its code ever ran; for each refusal the marker must not exist afterwards, nothing may be
installed, the CSMS hears the refusal (FirmwareStatusNotification or
SignedFirmwareStatusNotification) and, for a package, the security event
InvalidFirmwareSignature. The success path (the same marker appearing) is
test_firmware_e2e.py's."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.local_csms import LocalCsms
from tests.support.file_servers import HttpFiles
from tests.support.firmware_packages import build_wheel
from tests.support.firmware_rig import now_iso
from tests.support.firmware_signing import Signer, make_signer, signed_files
from tests.support.sim_app import AppRig, controller

FINAL = {"Installed", "InstallationFailed", "DownloadFailed", "InvalidSignature"}


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller logs to stderr and its file; PYTHONPATH restored after a test."""
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


@pytest.fixture(name="release")
def release_fixture(tmp_path: Path) -> Signer:
    """The operator's release signer: its root is ``[ocpp] firmware_signing_ca``."""
    return make_signer(tmp_path / "release")


async def final_status(rig: AppRig, action: str, after: int) -> list[str]:
    """Every status of ``action`` from ``after`` on, once a final one arrived."""
    await rig.csms.wait_for(action, lambda p: p["status"] in FINAL, after=after, timeout_s=30)
    return [p["status"] for p in rig.sent(action, after)]


async def invalid_signature_event(rig: AppRig, after: int) -> dict[str, Any]:
    return await rig.csms.wait_for(
        "SecurityEventNotification",
        lambda p: p["type"] == "InvalidFirmwareSignature",
        after=after,
        timeout_s=10,
    )


def nothing_installed(state: Path, marker: Path) -> None:
    assert not marker.exists(), "the refused package's code ran"
    firmware = state / "firmware"
    assert not (firmware / "current").exists()
    assert not firmware.exists() or list(firmware.iterdir()) == []
    work = state / "tmp"
    assert not work.exists() or list(work.iterdir()) == []  # the download was removed


@pytest.mark.parametrize(
    "problem",
    ["unsigned", "a stranger's signature", "tampered", "older version", "no signing root"],
)
async def test_update_firmware_without_a_trusted_signature_runs_no_code(
    csms: LocalCsms, tmp_path: Path, release: Signer, problem: str
) -> None:
    marker = tmp_path / "refused firmware ran"
    wheel = build_wheel("0.0.1" if problem == "older version" else "9.9.9", marker=marker)[1]
    stranger = make_signer(tmp_path / "stranger", "someone else")
    files = {
        "unsigned": {"/fw.whl": wheel},
        "a stranger's signature": signed_files(stranger, {"/fw.whl": wheel}),
        "tampered": {
            "/fw.whl": wheel,
            "/fw.whl.sig": release.detached(build_wheel("9.9.9")[1]),  # another file's
        },
        "older version": signed_files(release, {"/fw.whl": wheel}),
        "no signing root": signed_files(release, {"/fw.whl": wheel}),
    }[problem]
    ocpp = {} if problem == "no signing root" else {"firmware_signing_ca": str(release.ca_file)}
    async with controller(csms, tmp_path, ocpp=ocpp) as rig:
        with HttpFiles(files=files) as server:
            mark = rig.mark()
            location = f"{server.base}/fw.whl"
            await rig.cp_call(call.UpdateFirmware(location=location, retrieve_date=now_iso()))
            assert await final_status(rig, "FirmwareStatusNotification", mark) == [
                "Downloading",
                "Downloaded",
                "InstallationFailed",
            ]
            await invalid_signature_event(rig, mark)
        assert rig.app.supervisor is not None and rig.app.supervisor.restart_requested is None
    nothing_installed(tmp_path / "state", marker)


async def test_signed_update_firmware_with_a_bad_signature_runs_no_code(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    marker = tmp_path / "refused firmware ran"
    wheel = build_wheel(marker=marker)[1]
    ocpp = {"firmware_signing_ca": str(release.ca_file)}
    async with controller(csms, tmp_path, ocpp=ocpp) as rig:
        with HttpFiles(files={"/fw.whl": wheel}) as server:
            mark = rig.mark()
            request = call.SignedUpdateFirmware(
                request_id=3,
                firmware={
                    "location": f"{server.base}/fw.whl",
                    "retrieveDateTime": now_iso(),
                    "signingCertificate": release.certificate_pem,
                    "signature": release.signature(wheel + b"tampered"),
                },
            )
            assert (await rig.cp_call(request)).status == "Accepted"
            assert await final_status(rig, "SignedFirmwareStatusNotification", mark) == [
                "Downloading",
                "Downloaded",
                "InvalidSignature",
            ]
            await invalid_signature_event(rig, mark)
    nothing_installed(tmp_path / "state", marker)


async def test_a_csms_cannot_vouch_for_firmware_by_installing_its_own_root(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    marker = tmp_path / "refused firmware ran"
    wheel = build_wheel(marker=marker)[1]
    csms_own = make_signer(tmp_path / "csms", "the csms's own")
    ocpp = {"firmware_signing_ca": str(release.ca_file)}
    async with controller(csms, tmp_path, ocpp=ocpp) as rig:
        install = call.InstallCertificate(
            certificate_type="ManufacturerRootCertificate",
            certificate=csms_own.ca_file.read_text(),
        )
        assert (await rig.cp_call(install)).status == "Accepted"
        with HttpFiles(files={"/fw.whl": wheel}) as server:
            mark = rig.mark()
            request = call.SignedUpdateFirmware(
                request_id=4,
                firmware={
                    "location": f"{server.base}/fw.whl",
                    "retrieveDateTime": now_iso(),
                    "signingCertificate": csms_own.certificate_pem,
                    "signature": csms_own.signature(wheel),
                },
            )
            assert (await rig.cp_call(request)).status == "InvalidCertificate"
            await csms.wait_for(
                "SecurityEventNotification",
                lambda p: p["type"] == "InvalidFirmwareSigningCertificate",
                after=mark,
            )
        assert server.requests == []  # not a byte fetched
    nothing_installed(tmp_path / "state", marker)


async def test_a_download_beyond_the_configured_bound_runs_no_code(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    marker = tmp_path / "refused firmware ran"
    wheel = build_wheel(marker=marker)[1] + b"\0" * 70_000
    ocpp = {"firmware_signing_ca": str(release.ca_file), "firmware_max_bytes": 65536}
    async with controller(csms, tmp_path, ocpp=ocpp) as rig:
        with HttpFiles(files=signed_files(release, {"/fw.whl": wheel})) as server:
            mark = rig.mark()
            location = f"{server.base}/fw.whl"
            await rig.cp_call(call.UpdateFirmware(location=location, retrieve_date=now_iso()))
            assert await final_status(rig, "FirmwareStatusNotification", mark) == [
                "Downloading",
                "DownloadFailed",
            ]
    nothing_installed(tmp_path / "state", marker)


async def test_allowing_unsigned_firmware_is_warned_about_at_every_start(
    csms: LocalCsms, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        async with controller(csms, tmp_path, ocpp={"allow_unsigned_firmware": True}):
            pass
    warnings = [r for r in caplog.records if "allow_unsigned_firmware = true" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
