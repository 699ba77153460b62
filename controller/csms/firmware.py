"""Firmware updates: 1.6 UpdateFirmware (§5.16) and FirmwareStatusNotification (§4.5), the
security whitepaper's SignedUpdateFirmware and SignedFirmwareStatusNotification, and 2.0.1's
UpdateFirmware and FirmwareStatusNotification (L01, and L02 without a signing certificate:
the package's detached signature is then checked as for a 1.6 plain update).

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
2. Downloading: fetch the file (:mod:`controller.file_transfer`, at most
   :attr:`FirmwarePolicy.max_bytes`, into a temporary folder under ``<state_dir>/tmp``
   removed afterwards) and, for a plain update, its detached signature (``<location>.sig``,
   :func:`~.firmware_signature.signature_url`); tried ``1 + retries`` times (retries absent:
   2) ``retryInterval`` s apart (absent: 30 s, scaled like every OCPP interval), a URL
   checksum (``#sha256=<hex>`` or ``?sha256=<hex>``) that does not match counting as a failed
   attempt; DownloadFailed when no attempt succeeded (or the file is too large), else
   Downloaded;
3. the trust check (:mod:`.firmware_signature`), before a byte of the package is opened: its
   signing certificate must chain to a root the operator trusts
   (:class:`~.firmware_policy.FirmwarePolicy`) and the signature match the file; then the
   package check (a picharge wheel or sdist, not the running version, not older unless
   downgrades are allowed). A plain update without a signature file is refused unless
   unsigned firmware is allowed. Every trust refusal (no signature, an untrusted
   certificate, a bad signature, a downgrade) records the security event
   InvalidFirmwareSignature and ends the update with nothing installed: signed
   InvalidSignature (InstallationFailed for a downgrade), plain InstallationFailed (1.6 core
   has no word for it). Signed: SignatureVerified once the signature is good;
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
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography import x509

from controller.csms.calls import CallFailed, Spawn
from controller.csms.firmware_job import FirmwareJob, JobStore, Stage
from controller.csms.firmware_policy import MAX_SIGNATURE_BYTES, FirmwarePolicy
from controller.csms.firmware_signature import (
    CertificateRefused,
    SignatureRefused,
    file_roots,
    parse_detached,
    signature_url,
    trusted_signing_certificate,
    verify_file,
)
from controller.csms.security_events import SecurityEvent
from controller.domain import ChargePointControl, ResetKind
from controller.file_transfer import TooLarge, TransferError, download, safe_url, scheme_of
from controller.firmware_install import (
    DIST_NAME,
    FIRMWARE_DIR,
    Downgrade,
    FirmwarePackage,
    FirmwareRejected,
    Installer,
    InstallFailed,
    PackageInspector,
    PipTargetInstaller,
    VerificationFailed,
    VersionReporter,
    check_sha256,
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
#: The state directory's own temporary folder (firmware downloads): never /tmp, which a
#: Pi may keep in RAM and other users can list.
WORK_DIR = "tmp"
#: Prefix of an update's temporary folder under the work directory.
WORK_PREFIX = "picharge-firmware-"
#: Answers meaning "no such file" (HTTP 404 and 410, FTP 550): a package without a detached
#: signature, not a failed attempt.
_NOT_FOUND = frozenset({404, 410, 550})

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


def running_version(installer: Installer | None) -> str:
    """The firmware version running: the installer's word where it keeps one (a simulated
    update under ``--sim``), else :func:`installed_version`."""
    if isinstance(installer, VersionReporter) and (version := installer.running_version()):
        return version
    return installed_version()


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

    @classmethod
    def of(cls, firmware: Mapping[str, Any]) -> SignedFirmware:
        """From the request's ``firmware`` (snake_case, as the ocpp library hands it); a
        2.0.1 request may leave out the certificate and the signature (""), L02."""
        install_at = firmware.get("install_date_time")
        return cls(
            location=str(firmware["location"]),
            retrieve_date_time=str(firmware["retrieve_date_time"]),
            signing_certificate=str(firmware.get("signing_certificate") or ""),
            signature=str(firmware.get("signature") or ""),
            install_date_time=None if install_at is None else str(install_at),
        )


class _Refused(Exception):
    """The update is refused for want of trust (the text says why): nothing is installed,
    the update ends in ``status``."""

    def __init__(self, message: str, status: FirmwareStatus) -> None:
        super().__init__(message)
        self.status = status


class FirmwareUpdater:
    """One firmware update at a time, kept across restarts, and the status triggers report.

    ``signing_roots`` gives the firmware-signing roots the operator trusts (``policy``
    decides which; it is called in a worker thread: it may read files). ``record_event``
    records a security event (loop thread). ``work_dir`` holds each download's temporary
    folder (``<state_dir>/tmp``; created 0700 when missing).
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
        work_dir: Path,
        signing_roots: SigningRoots = list,
        policy: FirmwarePolicy | None = None,
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
        self._policy = policy or FirmwarePolicy()
        self._work_dir = work_dir
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

    @classmethod
    def in_state_dir(
        cls,
        state_dir: Path,
        *,
        installer: Installer | None,
        policy: FirmwarePolicy,
        manufacturer_roots: Callable[[], list[x509.Certificate]],
        control: ChargePointControl,
        send: SendCall,
        status_request: StatusRequest,
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        storage: Storage,
        record_event: RecordEvent,
        interval_scale: float,
    ) -> FirmwareUpdater:
        """The charger's updater (either OCPP version): ``installer`` or pip under
        ``<state_dir>/firmware``, the version it runs, downloads under ``<state_dir>/tmp``
        and the operator's trust (``policy``; ``manufacturer_roots``: the CSMS-installed
        ManufacturerRootCertificates, trusted only where the policy allows)."""
        return cls(
            control=control,
            installer=installer or PipTargetInstaller(state_dir / FIRMWARE_DIR),
            current_version=running_version(installer),
            send=send,
            status_request=status_request,
            spawn=spawn,
            clock=clock,
            storage=storage,
            record_event=record_event,
            work_dir=state_dir / WORK_DIR,
            signing_roots=policy.signing_roots(file_roots, manufacturer_roots),
            policy=policy,
            interval_scale=interval_scale,
        )

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
        await asyncio.to_thread(self._clean_work_dir)
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

    def _clean_work_dir(self) -> None:
        """Worker thread: remove the folders of downloads a restart interrupted."""
        if not self._work_dir.is_dir():
            return
        for stale in self._work_dir.glob(f"{WORK_PREFIX}*"):
            log.info("removing the unfinished firmware download %s", stale)
            shutil.rmtree(stale, ignore_errors=True)

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
        *,
        certificate_optional: bool = False,
    ) -> SignedAnswer:
        """@on SignedUpdateFirmware (1.6) or UpdateFirmware (2.0.1): check the request and
        its signing certificate; the update starts in :meth:`start_planned` (replacing one
        that has not begun installing).

        ``certificate_optional`` (2.0.1, where signingCertificate and signature are
        optional, L02): a request without a signing certificate is checked like a plain
        update, against the package's detached signature (or refused unless unsigned
        firmware is allowed); it is still reported step by step with its requestId."""
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
            if pem or not certificate_optional:
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
        await asyncio.to_thread(self._work_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=WORK_PREFIX, dir=self._work_dir, ignore_cleanup_errors=True
        ) as tmp:
            package = await self._obtain(job, Path(tmp))
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

    async def _obtain(self, job: FirmwareJob, folder: Path) -> FirmwarePackage | None:
        """Download, verify and check the package; None when the update ended."""
        fetched = folder / "download"
        await self._notify(job, FirmwareStatus.DOWNLOADING)
        attempts = 1 + job.retries
        for attempt in range(1, attempts + 1):
            try:
                size = await asyncio.to_thread(
                    download, job.location, fetched, max_bytes=self._policy.max_bytes
                )
                await asyncio.to_thread(check_sha256, fetched, job.location)
                detached = None
                if not job.signing_certificate:
                    detached = await asyncio.to_thread(self._detached, job.location, folder)
            except TooLarge as exc:
                log.error("firmware download refused: %s", exc)
                break  # larger the next time too
            except (TransferError, FirmwareRejected, OSError) as exc:
                log.warning("firmware download %d/%d failed: %s", attempt, attempts, exc)
                if attempt < attempts:
                    await asyncio.sleep(job.retry_interval_s * self._scale)
                continue
            log.info("firmware from %s downloaded (%d bytes)", safe_url(job.location), size)
            await self._notify(job, FirmwareStatus.DOWNLOADED)
            try:
                return await self._verified(job, fetched, detached)
            except _Refused as exc:
                log.error("firmware from %s refused: %s", safe_url(job.location), exc)
                self._record(SecurityEvent.INVALID_FIRMWARE_SIGNATURE, str(exc), logged=True)
                await self._end(job, exc.status)
                return None
        await self._end(job, FirmwareStatus.DOWNLOAD_FAILED)
        return None

    def _detached(self, location: str, folder: Path) -> bytes | None:
        """Worker thread: the detached signature file of a plain update's package; None when
        the server has none (any other failure is a failed attempt)."""
        path = folder / "download.sig"
        try:
            download(signature_url(location), path, max_bytes=MAX_SIGNATURE_BYTES)
        except TransferError as exc:
            if exc.code in _NOT_FOUND and not isinstance(exc, TooLarge):
                return None
            raise
        return path.read_bytes()

    async def _verified(
        self, job: FirmwareJob, fetched: Path, detached: bytes | None
    ) -> FirmwarePackage | None:
        """The trust check, then the package check; :class:`_Refused` when trust is wanting
        (the caller records it and ends the update); None when the update ended because the
        package is not one to install."""
        refused = (
            FirmwareStatus.INVALID_SIGNATURE if job.signed else FirmwareStatus.INSTALLATION_FAILED
        )
        try:
            certificate, signature = self._signature_of(job, detached)
            if certificate:
                signer = await asyncio.to_thread(self._trusted, certificate)
                await asyncio.to_thread(verify_file, fetched, signer, signature)
        except (CertificateRefused, SignatureRefused) as exc:
            raise _Refused(str(exc), refused) from None
        if certificate:
            await self._notify(job, FirmwareStatus.SIGNATURE_VERIFIED)
        try:
            return await asyncio.to_thread(self._inspect, fetched, self._current, job.location)
        except Downgrade as exc:
            message = f"{exc} (allow_firmware_downgrade is off)"
            raise _Refused(message, FirmwareStatus.INSTALLATION_FAILED) from None
        except (FirmwareRejected, OSError) as exc:
            log.error("firmware update from %s refused: %s", safe_url(job.location), exc)
            await self._end(job, FirmwareStatus.INSTALLATION_FAILED)
            return None

    def _inspect(self, download: Path, current_version: str, url: str) -> FirmwarePackage:
        """Worker thread: the installer's own package check when it has one (the simulated
        installer takes any file), else :func:`inspect_package`; after the trust check."""
        allow_downgrade = self._policy.allow_downgrade
        if isinstance(self._installer, PackageInspector):
            return self._installer.inspect(
                download, current_version, url, allow_downgrade=allow_downgrade
            )
        return inspect_package(download, current_version, url, allow_downgrade=allow_downgrade)

    def _signature_of(self, job: FirmwareJob, detached: bytes | None) -> tuple[str, str]:
        """(signing certificate PEM, signature base64) of the package: the request's, else
        the detached signature file's; ("", "") for unsigned firmware the operator allowed;
        SignatureRefused when there is none to trust."""
        if job.signing_certificate:
            return job.signing_certificate, job.signature
        if detached is not None:
            found = parse_detached(detached)
            return found.certificate_pem, found.signature_b64
        if not self._policy.allow_unsigned:
            url = safe_url(signature_url(job.location))
            raise SignatureRefused(f"no detached signature at {url} (unsigned firmware is off)")
        log.warning(
            "SECURITY: installing UNSIGNED firmware from %s (allow_unsigned_firmware = true)",
            safe_url(job.location),
        )
        return "", ""

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
