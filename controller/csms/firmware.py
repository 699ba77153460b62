"""Firmware updates: 1.6 UpdateFirmware (§5.16) and FirmwareStatusNotification (§4.5), and the
security whitepaper's SignedUpdateFirmware and SignedFirmwareStatusNotification (2.0.1 L01).

The CSMS names a location (http, https or ftp URL of a picharge wheel or sdist), a retrieve
time, and optionally retries and retryInterval; a signed update adds a requestId, an install
time, the signing certificate (PEM) and the signature (base64). The answer goes at once
(signed: Accepted; Rejected for an unsupported location, an unreadable time, or while an
update installs; InvalidCertificate for a signing certificate that is unreadable, not valid
now or not issued by a trusted firmware-signing root, recorded as the security event
InvalidFirmwareSigningCertificate; AcceptedCanceled when it replaces an update that has not
begun installing). Then, in a task of its own (:class:`~.firmware_job.FirmwareJob`, stored so
that a restart resumes it):

1. DownloadScheduled (signed) and wait until the retrieve time;
2. Downloading: fetch the file (:mod:`controller.file_transfer`), tried ``1 + retries``
   times (retries absent: 2) ``retryInterval`` s apart (absent: 30 s, scaled like every OCPP
   interval); DownloadFailed when no attempt succeeded, else Downloaded. A plain update also
   counts a file refused by :func:`controller.firmware_install.inspect_package` as a failed
   attempt (a picharge wheel or sdist of another version than the running one; a URL ending
   in ``#sha256=<hex>`` or carrying ``?sha256=<hex>`` must match);
3. signed: the signature of the file is checked (:mod:`.firmware_signature`):
   SignatureVerified, or InvalidSignature, the security event InvalidFirmwareSignature and
   nothing installed; then the package check (refused: InstallationFailed);
4. InstallScheduled (signed) and wait until the install time; wait until no transaction runs
   (a session is never cut short by an update);
5. Installing: the :class:`~controller.firmware_install.Installer` installs it beside the
   running version and switches to it (default :class:`PipTargetInstaller` under
   ``<state_dir>/firmware``); InstallationFailed (signed: InstallVerificationFailed when the
   installed controller fails its import check) leaves the running version current;
6. InstallRebooting (signed), then a Hard reset: the controller re-execs into the new
   version, which is on trial until its first BootNotification is accepted. Only then,
   in the new process, is the update Installed (signed: with its requestId, and the security
   event FirmwareUpdated); when the fall-back (:func:`controller.firmware_install.guard`)
   put the previous version back, the next registration reports InstallationFailed instead.

While nothing runs the status is Idle. Each step goes to the version's ``status_request``,
which builds the notification or None to send nothing (1.6: a plain update reports the core
statuses in FirmwareStatusNotification, the whitepaper's extra steps are not sent; a signed
update reports every step in SignedFirmwareStatusNotification with the requestId). A plain
request while an update runs is answered and ignored (logged). Loop thread; downloads,
signature checks and installs run in worker threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import importlib.metadata
import logging
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509

from controller.csms.calls import CallFailed, Spawn
from controller.csms.firmware_job import FirmwareJob, JobStore, Stage
from controller.csms.firmware_signature import (
    CertificateRefused,
    SignatureRefused,
    trusted_signing_certificate,
    verify_file,
)
from controller.csms.security_events import SecurityEvent
from controller.domain import ChargePointControl, ResetKind
from controller.file_transfer import TransferError, download, safe_url, scheme_of
from controller.firmware_install import (
    DIST_NAME,
    FirmwarePackage,
    FirmwareRejected,
    Installer,
    InstallFailed,
    VerificationFailed,
    inspect_package,
)

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL_S = 30
#: OCPP seconds between looks at whether the transactions have ended (before installing).
TRANSACTION_POLL_S = 10
#: OCPP seconds a resumed update waits for the link to register before it goes on without
#: (its statuses are only sent while registered).
RESUME_WAIT_S = 60

SendCall = Callable[[Any], Awaitable[Any]]


class FirmwareStatus(StrEnum):
    """The steps of an update, in the whitepaper's words (1.6 core knows a subset)."""

    IDLE = "Idle"
    DOWNLOAD_SCHEDULED = "DownloadScheduled"
    DOWNLOADING = "Downloading"
    DOWNLOAD_PAUSED = "DownloadPaused"
    DOWNLOADED = "Downloaded"
    DOWNLOAD_FAILED = "DownloadFailed"
    SIGNATURE_VERIFIED = "SignatureVerified"
    INVALID_SIGNATURE = "InvalidSignature"
    INSTALL_SCHEDULED = "InstallScheduled"
    INSTALLING = "Installing"
    INSTALL_REBOOTING = "InstallRebooting"
    INSTALLED = "Installed"
    INSTALLATION_FAILED = "InstallationFailed"
    INSTALL_VERIFICATION_FAILED = "InstallVerificationFailed"


