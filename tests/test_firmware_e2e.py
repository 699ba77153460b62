"""Firmware and diagnostics end to end: the real controller (`picharge run --sim`) against the
loopback CSMS. GetDiagnostics uploads the controller's own log file from its state directory;
UpdateFirmware installs a real wheel, signed by the root the operator configured, with pip
beside the running version, switches to it and asks for the restart that re-execs into it
(``sim_firmware=False``: ``--sim`` itself simulates the install step, see
test_sim_contract.py). The refusals of untrusted firmware end to end are in
test_firmware_trust_e2e.py."""

from __future__ import annotations

import io
import logging
import os
import tarfile
from pathlib import Path

import pytest
from ocpp.v16 import call

from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from tests.support.file_servers import HttpFiles
from tests.support.firmware_packages import build_wheel
from tests.support.firmware_rig import now_iso
from tests.support.firmware_signing import make_signer, signed_files
from tests.support.sim_app import controller
from tests.support.wait import until


@pytest.fixture(autouse=True)
def outside_systemd(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The controller logs to its file (not the journal), INFO and up; PYTHONPATH restored."""
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    caplog.set_level(logging.INFO)


async def test_get_diagnostics_uploads_the_controllers_own_log(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        with HttpFiles() as server:
            mark = rig.mark()
            answer = await rig.cp_call(call.GetDiagnostics(location=f"{server.base}/diag/"))
            await csms.wait_for(
                "DiagnosticsStatusNotification", lambda p: p["status"] == "Uploaded", after=mark
            )
    [sent] = server.uploads
    name, archive = sent.form_file()
    assert name == answer.file_name
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile("picharge.log")
        assert member is not None
        text = member.read().decode()
    assert "BootNotification accepted" in text
    assert (tmp_path / "state" / "logs" / "picharge.log").exists()


async def test_update_firmware_installs_beside_and_restarts_into_the_new_version(
    csms: LocalCsms, tmp_path: Path
) -> None:
    signer = make_signer(tmp_path / "release")
    marker = tmp_path / "the new version ran"
    wheel = build_wheel("9.9.9", marker=marker)[1]
    ocpp = {"firmware_signing_ca": str(signer.ca_file)}
    async with controller(csms, tmp_path, ocpp=ocpp, sim_firmware=False) as rig:
        with HttpFiles(files=signed_files(signer, {"/picharge.whl": wheel})) as server:
            mark = rig.mark()
            request = call.UpdateFirmware(
                location=f"{server.base}/picharge.whl", retrieve_date=now_iso()
            )
            await rig.cp_call(request)
            await csms.wait_for(
                "FirmwareStatusNotification",
                lambda p: p["status"] in ("Installing", "InstallationFailed", "DownloadFailed"),
                after=mark,
                timeout_s=30,
            )
        await until(
            lambda: (
                rig.app.supervisor is not None
                and rig.app.supervisor.restart_requested is ResetKind.HARD
            ),
            timeout_s=30,
        )
        sent = [r.payload["status"] for r in csms.received[mark:] if r.action.startswith("Firm")]
        assert sent == ["Downloading", "Downloaded", "Installing"]  # Installed: after restart
    firmware = tmp_path / "state" / "firmware"
    assert str((firmware / "current").readlink()) == "9.9.9"
    assert (firmware / "9.9.9" / "picharge-9.9.9.dist-info" / "METADATA").exists()
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(firmware / "current")
    assert (firmware / "trial").read_text() == "9.9.9 0\n"
    assert marker.exists()  # its code ran (the import check): the marker proves what it can
    # the restarted charger registers: trial over
    async with controller(csms, tmp_path, ocpp=ocpp, sim_firmware=False):
        await csms.wait_for(
            "FirmwareStatusNotification", lambda p: p["status"] == "Installed", after=mark
        )
    assert not (firmware / "trial").exists()
