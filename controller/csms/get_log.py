"""Log uploads: GetLog and LogStatusNotification (1.6 security whitepaper N01 and N02, the
same in 2.0.1).

The CSMS asks for a log (logType DiagnosticsLog or SecurityLog, a requestId, a location, an
optional window oldestTimestamp..latestTimestamp, retries, retryInterval). The answer names
the file at once: Accepted, or AcceptedCanceled when a GetLog upload was still running (it is
cancelled, without a notification of its own, and the new one runs), or Rejected for a
location that is not http, https or ftp, or an unreadable window. Then, in a task:

- DiagnosticsLog: the controller's log for the window, redacted, exactly as GetDiagnostics
  collects it (:meth:`controller.csms.diagnostics.Diagnostics.prepare`);
- SecurityLog: the security event history (:meth:`.SecurityEvents.history`, sent events and
  those from before a restart too) for the window, one line an event
  (``<timestamp> <type>[: <techInfo>]``), redacted as well;

packed and uploaded as :mod:`.log_upload` does. LogStatusNotification (with the requestId)
reports Uploading, then Uploaded, UploadFailure (after every retry), PermissionDenied,
BadMessage or NotSupportedOperation (the server's answer settled it). While nothing runs the
status is Idle, sent without a requestId (what ExtendedTriggerMessage gets).

A GetDiagnostics upload is separate: it neither cancels nor is cancelled by a GetLog.
Version-neutral: the handler turns :class:`LogAnswer` into the version's answer, and the
version's ``status_request`` builds LogStatusNotification. Loop thread; collecting, packing
and uploading in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from controller.csms.calls import Spawn
from controller.csms.log_upload import (
    Prepare,
    SendCall,
    UploadPlan,
    archive_name,
    collect_and_upload,
    notify,
    pack,
)
from controller.file_transfer import safe_url, scheme_of
from controller.logging_setup import redact

log = logging.getLogger(__name__)

#: Name of the security log inside its archive.
SECURITY_MEMBER = "security.log"


class LogKind(StrEnum):
    DIAGNOSTICS = "DiagnosticsLog"
    SECURITY = "SecurityLog"


class LogAnswer(StrEnum):
    """GetLog's answer."""

    ACCEPTED = "Accepted"
    ACCEPTED_CANCELED = "AcceptedCanceled"  # and the running upload is cancelled
    REJECTED = "Rejected"


#: The file name's middle part per log type.
_KIND = {LogKind.DIAGNOSTICS: "diagnostics", LogKind.SECURITY: "security"}
#: LogStatusNotification's status while nothing, or something, is uploading.
IDLE = "Idle"
UPLOADING = "Uploading"

#: The security event history for a window: dicts with type, timestamp, techInfo (wire).
SecurityHistory = Callable[[dt.datetime | None, dt.datetime | None], list[dict[str, str]]]


def security_log_text(events: Iterable[dict[str, str]]) -> str:
    """One line an event: ``<timestamp> <type>`` and ``: <techInfo>`` when there is one."""
    lines = []
    for event in events:
        info = event.get("techInfo")
        lines.append(f"{event['timestamp']} {event['type']}{f': {info}' if info else ''}\n")
    return "".join(lines)


@dataclass(frozen=True, slots=True)
class _Job:
    request_id: int
    log_type: LogKind
    plan: UploadPlan


