"""OCPP 2.0.1 firmware updates (issue 14, block L): the whole controller on simulated
hardware (``--sim`` simulates only the install step: the download, the signing
certificate's chain and the signature are checked for real) against the bundled CSMS,
which fails the test on any message that breaks the 2.0.1 schemas.

L01 (secure update): UpdateFirmware carries the signing certificate and the signature; the
certificate must chain to a root the operator configured (``[ocpp] firmware_signing_ca``),
the same rule as 1.6's SignedUpdateFirmware, so a ManufacturerRootCertificate the CSMS
installed vouches for nothing unless the operator allows it. L02 (without them): the
package's detached signature decides, as for a 1.6 plain update. Every step goes to the
CSMS as FirmwareStatusNotification with the requestId, and the boot into the new version
says FirmwareUpdate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from tests.support.file_servers import HttpFiles
from tests.support.firmware_packages import build_wheel
from tests.support.firmware_rig import now_iso
from tests.support.firmware_signing import Signer, make_signer, signed_files
from tests.support.sim_app import AppRig, controller

V201 = {"version": "2.0.1"}
FINAL = {"Installed", "InstallationFailed", "DownloadFailed", "InvalidSignature"}
VERSION = "9.9.9"


@pytest.fixture(name="release")
def release_fixture(tmp_path: Path) -> Signer:
    """The operator's release signer: its root is ``[ocpp] firmware_signing_ca``."""
    return make_signer(tmp_path / "release")


def trusting(release: Signer, **more: Any) -> dict[str, Any]:
    return {**V201, "firmware_signing_ca": str(release.ca_file), **more}


def update(request_id: int, location: str, signer: Signer | None, data: bytes, **kw: Any) -> Any:
    """UpdateFirmware for ``location``, signed over ``data`` by ``signer`` (None: L02)."""
    firmware: dict[str, Any] = {"location": location, "retrieve_date_time": now_iso()}
    if signer is not None:
        firmware["signing_certificate"] = signer.certificate_pem
        firmware["signature"] = signer.signature(data)
    return call.UpdateFirmware(request_id=request_id, firmware=firmware, **kw)


def statuses(rig: AppRig, after: int) -> list[str]:
    return [p["status"] for p in rig.sent("FirmwareStatusNotification", after)]


async def ended(rig: AppRig, after: int) -> list[str]:
    """Every FirmwareStatusNotification status from ``after`` on, once a final one came."""
    await rig.csms.wait_for(
        "FirmwareStatusNotification", lambda p: p["status"] in FINAL, after=after, timeout_s=30
    )
    return statuses(rig, after)


async def reached(rig: AppRig, status: str, after: int) -> dict[str, Any]:
    """The first FirmwareStatusNotification of ``status`` from ``after`` on."""
    return await rig.csms.wait_for(
        "FirmwareStatusNotification", lambda p: p["status"] == status, after=after, timeout_s=30
    )


async def security_event(rig: AppRig, kind: str, after: int) -> dict[str, Any]:
    return await rig.csms.wait_for(
        "SecurityEventNotification", lambda p: p["type"] == kind, after=after
    )


def simulated_install(state: Path) -> Path:
    """Where ``--sim``'s installer records an installed version."""
    return state / "firmware" / "simulated.json"


# --- L01: the whole sequence and the boot after it ----------------------------------------