class SignedAnswer(StrEnum):
    """SignedUpdateFirmware's answer."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    ACCEPTED_CANCELED = "AcceptedCanceled"
    INVALID_CERTIFICATE = "InvalidCertificate"


#: The version's notification of a step: (status, the signed update's requestId or None);
#: None when the version has no word for the step.
StatusRequest = Callable[[FirmwareStatus, int | None], Any]


class RecordEvent(Protocol):
    """:meth:`controller.csms.security_events.SecurityEvents.record`."""

    def __call__(
        self, event: SecurityEvent, tech_info: str | None = None, *, logged: bool = False
    ) -> None: ...


SigningRoots = Callable[[], list[x509.Certificate]]

#: Statuses that end an update.
_FINAL = frozenset(
    {
        FirmwareStatus.DOWNLOAD_FAILED,
        FirmwareStatus.INVALID_SIGNATURE,
        FirmwareStatus.INSTALLATION_FAILED,
        FirmwareStatus.INSTALL_VERIFICATION_FAILED,
        FirmwareStatus.INSTALLED,
    }
)


def installed_version(dist_name: str = DIST_NAME) -> str:
    """The version of picharge this process runs ("0" when it is not installed)."""
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def _parse_time(value: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


def _attempts(retries: int | None) -> int:
    return DEFAULT_RETRIES if retries is None else max(0, int(retries))


def _interval(value: int | None) -> int:
    return DEFAULT_RETRY_INTERVAL_S if value is None else max(0, int(value))


@dataclass(frozen=True, slots=True)
class SignedFirmware:
    """A signed update's firmware: where, when, and the signature over the file."""

    location: str
    retrieve_date_time: str
    signing_certificate: str  # PEM
    signature: str  # base64
    install_date_time: str | None = None