class LogUploads:
    """One GetLog upload at a time; a new request cancels the running one.

    ``status_request(status, request_id)`` is the version's LogStatusNotification (status
    ``Uploading``, an :class:`UploadOutcome` value, or ``Idle`` without a request id).
    """

    def __init__(
        self,
        *,
        chargepoint_id: str,
        diagnostics_log: Prepare,
        security_history: SecurityHistory,
        secrets: Callable[[], Iterable[str]],
        send: SendCall,
        status_request: Callable[[str, int | None], Any],
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        interval_scale: float = 1.0,
    ) -> None:
        self._cp_id = chargepoint_id
        self._diagnostics_log = diagnostics_log
        self._security_history = security_history
        self._secrets = secrets
        self._send = send
        self._status_request = status_request
        self._spawn = spawn
        self._clock = clock
        self._scale = interval_scale
        self._planned: dict[str, _Job] = {}
        self._running: _Job | None = None
        self._task: asyncio.Task[Any] | None = None  # the running job's, once it started

    @property
    def running_request_id(self) -> int | None:
        """The requestId of the upload under way, or None."""
        return None if self._running is None else self._running.request_id

    def status_notification(self) -> Any:
        """What a trigger sends now: Uploading with the running requestId, else Idle."""
        request_id = self.running_request_id
        if request_id is None:
            return self._status_request(IDLE, None)
        return self._status_request(UPLOADING, request_id)

    def plan(
        self,
        unique_id: str,
        kind: LogKind,
        request_id: int,
        location: str,
        *,
        since: str | None = None,
        until: str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> tuple[LogAnswer, str | None]:
        """@on: the answer and the file name; the upload starts (and a running one stops)
        in :meth:`start_planned`."""
        if scheme_of(location) is None:
            log.warning("GetLog %d to %s: unsupported location", request_id, safe_url(location))
            return LogAnswer.REJECTED, None
        try:
            plan = UploadPlan.read(
                location,
                archive_name(self._cp_id, _KIND[kind], self._clock()),
                since=since,
                until=until,
                retries=retries,
                retry_interval=retry_interval,
                interval_scale=self._scale,
            )
        except ValueError:
            log.warning("GetLog %d with an unreadable time window: Rejected", request_id)
            return LogAnswer.REJECTED, None
        self._planned = {unique_id: _Job(request_id, kind, plan)}
        status = LogAnswer.ACCEPTED if self._running is None else LogAnswer.ACCEPTED_CANCELED
        log.info("GetLog %d (%s): %s, file %s", request_id, kind, status, plan.file_name)
        return status, plan.file_name

    def plan_request(
        self,
        unique_id: str,
        kind: LogKind,
        request_id: int,
        parameters: Mapping[str, Any],
        retries: int | None,
        retry_interval: int | None,
    ) -> tuple[LogAnswer, str | None]:
        """:meth:`plan` for a GetLog request as both versions' handlers receive it:
        ``parameters`` is its ``log`` (snake_case ``remote_location``, ``oldest_timestamp``,
        ``latest_timestamp``)."""
        return self.plan(
            unique_id,
            kind,
            request_id,
            str(parameters["remote_location"]),
            since=parameters.get("oldest_timestamp"),
            until=parameters.get("latest_timestamp"),
            retries=retries,
            retry_interval=retry_interval,
        )

    def start_planned(self, unique_id: str) -> None:
        """@after: cancel the upload under way, if any, and start the one just accepted."""
        job = self._planned.pop(unique_id, None)
        if job is None:
            return
        if self._running is not None:
            log.info("GetLog %d cancelled by GetLog %d", self._running.request_id, job.request_id)
            if self._task is not None:
                self._task.cancel()
        self._running, self._task = job, None  # a job not started yet sees it is superseded
        self._spawn(self._run(job), f"csms-get-log-{job.request_id}")

    async def _run(self, job: _Job) -> None:
        if self._running is not job:
            return  # superseded before it began
        self._task = asyncio.current_task()
        try:
            await self._notify(UPLOADING, job.request_id)
            what = f"GetLog {job.request_id} ({job.log_type})"
            outcome = await collect_and_upload(job.plan, self._preparer(job), what)
            self._running = self._task = None
            await self._notify(outcome.value, job.request_id)
        finally:
            if self._running is job:
                self._running = self._task = None

    def _preparer(self, job: _Job) -> Prepare:
        """What writes the job's archive; the security events are taken now (loop thread)."""
        if job.log_type is LogKind.DIAGNOSTICS:
            return self._diagnostics_log
        text = security_log_text(self._security_history(job.plan.since, job.plan.until))
        secrets = list(self._secrets())

        def prepare(since: dt.datetime | None, until: dt.datetime | None, to: Path) -> None:
            pack(redact(text, secrets), to, SECURITY_MEMBER)  # worker thread

        return prepare

    async def _notify(self, status: str, request_id: int) -> None:
        await notify(self._send, self._status_request(status, request_id))
