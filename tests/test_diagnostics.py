"""GetDiagnostics over the OCPP 1.6 adapter: the log of the requested window, without secrets,
packed and uploaded to real local HTTP and FTP servers, with retries, and each
DiagnosticsStatusNotification on the way."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.csms.diagnostics import FileLogs, JournalLogs
from controller.file_transfer import TransferError, download, safe_url, upload
from controller.logging_setup import add_log_file, remove_log_file, under_systemd
from tests.support.diagnostics import SECRET, MakeDiagRig
from tests.support.file_servers import FtpFiles, HttpFiles, closed_port
from tests.support.ocpp16_adapter import CP_ID, AdapterRig
from tests.support.wait import until

WINDOW = {"start_time": "2026-11-23T10:01:00Z", "stop_time": "2026-11-23T10:20:00Z"}


async def get_diagnostics(rig: AdapterRig, location: str, **kwargs: Any) -> str | None:
    answer = await rig.csms.call(CP_ID, call.GetDiagnostics(location=location, **kwargs))
    name: str | None = answer.file_name
    return name


async def statuses(
    rig: AdapterRig, after: int, final: set[str], timeout_s: float = 5.0
) -> list[str]:
    """DiagnosticsStatusNotification statuses from ``after`` until one in ``final``."""
    await rig.csms.wait_for(
        "DiagnosticsStatusNotification",
        lambda p: p["status"] in final,
        after=after,
        timeout_s=timeout_s,
    )
    return [
        r.payload["status"]
        for r in rig.csms.received[after:]
        if r.action == "DiagnosticsStatusNotification"
    ]


def unpack(archive: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert tar.getnames() == ["picharge.log"]
        member = tar.extractfile("picharge.log")
        assert member is not None
        return member.read().decode()


async def test_the_log_of_the_window_goes_redacted_to_an_http_server(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    with HttpFiles() as server:
        mark = len(rig.csms.received)
        name = await get_diagnostics(rig, f"{server.base}/upload/", **WINDOW)
        assert name is not None and name.startswith(CP_ID) and name.endswith(".tar.gz")
        assert await statuses(rig, mark, {"Uploaded", "UploadFailed"}) == [
            "Uploading",
            "Uploaded",
        ]
    [sent] = server.uploads
    assert (sent.method, sent.path) == ("POST", "/upload/")
    filename, archive = sent.form_file()
    assert filename == name
    text = unpack(archive)
    assert "inside the window" in text and "failed" in text and "Traceback" in text
    assert "before the window" not in text and "after the window" not in text
    assert SECRET not in text and "hunter22" not in text
    assert "AuthorizationKey=***" in text


async def test_an_upload_to_ftp_lands_in_the_directory_named(
    make_diag_rig: MakeDiagRig, tmp_path: Path
) -> None:
    rig = await make_diag_rig()
    root = tmp_path / "ftp"
    (root / "diag").mkdir(parents=True)
    with FtpFiles(root) as ftp:
        mark = len(rig.csms.received)
        name = await get_diagnostics(rig, ftp.url("/diag/"))
        assert await statuses(rig, mark, {"Uploaded", "UploadFailed"}) == [
            "Uploading",
            "Uploaded",
        ]
    assert name is not None
    text = unpack((root / "diag" / name).read_bytes())
    assert "before the window" in text and "after the window" in text  # no window: all


async def test_a_failing_server_is_retried_at_the_retry_interval(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    with HttpFiles(fail_next=2) as server:
        mark = len(rig.csms.received)
        await get_diagnostics(rig, f"{server.base}/u", retries=2, retry_interval=1)
        assert await statuses(rig, mark, {"Uploaded", "UploadFailed"}) == [
            "Uploading",
            "Uploaded",
        ]
    assert len(server.requests) == 3 and len(server.uploads) == 1


@pytest.mark.parametrize("problem", ["refused", "404"])
async def test_upload_failed_after_the_retries(make_diag_rig: MakeDiagRig, problem: str) -> None:
    rig = await make_diag_rig()
    with HttpFiles(fail_next=99, fail_status=404) as server:
        location = (
            f"http://127.0.0.1:{closed_port()}/u" if problem == "refused" else f"{server.base}/u"
        )
        mark = len(rig.csms.received)
        assert await get_diagnostics(rig, location, retries=1, retry_interval=0) is not None
        assert await statuses(rig, mark, {"Uploaded", "UploadFailed"}) == [
            "Uploading",
            "UploadFailed",
        ]
    assert len(server.requests) == (2 if problem == "404" else 0)


async def test_a_trigger_reports_uploading_while_it_runs_and_idle_after(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    gate = threading.Event()
    with HttpFiles(gate=gate) as server:
        mark = len(rig.csms.received)
        await get_diagnostics(rig, f"{server.base}/u")
        await until(lambda: len(server.requests) == 1)
        assert await get_diagnostics(rig, f"{server.base}/u") is None  # one at a time
        trigger = call.TriggerMessage(requested_message="DiagnosticsStatusNotification")
        assert (await rig.csms.call(CP_ID, trigger)).status == "Accepted"
        await until(
            lambda: (
                [
                    r.payload["status"]
                    for r in rig.csms.received[mark:]
                    if r.action == "DiagnosticsStatusNotification"
                ]
                == ["Uploading", "Uploading"]
            )
        )
        gate.set()
        assert (await statuses(rig, mark, {"Uploaded"}))[-1] == "Uploaded"
        after = len(rig.csms.received)
        assert (await rig.csms.call(CP_ID, trigger)).status == "Accepted"
        assert await statuses(rig, after, {"Idle"}) == ["Idle"]


async def test_a_location_that_is_not_http_or_ftp_gets_no_file(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    mark = len(rig.csms.received)
    assert await get_diagnostics(rig, "mailto:ops@example.com") is None
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert "DiagnosticsStatusNotification" not in rig.actions(mark)


def test_the_journal_is_read_for_the_window_in_epoch_seconds() -> None:
    seen: list[list[str]] = []

    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(args)
        return subprocess.CompletedProcess(args, 0, "2026-11-23T10:05:00+0000 pi picharge: x\n")

    since = dt.datetime(2026, 11, 23, 10, 1, tzinfo=dt.UTC)
    until_ = dt.datetime(2026, 11, 23, 10, 20, tzinfo=dt.UTC)
    assert "picharge: x" in JournalLogs(run=run).collect(since, until_)
    assert seen == [
        [
            "journalctl",
            "-u",
            "picharge",
            "-o",
            "short-iso",
            "--no-pager",
            f"--since=@{int(since.timestamp())}",
            f"--until=@{int(until_.timestamp()) + 1}",
        ]
    ]


def test_a_failing_journalctl_is_an_error_not_an_empty_log() -> None:
    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "No journal files were found.")

    with pytest.raises(OSError, match="No journal files"):
        JournalLogs(run=run).collect(None, None)


def test_rotated_log_files_are_read_oldest_first(tmp_path: Path) -> None:
    (tmp_path / "picharge.log.2").write_text("2026-11-23T09:00:00.000Z INFO a: oldest\n")
    (tmp_path / "picharge.log.1").write_text("2026-11-23T09:30:00.000Z INFO a: older\n")
    (tmp_path / "picharge.log").write_text("2026-11-23T10:00:00.000Z INFO a: newest\n")
    text = FileLogs(tmp_path).collect(None, None)
    assert [line.split(": ")[1] for line in text.splitlines()] == ["oldest", "older", "newest"]


def test_the_log_file_has_utc_timestamps_and_no_secrets(tmp_path: Path) -> None:
    handler = add_log_file(tmp_path / "logs", secrets=[SECRET])
    try:
        logging.getLogger("picharge.test").warning("key is %s, token=abc123", SECRET)
    finally:
        remove_log_file(handler)
    text = (tmp_path / "logs" / "picharge.log").read_text()
    assert SECRET not in text and "abc123" not in text
    stamp = dt.datetime.fromisoformat(text.split("Z ")[0]).replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - stamp).total_seconds()) < 60
    assert handler not in logging.getLogger().handlers


def test_systemd_is_recognised_by_its_invocation_id() -> None:
    assert under_systemd({"INVOCATION_ID": "0123abcd"})
    assert not under_systemd({})


def test_transfers_name_the_problem_without_the_password(tmp_path: Path) -> None:
    url = f"ftp://user:topsecret@127.0.0.1:{closed_port()}/x"
    assert safe_url(url).startswith("ftp://127.0.0.1:")
    with pytest.raises(TransferError) as error:
        download(url, tmp_path / "x")
    assert "topsecret" not in str(error.value)
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(TransferError, match="unsupported scheme"):
        upload("file:///etc/passwd", tmp_path / "f")


async def test_the_authorization_key_never_leaves_in_an_upload(
    make_diag_rig: MakeDiagRig,
) -> None:
    key = "0123456789abcdef0123"  # a whitepaper AuthorizationKey, logged bare by some library
    rig = await make_diag_rig(f"2026-11-23T10:05:00.000Z DEBUG lib: handshake with {key}\n")
    assert await rig.config.change("AuthorizationKey", key) in ("Accepted", "RebootRequired")
    with HttpFiles() as server:
        mark = len(rig.csms.received)
        await get_diagnostics(rig, f"{server.base}/u")
        await statuses(rig, mark, {"Uploaded", "UploadFailed"})
    text = unpack(server.uploads[0].form_file()[1])
    assert "handshake with ***" in text and key not in text