class FirmwareUpdater:
    """One firmware update at a time, kept across restarts, and the status triggers report.

    ``signing_roots`` gives the trusted firmware-signing roots; it is called in a worker
    thread (it may read files). ``record_event`` records a security event (loop thread).
    """

    def __init__(
        self,
        *,
        control: ChargePointControl,
        installer: Installer,
        current_version: str,
        send: SendCall,
        status_request: StatusRequest,
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        storage: Storage,
        record_event: RecordEvent,
        signing_roots: SigningRoots = list,
        interval_scale: float = 1.0,
    ) -> None:
        self._control = control
        self._installer = installer
        self._current = current_version
        self._send = send
        self._status_request = status_request
        self._spawn = spawn
        self._clock = clock
        self._store = JobStore(storage)
        self._record = record_event
        self._roots = signing_roots
        self._scale = interval_scale
        self._status = FirmwareStatus.IDLE
        self._job: FirmwareJob | None = None  # running, or awaiting its verdict
        self._task: asyncio.Task[Any] | None = None
        self._installing = False  # the installer has been called: no cancelling now
        self._installed_here = False  # this process installed it: the verdict is the next's
        self._last_request_id: int | None = None
        self._planned: dict[str, FirmwareJob] = {}
        self._registered = asyncio.Event()
        self._confirmed = False

    @property
    def status(self) -> FirmwareStatus:
        """The step under way; Idle when nothing runs."""
        return self._status

    @property
    def signed_request_id(self) -> int | None:
        """The requestId of the current or last signed update; None when no signed update
        ran, nor for a plain update under way."""
        job = self._job
        return job.request_id if job is not None else self._last_request_id

    # --- restarts -----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Take up the stored update (before the link starts): a scheduled or interrupted one
        runs again; an installed one waits for the verdict of :meth:`booted`."""
        job, self._last_request_id = await self._store.load()
        if job is None:
            return
        self._job = job
        if job.stage is Stage.SCHEDULED:
            log.info("resuming the firmware update from %s", safe_url(job.location))
            self._spawn(self._run(job, resumed=True), "csms-firmware")
        else:
            log.info("firmware %s was being installed: verdict at registration", job.version)
            self._status = (
                FirmwareStatus.INSTALL_REBOOTING if job.signed else FirmwareStatus.INSTALLING
            )

    def booted(self) -> None:
        """The link registered: the running version works, its trial ends (once a process),
        and an update installed before the restart gets its verdict."""
        self._registered.set()
        if not self._confirmed:
            self._confirmed = True
            self._spawn(self._confirm(), "csms-firmware-confirm")

    async def _confirm(self) -> None:
        try:
            version = await asyncio.to_thread(self._installer.confirm)
        except OSError as exc:
            log.warning("could not end the firmware trial: %s", exc)
            return
        if version is not None:
            log.info("firmware %s registered with the CSMS: trial over", version)
        job = self._job
        if job is None or job.stage is Stage.SCHEDULED or self._installed_here:
            return
        if version is not None and version == job.version:
            self._record(SecurityEvent.FIRMWARE_UPDATED, f"firmware {version} installed")
            await self._end(job, FirmwareStatus.INSTALLED)
        else:
            log.error("firmware %s is not running after the restart: fell back", job.version)
            await self._end(job, FirmwareStatus.INSTALLATION_FAILED)
        self._job = None
        self._status = FirmwareStatus.IDLE

    # --- requests -----------------------------------------------------------------------------

    def plan(
        self,
        unique_id: str,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        """@on UpdateFirmware (its answer is empty); the update starts in
        :meth:`start_planned`."""
        if self._job is not None:
            log.warning("UpdateFirmware while an update runs: ignored")
        elif scheme_of(location) is None:
            log.warning("UpdateFirmware from %s: unsupported location", safe_url(location))
        else:
            try:
                when = _parse_time(retrieve_date)
            except ValueError:
                log.warning("UpdateFirmware with unreadable retrieveDate %r", retrieve_date)
            else:
                self._planned = {
                    unique_id: FirmwareJob(
                        location=location,
                        retrieve_at=when,
                        retries=_attempts(retries),
                        retry_interval_s=_interval(retry_interval),
                    )
                }

    async def plan_signed(
        self,
        unique_id: str,
        request_id: int,
        firmware: SignedFirmware,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> SignedAnswer:
        """@on SignedUpdateFirmware: check the request and its signing certificate; the
        update starts in :meth:`start_planned` (replacing one that has not begun installing)."""
        location = firmware.location
        if self._installing or (self._job is not None and self._job.stage is not Stage.SCHEDULED):
            log.warning("SignedUpdateFirmware %d while an update installs: Rejected", request_id)
            return SignedAnswer.REJECTED
        if scheme_of(location) is None:
            log.warning("SignedUpdateFirmware from %s: unsupported location", safe_url(location))
            return SignedAnswer.REJECTED
        try:
            retrieve_at = _parse_time(firmware.retrieve_date_time)
            install_text = firmware.install_date_time
            install_at = _parse_time(install_text) if install_text else None
        except ValueError:
            log.warning("SignedUpdateFirmware %d with an unreadable time: Rejected", request_id)
            return SignedAnswer.REJECTED
        pem = firmware.signing_certificate
        try:
            await asyncio.to_thread(self._trusted, pem)
        except CertificateRefused as exc:
            log.warning("SignedUpdateFirmware %d: %s", request_id, exc)
            self._record(SecurityEvent.INVALID_FIRMWARE_SIGNING_CERTIFICATE, str(exc), logged=True)
            return SignedAnswer.INVALID_CERTIFICATE
        self._planned = {
            unique_id: FirmwareJob(
                location=location,
                retrieve_at=retrieve_at,
                retries=_attempts(retries),
                retry_interval_s=_interval(retry_interval),
                request_id=request_id,
                install_at=install_at,
                signing_certificate=pem,
                signature=firmware.signature,
            )
        }
        if self._job is not None:
            log.info("SignedUpdateFirmware %d replaces the update under way", request_id)
            return SignedAnswer.ACCEPTED_CANCELED
        return SignedAnswer.ACCEPTED

    def _trusted(self, pem: str) -> x509.Certificate:
        """Worker thread: the signing certificate, checked against the roots of now."""
        return trusted_signing_certificate(pem, self._roots(), self._clock())

    def start_planned(self, unique_id: str) -> None:
        """@after: run what :meth:`plan` or :meth:`plan_signed` accepted, in a task."""
        job = self._planned.pop(unique_id, None)
        if job is None:
            return
        if self._installing:
            log.warning("the update under way began installing: the new one is dropped")
            return
        running, self._task = self._task, None
        self._job = job
        self._spawn(self._replace(running, job), "csms-firmware")

    async def _replace(self, running: asyncio.Task[Any] | None, job: FirmwareJob) -> None:
        if running is not None and not running.done():
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        await self._run(job, resumed=False)

    # --- the update ---------------------------------------------------------------------------

    async def _run(self, job: FirmwareJob, *, resumed: bool) -> None:
        self._task = asyncio.current_task()
        self._job = job
        if job.signed:
            self._last_request_id = job.request_id
        try:
            if resumed:
                try:
                    async with asyncio.timeout(RESUME_WAIT_S * self._scale):
                        await self._registered.wait()
                except TimeoutError:
                    log.info("resuming the firmware update before the link registered")
            else:
                await self._store.save(job)
            await self._update(job)
        finally:
            if self._task is asyncio.current_task():  # not replaced by a newer update
                self._task = None
                self._installing = False
                if self._job is not None and self._job.stage is not Stage.REBOOTING:
                    self._job = None
                    self._status = FirmwareStatus.IDLE

    async def _update(self, job: FirmwareJob) -> None:
        await self._until(job, job.retrieve_at, FirmwareStatus.DOWNLOAD_SCHEDULED)
        with tempfile.TemporaryDirectory(
            prefix="picharge-firmware-", ignore_cleanup_errors=True
        ) as tmp:
            package = await self._obtain(job, Path(tmp) / "download")
            if package is None:
                return
            if job.install_at is not None:
                await self._until(job, job.install_at, FirmwareStatus.INSTALL_SCHEDULED)
            await self._until_no_transaction()
            await self._notify(job, FirmwareStatus.INSTALLING)
            self._installing = True
            job = dataclasses.replace(job, stage=Stage.INSTALLING, version=package.version)
            self._job = job
            await self._store.save(job)
            try:
                where = await asyncio.to_thread(self._installer.install, package)
            except VerificationFailed as exc:
                log.error("firmware %s installed but fails its check: %s", package.version, exc)
                failed = FirmwareStatus.INSTALL_VERIFICATION_FAILED
                await self._end(job, failed if job.signed else FirmwareStatus.INSTALLATION_FAILED)
                return
            except (InstallFailed, OSError) as exc:
                log.error("firmware %s not installed: %s", package.version, exc)
                await self._end(job, FirmwareStatus.INSTALLATION_FAILED)
                return
        job = dataclasses.replace(job, stage=Stage.REBOOTING)
        self._job = job
        await self._store.save(job)
        self._installed_here = True
        log.warning("firmware %s installed in %s: restarting into it", package.version, where)
        await self._notify(job, FirmwareStatus.INSTALL_REBOOTING)
        self._installer.prepare_restart()
        await self._control.reset(ResetKind.HARD)

    async def _obtain(self, job: FirmwareJob, fetched: Path) -> FirmwarePackage | None:
        """Download, (signed) verify, and check the package; None when the update ended."""
        await self._notify(job, FirmwareStatus.DOWNLOADING)
        attempts = 1 + job.retries
        for attempt in range(1, attempts + 1):
            try:
                size = await asyncio.to_thread(download, job.location, fetched)
                package = None
                if not job.signed:  # a signed file is only opened once its signature is good
                    package = await asyncio.to_thread(
                        inspect_package, fetched, self._current, job.location
                    )
            except (TransferError, FirmwareRejected, OSError) as exc:
                log.warning("firmware download %d/%d failed: %s", attempt, attempts, exc)
                if attempt < attempts:
                    await asyncio.sleep(job.retry_interval_s * self._scale)
                continue
            break
        else:
            await self._end(job, FirmwareStatus.DOWNLOAD_FAILED)
            return None
        log.info("firmware from %s downloaded (%d bytes)", safe_url(job.location), size)
        await self._notify(job, FirmwareStatus.DOWNLOADED)
        if package is not None:
            return package
        return await self._verified(job, fetched)

    async def _verified(self, job: FirmwareJob, fetched: Path) -> FirmwarePackage | None:
        try:
            signer = await asyncio.to_thread(self._trusted, job.signing_certificate)
            await asyncio.to_thread(verify_file, fetched, signer, job.signature)
        except (CertificateRefused, SignatureRefused) as exc:
            log.error("firmware update %s: %s: not installed", job.request_id, exc)
            self._record(SecurityEvent.INVALID_FIRMWARE_SIGNATURE, str(exc), logged=True)
            await self._end(job, FirmwareStatus.INVALID_SIGNATURE)
            return None
        await self._notify(job, FirmwareStatus.SIGNATURE_VERIFIED)
        try:
            return await asyncio.to_thread(inspect_package, fetched, self._current, job.location)
        except (FirmwareRejected, OSError) as exc:
            log.error("firmware update %s refused: %s", job.request_id, exc)
            await self._end(job, FirmwareStatus.INSTALLATION_FAILED)
            return None

    async def _until(self, job: FirmwareJob, at: dt.datetime, status: FirmwareStatus) -> None:
        delay = (at - self._clock()).total_seconds()
        if delay > 0:
            log.info("firmware from %s: %s until %s", safe_url(job.location), status, at)
            await self._notify(job, status)
            await asyncio.sleep(delay)

    async def _until_no_transaction(self) -> None:
        while any(
            (tx := self._control.view(c).transaction) is not None and tx.running
            for c in self._control.connector_ids
        ):
            log.info("firmware waits for the running transactions to end")
            await asyncio.sleep(TRANSACTION_POLL_S * self._scale)

    async def _end(self, job: FirmwareJob, status: FirmwareStatus) -> None:
        """A final status: reported, and the stored job is gone."""
        await self._store.clear()
        await self._notify(job, status)

    async def _notify(self, job: FirmwareJob, status: FirmwareStatus) -> None:
        self._status = status if status not in _FINAL else FirmwareStatus.IDLE
        request = self._status_request(status, job.request_id)
        if request is None:
            return  # a step the version has no word for
        try:
            await self._send(request)
        except CallFailed as exc:
            log.warning("firmware status %s not sent: %s", status, exc)
