"""Packing a log and uploading it with retries: what GetDiagnostics and GetLog share.

A request names a location (a directory URL: http, https or ftp), optionally a time window,
retries and retryInterval. :class:`UploadPlan` reads them; :func:`collect_and_upload`
prepares the archive in a worker thread (the caller's ``prepare`` collects, redacts and
packs with :func:`pack`) into a private temporary directory and uploads it
(:mod:`controller.file_transfer`), tried ``1 + retries`` times (retries absent:
:data:`DEFAULT_RETRIES`) ``retryInterval`` seconds apart (absent:
:data:`DEFAULT_RETRY_INTERVAL_S`; scaled like every OCPP interval).

A server that answers with a refusal no retry can change (HTTP 401/403 or FTP 530: the
credentials; HTTP 400 or FTP 500/501: the request; HTTP 405/501 or FTP 502/504: the
operation) ends the upload at once with that :class:`UploadOutcome`; anything else (refused
connection, timeout, 5xx) is retried and ends as :attr:`UploadOutcome.FAILED`.

The coroutines run on the loop thread; ``prepare`` and the transfer in worker threads. A
cancelled upload stops waiting at once, but an attempt already in its worker thread runs to
its end (a socket call cannot be interrupted); its result is dropped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import re
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.csms.calls import CallFailed
from controller.csms.wire import parse_iso
from controller.file_transfer import TransferError, safe_url, upload

log = logging.getLogger(__name__)

#: Tries after the first when the request gives no retries, and seconds between them.
DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL_S = 30

SendCall = Callable[[Any], Awaitable[Any]]
#: Worker thread: write the archive for the window (since, until) to the path.
Prepare = Callable[[dt.datetime | None, dt.datetime | None, Path], None]


class UploadOutcome(StrEnum):
    """How an upload ended (values as LogStatusNotification names them)."""

    UPLOADED = "Uploaded"
    FAILED = "UploadFailure"  # no answer, or a failing server, after every try
    PERMISSION_DENIED = "PermissionDenied"
    BAD_MESSAGE = "BadMessage"
    NOT_SUPPORTED = "NotSupportedOperation"


_HTTP_REFUSALS = {
    401: UploadOutcome.PERMISSION_DENIED,
    403: UploadOutcome.PERMISSION_DENIED,
    400: UploadOutcome.BAD_MESSAGE,
    405: UploadOutcome.NOT_SUPPORTED,
    501: UploadOutcome.NOT_SUPPORTED,
}
_FTP_REFUSALS = {
    530: UploadOutcome.PERMISSION_DENIED,  # not logged in
    532: UploadOutcome.PERMISSION_DENIED,  # an account is needed to store files
    500: UploadOutcome.BAD_MESSAGE,
    501: UploadOutcome.BAD_MESSAGE,
    502: UploadOutcome.NOT_SUPPORTED,
    504: UploadOutcome.NOT_SUPPORTED,
}


def refusal(location: str, error: TransferError) -> UploadOutcome | None:
    """The outcome a server's answer settles for good, or None when a retry may help."""
    table = _FTP_REFUSALS if location.lower().startswith("ftp:") else _HTTP_REFUSALS
    return None if error.code is None else table.get(error.code)


def parse_time(value: str | None) -> dt.datetime | None:
    """An OCPP dateTime of a request (None stays None); ``ValueError`` when unreadable."""
    return None if value is None else parse_iso(value)


def archive_name(chargepoint_id: str, kind: str, now: dt.datetime) -> str:
    """``<id>-<kind>-<UTC time>.tar.gz``, safe as a file name on any server."""
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", chargepoint_id)
    return f"{safe_id}-{kind}-{stamp}.tar.gz"


def pack(text: str, archive: Path, member: str) -> None:
    """Write ``text`` as ``member`` into the gzip tar ``archive``, readable only by us."""
    data = text.encode()
    info = tarfile.TarInfo(member)
    info.size = len(data)
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    info.mode = 0o644
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(info, io.BytesIO(data))
    archive.chmod(0o600)


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """Where and when to upload, read from a request (times parsed, retries defaulted)."""

    location: str
    file_name: str
    since: dt.datetime | None
    until: dt.datetime | None
    attempts: int
    pause_s: float

    @classmethod
    def read(
        cls,
        location: str,
        file_name: str,
        *,
        since: str | None,
        until: str | None,
        retries: int | None,
        retry_interval: int | None,
        interval_scale: float,
    ) -> UploadPlan:
        """The plan for a request's fields; ``ValueError`` for an unreadable time."""
        interval = DEFAULT_RETRY_INTERVAL_S if retry_interval is None else max(0, retry_interval)
        return cls(
            location=location,
            file_name=file_name,
            since=parse_time(since),
            until=parse_time(until),
            attempts=1 + (DEFAULT_RETRIES if retries is None else max(0, retries)),
            pause_s=interval * interval_scale,
        )


async def collect_and_upload(plan: UploadPlan, prepare: Prepare, what: str) -> UploadOutcome:
    """Prepare the archive and upload it as ``plan`` says; ``what`` names it in the log."""
    with tempfile.TemporaryDirectory(prefix="picharge-upload-") as tmp:
        archive = Path(tmp) / plan.file_name
        try:
            await asyncio.to_thread(prepare, plan.since, plan.until, archive)
        except OSError as exc:
            log.error("%s: collecting the log failed: %s", what, exc)
            return UploadOutcome.FAILED
        for attempt in range(1, plan.attempts + 1):
            try:
                await asyncio.to_thread(upload, plan.location, archive)
            except TransferError as exc:
                log.warning("%s upload %d/%d failed: %s", what, attempt, plan.attempts, exc)
                final = refusal(plan.location, exc)
                if final is not None:
                    return final
                if attempt < plan.attempts:
                    await asyncio.sleep(plan.pause_s)
                continue
            log.info("%s %s uploaded to %s", what, plan.file_name, safe_url(plan.location))
            return UploadOutcome.UPLOADED
    return UploadOutcome.FAILED


async def notify(send: SendCall, request: Any) -> None:
    """Send a status notification; offline or unanswered it is logged and dropped."""
    try:
        await send(request)
    except CallFailed as exc:
        log.warning("%s %s not sent: %s", type(request).__name__, request.status, exc)
