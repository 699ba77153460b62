"""GetLog over the OCPP 1.6 adapter: the diagnostics log of the window and the security log
(events already sent, and from before a restart) packed and uploaded to real local HTTP and
FTP servers, each LogStatusNotification with its requestId, retries, refusals, and a new
request cancelling the running one."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from pathlib import Path

import pytest
from ocpp.v16 import call

from controller.csms.security_events import MAX_HISTORY, SecurityEvent, SecurityEvents
from controller.local_csms import LocalCsms
from controller.storage import Storage
from tests.support.diagnostics import LOG, SECRET, MakeDiagRig, get_log, unpack
from tests.support.file_servers import FtpFiles, HttpFiles
from tests.support.ocpp16_adapter import CP_ID, AdapterRig
from tests.support.security import CP_ID as SECURE_CP_ID
from tests.support.security import PASSWORD, charger
from tests.support.wait import until

FINAL = {"Uploaded", "UploadFailure", "PermissionDenied", "BadMessage", "NotSupportedOperation"}
WINDOW = {"oldestTimestamp": "2026-11-23T10:01:00Z", "latestTimestamp": "2026-11-23T10:20:00Z"}


async def log_statuses(
    csms: LocalCsms, after: int, request_id: int, timeout_s: float = 5.0
) -> list[tuple[str, int | None]]:
    """(status, requestId) of every LogStatusNotification from ``after`` until the request
    ``request_id`` ends."""
    await csms.wait_for(
        "LogStatusNotification",
        lambda p: p["status"] in FINAL and p.get("requestId") == request_id,
        after=after,
        timeout_s=timeout_s,
    )
    return [
        (r.payload["status"], r.payload.get("requestId"))
        for r in csms.received[after:]
        if r.action == "LogStatusNotification"
    ]


async def test_the_diagnostics_log_of_the_window_goes_redacted_to_an_http_server(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    with HttpFiles() as server:
        mark = len(rig.csms.received)
        status, name = await get_log(rig.csms, f"{server.base}/logs/", request_id=7, window=WINDOW)
        assert status == "Accepted"
        assert name is not None and name.startswith(f"{CP_ID}-diagnostics-")
        assert await log_statuses(rig.csms, mark, 7) == [("Uploading", 7), ("Uploaded", 7)]
    [sent] = server.uploads
    filename, archive = sent.form_file()
    assert (sent.path, filename) == ("/logs/", name)
    text = unpack(archive, "picharge.log")
    assert "inside the window" in text and "Traceback" in text
    assert "before the window" not in text and "after the window" not in text
    assert SECRET not in text and "hunter22" not in text
    assert LOG.count("\n") > text.count("\n") > 0


async def test_a_failing_server_is_retried_then_reported_as_upload_failure(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    with HttpFiles(fail_next=99, fail_status=503) as server:
        mark = len(rig.csms.received)
        location = f"{server.base}/u"
        assert (await get_log(rig.csms, location, retries=2, retry_interval=1))[0] == "Accepted"
        assert await log_statuses(rig.csms, mark, 1) == [("Uploading", 1), ("UploadFailure", 1)]
    assert len(server.requests) == 3 and server.uploads == []


async def test_a_server_that_recovers_gets_the_log_on_a_retry(make_diag_rig: MakeDiagRig) -> None:
    rig = await make_diag_rig()
    with HttpFiles(fail_next=1) as server:
        mark = len(rig.csms.received)
        await get_log(rig.csms, f"{server.base}/u", retries=1, retry_interval=0)
        assert await log_statuses(rig.csms, mark, 1) == [("Uploading", 1), ("Uploaded", 1)]
    assert len(server.requests) == 2 and len(server.uploads) == 1


@pytest.mark.parametrize(
    ("status", "reported"),
    [(401, "PermissionDenied"), (403, "PermissionDenied"), (405, "NotSupportedOperation")],
)
async def test_a_refusing_http_server_is_reported_as_such_without_retrying(
    make_diag_rig: MakeDiagRig, status: int, reported: str
) -> None:
    rig = await make_diag_rig()
    with HttpFiles(fail_next=99, fail_status=status) as server:
        mark = len(rig.csms.received)
        await get_log(rig.csms, f"{server.base}/u", retries=3, retry_interval=0)
        assert await log_statuses(rig.csms, mark, 1) == [("Uploading", 1), (reported, 1)]
    assert len(server.requests) == 1  # a retry would be refused the same


async def test_a_wrong_ftp_password_is_permission_denied(
    make_diag_rig: MakeDiagRig, tmp_path: Path
) -> None:
    rig = await make_diag_rig()
    root = tmp_path / "ftp"
    root.mkdir()
    with FtpFiles(root) as ftp:
        mark = len(rig.csms.received)
        await get_log(rig.csms, ftp.url("/", "user:wrong@"), retries=2, retry_interval=0)
        assert await log_statuses(rig.csms, mark, 1) == [("Uploading", 1), ("PermissionDenied", 1)]
    assert list(root.iterdir()) == []


async def test_a_second_request_cancels_the_running_upload(make_diag_rig: MakeDiagRig) -> None:
    rig = await make_diag_rig()
    gate = threading.Event()
    with HttpFiles(gate=gate) as server:
        mark = len(rig.csms.received)
        assert (await get_log(rig.csms, f"{server.base}/a", request_id=1))[0] == "Accepted"
        await until(lambda: len(server.requests) == 1)
        status, name = await get_log(
            rig.csms, f"{server.base}/b", log_type="SecurityLog", request_id=2
        )
        assert status == "AcceptedCanceled" and name is not None and "-security-" in name
        await until(lambda: ("Uploading", 2) in notified(rig, mark))
        gate.set()
        assert await log_statuses(rig.csms, mark, 2) == [
            ("Uploading", 1),
            ("Uploading", 2),
            ("Uploaded", 2),
        ]
        await asyncio.sleep(0.3)  # the cancelled upload's last attempt finishes unheard
    assert notified(rig, mark)[-1] == ("Uploaded", 2)
    assert [u.path for u in server.uploads if u.path == "/b"] == ["/b"]


def notified(rig: AdapterRig, after: int) -> list[tuple[str, int | None]]:
    return [
        (r.payload["status"], r.payload.get("requestId"))
        for r in rig.csms.received[after:]
        if r.action == "LogStatusNotification"
    ]


async def test_a_location_that_is_not_http_or_ftp_is_rejected(make_diag_rig: MakeDiagRig) -> None:
    rig = await make_diag_rig()
    mark = len(rig.csms.received)
    assert await get_log(rig.csms, "mailto:ops@example.com") == ("Rejected", None)
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert "LogStatusNotification" not in rig.actions(mark)


async def test_the_security_log_has_events_sent_already_and_from_before_a_restart(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ftp"
    root.mkdir()
    async with LocalCsms(basic_auth={SECURE_CP_ID: "not-the-chargers-password"}) as csms:
        async with charger(csms, tmp_path, {"password": PASSWORD}):
            await until(lambda: any(a.refused for a in csms.connection_attempts), 5)
            csms.basic_auth = {SECURE_CP_ID: PASSWORD}
            await csms.wait_for(
                "SecurityEventNotification",
                lambda p: p["type"] == "FailedToAuthenticateAtCentralSystem",
                timeout_s=8,
            )
            assert (await csms.call(SECURE_CP_ID, call.Reset(type="Soft"))).status == "Accepted"
            await csms.wait_for(
                "SecurityEventNotification", lambda p: p["type"] == "ResetOrReboot", timeout_s=3
            )
        mark = len(csms.received)
        with FtpFiles(root) as ftp:
            async with charger(csms, tmp_path, {"password": PASSWORD}):
                await csms.wait_for("BootNotification", after=mark, timeout_s=8)
                mark = len(csms.received)
                status, name = await get_log(
                    csms, ftp.url("/"), cp_id=SECURE_CP_ID, log_type="SecurityLog", request_id=3
                )
                assert status == "Accepted" and name is not None
                assert await log_statuses(csms, mark, 3) == [("Uploading", 3), ("Uploaded", 3)]
    text = unpack((root / name).read_bytes(), "security.log")
    lines = text.splitlines()
    refused = [line for line in lines if " FailedToAuthenticateAtCentralSystem: " in line]
    assert refused and "HTTP 401" in refused[0]
    assert any(" ResetOrReboot: Soft reset requested by the CSMS" in line for line in lines)
    assert PASSWORD not in text
    stamps = [dt.datetime.fromisoformat(line.split(" ")[0]) for line in lines]
    assert stamps == sorted(stamps)


async def test_the_history_is_bounded_filtered_by_window_and_kept(tmp_path: Path) -> None:
    now = [dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)]
    storage = await Storage.open(tmp_path)
    try:
        events = SecurityEvents(storage, lambda: now[0])
        for n in range(MAX_HISTORY + 5):
            now[0] += dt.timedelta(seconds=1)
            events.record(SecurityEvent.FAILED_TO_AUTHENTICATE, f"attempt {n}")
        await events.flush()
        again = SecurityEvents(storage, lambda: now[0])
        await again.restore()
    finally:
        await storage.close()
    history = again.history()
    assert len(history) == MAX_HISTORY and history[0]["techInfo"] == "attempt 5"
    assert len(again.pending) < len(history)  # sending and the history are separate
    start = dt.datetime(2026, 11, 23, 12, 0, 10, tzinfo=dt.UTC)
    window = again.history(start, start + dt.timedelta(seconds=2))
    assert [e["techInfo"] for e in window] == ["attempt 9", "attempt 10", "attempt 11"]
