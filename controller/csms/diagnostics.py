"""Diagnostics uploads: 1.6 GetDiagnostics (§5.7) and DiagnosticsStatusNotification (§4.4).

The CSMS names a location (a directory URL: http, https or ftp), optionally a time window
(startTime, stopTime), retries and retryInterval. The answer names the file at once; then,
in a task of its own:

1. the controller's log for the window is collected (:class:`LogSource`): from the journal
   (``journalctl -u picharge --since @<epoch> --until @<epoch> -o short-iso``) when the
   controller runs under systemd, otherwise from its rotating log file
   ``<state_dir>/logs/picharge.log*`` (:func:`controller.logging_setup.add_log_file`);
2. every secret is scrubbed (:func:`controller.logging_setup.redact`, plus the values of
   secret configuration keys such as AuthorizationKey: ``secrets``);
3. it is packed as ``<file name>.tar.gz`` holding ``picharge.log``;
4. it is uploaded (:mod:`controller.file_transfer`: HTTP(S) POST multipart, field ``file``,
   or FTP STOR into the directory), tried ``1 + retries`` times (retries absent: 2)
   ``retryInterval`` seconds apart (absent: 30 s; scaled like every OCPP interval).

Steps 3 and 4 are :mod:`.log_upload`'s, shared with GetLog, whose DiagnosticsLog is steps
1 and 2 here (:meth:`Diagnostics.prepare`).

DiagnosticsStatusNotification reports Uploading, then Uploaded or UploadFailed; while nothing
runs the status is Idle (what a TriggerMessage gets). One upload at a time: a request while
one runs gets an answer without a file name. Collecting, packing and uploading block, so
they run in a worker thread; everything else on the loop thread. Version-neutral: the
version's handler turns :meth:`Diagnostics.plan`'s file name into its answer, and its
``status_request`` builds the status notification sent through ``send``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from controller.csms.calls import Spawn
from controller.csms.log_upload import (
    SendCall,
    UploadOutcome,
    UploadPlan,
    archive_name,
    collect_and_upload,
    notify,
    pack,
)
from controller.file_transfer import safe_url, scheme_of
from controller.logging_setup import LOG_FILE_NAME, redact, under_systemd

log = logging.getLogger(__name__)

#: Name of the log inside the archive; the systemd unit whose journal is collected.
ARCHIVE_MEMBER = "picharge.log"
SYSTEMD_UNIT = "picharge"
#: Seconds journalctl may take before collection fails.
JOURNAL_TIMEOUT_S = 60.0

_FILE_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z ")


class LogSource(Protocol):
    """The controller's log between two instants (None: open end); blocking."""

    def collect(self, since: dt.datetime | None, until: dt.datetime | None) -> str: ...


