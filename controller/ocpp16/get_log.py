"""GetLog and LogStatusNotification (OCPP 1.6 security whitepaper, use cases N01 and N02).

The CSMS asks for a log (logType DiagnosticsLog or SecurityLog, a requestId, a location, an
optional window oldestTimestamp..latestTimestamp, retries, retryInterval). The answer names
the file at once: Accepted, or AcceptedCanceled when a GetLog upload was still running (it is
cancelled, without a notification of its own, and the new one runs), or Rejected for a
location that is not http, https or ftp, or an unreadable window. Then, in a task:

- DiagnosticsLog: the controller's log for the window, redacted, exactly as GetDiagnostics
  collects it (:meth:`controller.ocpp16.diagnostics.Diagnostics.prepare`);
- SecurityLog: the security event history (:meth:`.SecurityEvents.history`, sent events and
  those from before a restart too) for the window, one line an event
  (``<timestamp> <type>[: <techInfo>]``), redacted as well;

packed and uploaded as :mod:`.log_upload` does. LogStatusNotification (with the requestId)
reports Uploading, then Uploaded, UploadFailure (after every retry), PermissionDenied,
BadMessage or NotSupportedOperation (the server's answer settled it). While nothing runs the
status is Idle, sent without a requestId (what ExtendedTriggerMessage gets).

A GetDiagnostics upload is separate: it neither cancels nor is cancelled by a GetLog.
Loop thread; collecting, packing and uploading in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocpp.v16 import call, call_result
from ocpp.v16.enums import Log, LogStatus, UploadLogStatus

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
#: The file name's middle part per log type.
_KIND = {Log.diagnostics_log: "diagnostics", Log.security_log: "security"}

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
    log_type: Log
    plan: UploadPlan


class LogUploads:
    """One GetLog upload at a time; a new request cancels the running one."""

    def __init__(
        self,
        *,
        chargepoint_id: str,
        diagnostics_log: Prepare,
        security_history: SecurityHistory,
        secrets: Callable[[], Iterable[str]],
        send: SendCall,
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        interval_scale: float = 1.0,
    ) -> None:
        self._cp_id = chargepoint_id
        self._diagnostics_log = diagnostics_log
        self._security_history = security_history
        self._secrets = secrets
        self._send = send
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

    def status_notification(self) -> call.LogStatusNotification:
        """What a trigger sends now: Uploading with the running requestId, else Idle."""
        request_id = self.running_request_id
        if request_id is None:
            # requestId is optional in the schema (not in the library's dataclass): left out
            return call.LogStatusNotification(UploadLogStatus.idle, None)
        return call.LogStatusNotification(UploadLogStatus.uploading, request_id)

    def plan(
        self,
        unique_id: str,
        log_type: str,
        request_id: int,
        log_parameters: dict[str, Any],
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Any:
        """@on: the answer; the upload starts (and a running one stops) in @after."""
        location = str(log_parameters["remote_location"])
        if scheme_of(location) is None:
            log.warning("GetLog %d to %s: unsupported location", request_id, safe_url(location))
            return call_result.GetLog(LogStatus.rejected)
        kind = Log(log_type)
        try:
            plan = UploadPlan.read(
                location,
                archive_name(self._cp_id, _KIND[kind], self._clock()),
                since=log_parameters.get("oldest_timestamp"),
                until=log_parameters.get("latest_timestamp"),
                retries=retries,
                retry_interval=retry_interval,
                interval_scale=self._scale,
            )
        except ValueError:
            log.warning("GetLog %d with an unreadable time window: Rejected", request_id)
            return call_result.GetLog(LogStatus.rejected)
        self._planned = {unique_id: _Job(request_id, kind, plan)}
        status = LogStatus.accepted if self._running is None else LogStatus.accepted_canceled
        log.info("GetLog %d (%s): %s, file %s", request_id, kind, status, plan.file_name)
        return call_result.GetLog(status, filename=plan.file_name)

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
        self._spawn(self._run(job), f"ocpp16-get-log-{job.request_id}")

    async def _run(self, job: _Job) -> None:
        if self._running is not job:
            return  # superseded before it began
        self._task = asyncio.current_task()
        try:
            await self._notify(UploadLogStatus.uploading, job.request_id)
            what = f"GetLog {job.request_id} ({job.log_type})"
            outcome = await collect_and_upload(job.plan, self._preparer(job), what)
            self._running = self._task = None
            await self._notify(UploadLogStatus(outcome.value), job.request_id)
        finally:
            if self._running is job:
                self._running = self._task = None

    def _preparer(self, job: _Job) -> Prepare:
        """What writes the job's archive; the security events are taken now (loop thread)."""
        if job.log_type is Log.diagnostics_log:
            return self._diagnostics_log
        text = security_log_text(self._security_history(job.plan.since, job.plan.until))
        secrets = list(self._secrets())

        def prepare(since: dt.datetime | None, until: dt.datetime | None, to: Path) -> None:
            pack(redact(text, secrets), to, SECURITY_MEMBER)  # worker thread

        return prepare

    async def _notify(self, status: UploadLogStatus, request_id: int) -> None:
        await notify(self._send, call.LogStatusNotification(status, request_id))