async def test_a_signed_update_reports_every_step_and_the_next_boot_says_firmware_update(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    state = tmp_path / "state"
    _, wheel = build_wheel(VERSION)
    ocpp = trusting(release)
    async with controller(csms, tmp_path, ocpp=ocpp, state_dir=state) as rig:
        with HttpFiles(files={"/picharge.whl": wheel}) as server:
            mark = rig.mark()
            request = update(7, f"{server.base}/picharge.whl", release, wheel)
            answer = await rig.cp_call(request)
            kind = await asyncio.wait_for(asyncio.shield(rig.task), 30)
        sent = rig.sent("FirmwareStatusNotification", mark)
    assert (answer.status, kind) == ("Accepted", ResetKind.HARD)
    assert [p["status"] for p in sent] == [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "InstallRebooting",
    ]
    assert {p["requestId"] for p in sent} == {7}

    mark = rig.mark()
    async with controller(csms, tmp_path, ocpp=ocpp, state_dir=state) as rig:
        boot = await csms.wait_for("BootNotification", after=mark)
        installed = await reached(rig, "Installed", mark)
        updated = await security_event(rig, "FirmwareUpdated", mark)
        idle_mark = rig.mark()
        trigger = call.TriggerMessage(requested_message="FirmwareStatusNotification")
        assert (await rig.cp_call(trigger)).status == "Accepted"
        idle = await csms.wait_for("FirmwareStatusNotification", after=idle_mark)
    assert boot["reason"] == "FirmwareUpdate"
    assert boot["chargingStation"]["firmwareVersion"] == f"picharge-{VERSION}"
    assert installed["requestId"] == 7
    assert VERSION in updated["techInfo"]
    assert idle == {"status": "Idle"}

    mark = rig.mark()  # the update is over: the boot after is a power-up again
    async with controller(csms, tmp_path, ocpp=ocpp, state_dir=state):
        boot = await csms.wait_for("BootNotification", after=mark)
    assert boot["reason"] == "PowerUp"


async def test_a_package_whose_signature_does_not_match_is_refused_and_nothing_installed(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    _, wheel = build_wheel(VERSION)
    async with controller(csms, tmp_path, ocpp=trusting(release)) as rig:
        with HttpFiles(files={"/picharge.whl": wheel}) as server:
            mark = rig.mark()
            request = update(8, f"{server.base}/picharge.whl", release, b"another package")
            answer = await rig.cp_call(request)
            sent = await ended(rig, mark)
            event = await security_event(rig, "InvalidFirmwareSignature", mark)
        assert rig.app.supervisor is not None
        assert rig.app.supervisor.restart_requested is None
    assert answer.status == "Accepted"  # the certificate is trusted; the file is not
    assert sent == ["Downloading", "Downloaded", "InvalidSignature"]
    assert "signature" in event["techInfo"]
    assert not simulated_install(tmp_path / "state").exists()


async def test_a_later_retrieve_and_install_time_are_scheduled_and_reported(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    _, wheel = build_wheel(VERSION)
    async with controller(csms, tmp_path, ocpp=trusting(release)) as rig:
        with HttpFiles(files={"/picharge.whl": wheel}) as server:
            mark = rig.mark()
            request = update(12, f"{server.base}/picharge.whl", release, wheel)
            request.firmware["retrieve_date_time"] = now_iso(2.0)
            request.firmware["install_date_time"] = now_iso(2.5)
            answer = await rig.cp_call(request)
            scheduled = await reached(rig, "DownloadScheduled", mark)
            assert server.requests == []  # not before its time
            await reached(rig, "InstallRebooting", mark)
    assert answer.status == "Accepted"
    assert scheduled["requestId"] == 12
    assert statuses(rig, mark) == [
        "DownloadScheduled",
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "InstallScheduled",
        "Installing",
        "InstallRebooting",
    ]


# --- the operator's trust: a CSMS cannot make its own signer trusted ---------------------


@pytest.mark.parametrize("operator_allows", [False, True], ids=["default", "trust-manufacturer"])
async def test_a_manufacturer_root_installed_by_the_csms_vouches_only_if_the_operator_allows(
    csms: LocalCsms, tmp_path: Path, release: Signer, operator_allows: bool
) -> None:
    csms_signer = make_signer(tmp_path / "csms", name="csms firmware")
    csms_root = csms_signer.ca_file.read_text()
    _, wheel = build_wheel(VERSION)
    ocpp = trusting(release, firmware_trust_manufacturer_roots=operator_allows)
    async with controller(csms, tmp_path, ocpp=ocpp) as rig:
        install = call.InstallCertificate("ManufacturerRootCertificate", csms_root)
        assert (await rig.cp_call(install)).status == "Accepted"  # stored: it may be listed
        with HttpFiles(files={"/picharge.whl": wheel}) as server:
            mark = rig.mark()
            request = update(9, f"{server.base}/picharge.whl", csms_signer, wheel)
            answer = await rig.cp_call(request)
            if operator_allows:
                await reached(rig, "SignatureVerified", mark)
            else:
                event = await security_event(rig, "InvalidFirmwareSigningCertificate", mark)
                assert server.requests == []  # refused before a byte was fetched
                assert statuses(rig, mark) == []
    if operator_allows:
        assert answer.status == "Accepted"
    else:
        assert answer.status == "InvalidCertificate"
        assert "root" in event["techInfo"] or "chain" in event["techInfo"], event


# --- L02 and the download's retries ------------------------------------------------------


@pytest.mark.parametrize("detached", [True, False], ids=["detached-signature", "unsigned"])
async def test_without_a_signing_certificate_the_detached_signature_decides(
    csms: LocalCsms, tmp_path: Path, release: Signer, detached: bool
) -> None:
    _, wheel = build_wheel(VERSION)
    files = {"/picharge.whl": wheel}
    served = signed_files(release, files) if detached else files
    async with controller(csms, tmp_path, ocpp=trusting(release)) as rig:
        with HttpFiles(files=served) as server:
            mark = rig.mark()
            answer = await rig.cp_call(update(10, f"{server.base}/picharge.whl", None, wheel))
            if detached:
                await reached(rig, "InstallRebooting", mark)
                sent = statuses(rig, mark)
            else:
                sent = await ended(rig, mark)
                await security_event(rig, "InvalidFirmwareSignature", mark)
    assert answer.status == "Accepted"
    if detached:
        assert sent == [
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "Installing",
            "InstallRebooting",
        ]
    else:
        assert sent == ["Downloading", "Downloaded", "InvalidSignature"]
        assert not simulated_install(tmp_path / "state").exists()


async def test_a_failing_download_is_tried_retries_more_times_then_fails(
    csms: LocalCsms, tmp_path: Path, release: Signer
) -> None:
    async with controller(csms, tmp_path, ocpp=trusting(release)) as rig:
        with HttpFiles(errors={"/gone.whl": 503}) as server:
            mark = rig.mark()
            request = update(
                11, f"{server.base}/gone.whl", release, b"", retries=2, retry_interval=1
            )
            answer = await rig.cp_call(request)
            sent = await ended(rig, mark)
    assert answer.status == "Accepted"
    assert sent == ["Downloading", "DownloadFailed"]
    assert server.requests == ["GET /gone.whl"] * 3
    assert {p["requestId"] for p in rig.sent("FirmwareStatusNotification", mark)} == {11}