class JournalLogs:
    """The systemd journal of the unit, through journalctl (short-iso lines)."""

    def __init__(
        self,
        unit: str = SYSTEMD_UNIT,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self._unit = unit
        self._run = run

    def command(self, since: dt.datetime | None, until: dt.datetime | None) -> list[str]:
        """The journalctl command line (epoch seconds: free of time zones)."""
        args = ["journalctl", "-u", self._unit, "-o", "short-iso", "--no-pager"]
        if since is not None:
            args.append(f"--since=@{int(since.timestamp())}")
        if until is not None:
            args.append(f"--until=@{int(until.timestamp()) + 1}")
        return args

    def collect(self, since: dt.datetime | None, until: dt.datetime | None) -> str:
        try:
            done = self._run(
                self.command(since, until),
                capture_output=True,
                text=True,
                timeout=JOURNAL_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(f"journalctl failed: {exc}") from exc
        if done.returncode != 0:
            raise OSError(f"journalctl exited {done.returncode}: {done.stderr.strip()[:200]}")
        return done.stdout


class FileLogs:
    """The rotating log file in ``directory`` (oldest rotation first), cut to the window.

    A line without a timestamp (a traceback) belongs to the record before it.
    """

    def __init__(self, directory: Path, name: str = LOG_FILE_NAME) -> None:
        self._directory = directory
        self._name = name

    def files(self) -> list[Path]:
        """picharge.log.5 ... picharge.log.1, picharge.log: those that exist."""
        rotated = sorted(
            self._directory.glob(f"{self._name}.*"),
            key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
            reverse=True,
        )
        current = self._directory / self._name
        return [*rotated, *([current] if current.exists() else [])]

    def collect(self, since: dt.datetime | None, until: dt.datetime | None) -> str:
        kept: list[str] = []
        keep = False
        for path in self.files():
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    stamp = _FILE_TIME.match(line)
                    if stamp is not None:
                        at = dt.datetime.fromisoformat(stamp.group(1)).replace(tzinfo=dt.UTC)
                        keep = (since is None or at >= since) and (until is None or at <= until)
                    if keep:
                        kept.append(line)
        return "".join(kept)


def default_log_source(state_dir: Path) -> LogSource:
    """The journal under systemd, else the log file in ``<state_dir>/logs``."""
    if under_systemd():
        return JournalLogs()
    return FileLogs(state_dir / "logs")


def prepare_log(
    logs: LogSource,
    secrets: Callable[[], Iterable[str]],
    since: dt.datetime | None,
    until: dt.datetime | None,
    to: Path,
) -> None:
    """Worker thread: the controller's log for the window, redacted, packed into ``to``
    (steps 1-3 above; GetDiagnostics and 2.0.1's GetLog DiagnosticsLog both use it)."""
    pack(redact(logs.collect(since, until), secrets()), to, ARCHIVE_MEMBER)


class DiagnosticsStatus(StrEnum):
    """Where the diagnostics upload is, in OCPP 1.6 spelling."""

    IDLE = "Idle"
    UPLOADING = "Uploading"
    UPLOADED = "Uploaded"
    UPLOAD_FAILED = "UploadFailed"


class Diagnostics:
    """One diagnostics upload at a time, and the status a trigger reports.

    ``status_request(status)`` is the version's status notification, sent with ``send``.
    """

    def __init__(
        self,
        *,
        chargepoint_id: str,
        logs: LogSource,
        secrets: Callable[[], Iterable[str]],
        send: SendCall,
        status_request: Callable[[DiagnosticsStatus], Any],
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        interval_scale: float = 1.0,
    ) -> None:
        self._cp_id = chargepoint_id
        self._logs = logs
        self._secrets = secrets
        self._send = send
        self._status_request = status_request
        self._spawn = spawn
        self._clock = clock
        self._scale = interval_scale
        self._status = DiagnosticsStatus.IDLE
        self._planned: dict[str, UploadPlan] = {}

    @property
    def status(self) -> DiagnosticsStatus:
        """Uploading while an upload runs, else Idle."""
        return self._status

    def plan(
        self,
        unique_id: str,
        location: str,
        *,
        start_time: str | None = None,
        stop_time: str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> str | None:
        """@on: the file name to answer with (None: no upload); the upload starts in
        :meth:`start_planned`."""
        if scheme_of(location) is None:
            log.warning("GetDiagnostics to %s: unsupported location", safe_url(location))
            return None
        if self._status is DiagnosticsStatus.UPLOADING:
            log.warning("GetDiagnostics while an upload runs: no file")
            return None
        try:
            plan = UploadPlan.read(
                location,
                archive_name(self._cp_id, "diagnostics", self._clock()),
                since=start_time,
                until=stop_time,
                retries=retries,
                retry_interval=retry_interval,
                interval_scale=self._scale,
            )
        except ValueError:
            log.warning("GetDiagnostics with an unreadable time window: no file")
            return None
        self._planned = {unique_id: plan}
        return plan.file_name

    def start_planned(self, unique_id: str) -> None:
        """@after: collect and upload what :meth:`plan` accepted, in a task."""
        plan = self._planned.pop(unique_id, None)
        if plan is not None:
            self._status = DiagnosticsStatus.UPLOADING
            self._spawn(self._run(plan), "csms-diagnostics")

    async def _run(self, plan: UploadPlan) -> None:
        try:
            await self._notify(DiagnosticsStatus.UPLOADING)
            outcome = await collect_and_upload(plan, self.prepare, "diagnostics")
            self._status = DiagnosticsStatus.IDLE
            await self._notify(
                DiagnosticsStatus.UPLOADED
                if outcome is UploadOutcome.UPLOADED
                else DiagnosticsStatus.UPLOAD_FAILED
            )
        finally:
            self._status = DiagnosticsStatus.IDLE

    def prepare(self, since: dt.datetime | None, until: dt.datetime | None, to: Path) -> None:
        """Worker thread: the log for the window, redacted, packed into ``to``."""
        prepare_log(self._logs, self._secrets, since, until, to)

    async def _notify(self, status: DiagnosticsStatus) -> None:
        await notify(self._send, self._status_request(status))
