"""OCPP 1.6 UpdateFirmware (§5.16) and FirmwareStatusNotification (§4.5).

The CSMS names a location (http, https or ftp URL of a picharge wheel or sdist), a
retrieveDate, and optionally retries and retryInterval. The answer (empty) goes at once;
then, in a task of its own:

1. wait until retrieveDate;
2. Downloading: fetch the file (:mod:`controller.file_transfer`), tried ``1 + retries``
   times (retries absent: 2) ``retryInterval`` s apart (absent: 30 s, scaled like every OCPP
   interval); DownloadFailed when no attempt succeeded or the file is refused by the check
   (:func:`controller.firmware_install.inspect_package`: a picharge wheel or sdist of another
   version than the running one; a URL ending in ``#sha256=<hex>`` or carrying
   ``?sha256=<hex>`` must match the file), else Downloaded;
3. wait until no transaction runs (a session is never cut short by an update);
4. Installing: the :class:`~controller.firmware_install.Installer` installs it beside the
   running version and switches to it (default :class:`PipTargetInstaller` under
   ``<state_dir>/firmware``); InstallationFailed leaves the running version current;
5. Installed, then a Hard reset: the controller re-execs into the new version, which is on
   trial until its first BootNotification is accepted (:meth:`FirmwareUpdater.booted`; see
   :func:`controller.firmware_install.guard` for the fall-back).

While nothing runs the status is Idle (what a TriggerMessage gets). One update at a time:
a request while one runs is answered and ignored (logged). Loop thread; downloads and
installs run in worker threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata
import logging
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, FirmwareStatus

from controller.domain import ChargePointControl, ResetKind
from controller.file_transfer import TransferError, download, safe_url, scheme_of
from controller.firmware_install import (
    DIST_NAME,
    FirmwareRejected,
    Installer,
    InstallFailed,
    inspect_package,
)
from controller.ocpp16.errors import CallFailed

if TYPE_CHECKING:
    from controller.ocpp16.charge_point import Services, Spawn

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 2
DEFAULT_RETRY_INTERVAL_S = 30
#: OCPP seconds between looks at whether the transactions have ended (before installing).
TRANSACTION_POLL_S = 10

SendCall = Callable[[Any], Awaitable[Any]]


def installed_version(dist_name: str = DIST_NAME) -> str:
    """The version of picharge this process runs ("0" when it is not installed)."""
    try:
        return importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return "0"


class FirmwareUpdater:
    """One UpdateFirmware at a time, and the status a trigger reports."""

    def __init__(
        self,
        *,
        control: ChargePointControl,
        installer: Installer,
        current_version: str,
        send: SendCall,
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        interval_scale: float = 1.0,
    ) -> None:
        self._control = control
        self._installer = installer
        self._current = current_version
        self._send = send
        self._spawn = spawn
        self._clock = clock
        self._scale = interval_scale
        self._status = FirmwareStatus.idle
        self._busy = False
        self._planned: dict[str, dict[str, Any]] = {}
        self._confirmed = False

    @property
    def status(self) -> FirmwareStatus:
        """The step under way; Idle when nothing runs or the last update ended."""
        return self._status

    def booted(self) -> None:
        """The link registered: the running version works, its trial ends (once a process)."""
        if not self._confirmed:
            self._confirmed = True
            self._spawn(self._confirm(), "ocpp16-firmware-confirm")

    async def _confirm(self) -> None:
        try:
            version = await asyncio.to_thread(self._installer.confirm)
        except OSError as exc:
            log.warning("could not end the firmware trial: %s", exc)
            return
        if version is not None:
            log.info("firmware %s registered with the CSMS: trial over", version)

    def plan(self, unique_id: str, location: str, retrieve_date: str, **request: Any) -> Any:
        """@on: the (empty) answer; the update starts in :meth:`start_planned`."""
        if self._busy:
            log.warning("UpdateFirmware while an update runs: ignored")
        elif scheme_of(location) is None:
            log.warning("UpdateFirmware from %s: unsupported location", safe_url(location))
        else:
            try:
                when = _parse_time(retrieve_date)
            except ValueError:
                log.warning("UpdateFirmware with unreadable retrieveDate %r", retrieve_date)
            else:
                self._planned = {unique_id: {"location": location, "when": when, **request}}
        return call_result.UpdateFirmware()

    def start_planned(self, unique_id: str) -> None:
        """@after: run what :meth:`plan` accepted, in a task."""
        request = self._planned.pop(unique_id, None)
        if request is not None:
            self._busy = True
            self._spawn(self._run(request), "ocpp16-firmware")

    async def _run(self, request: dict[str, Any]) -> None:
        try:
            await self._update(request)
        finally:
            self._busy = False
            self._status = FirmwareStatus.idle

    async def _update(self, request: dict[str, Any]) -> None:
        location: str = request["location"]
        delay = (request["when"] - self._clock()).total_seconds()
        if delay > 0:
            log.info("firmware from %s at %s", safe_url(location), request["when"])
            await asyncio.sleep(delay)
        retries = request.get("retries")
        attempts = 1 + (DEFAULT_RETRIES if retries is None else max(0, int(retries)))
        interval = request.get("retry_interval")
        seconds = DEFAULT_RETRY_INTERVAL_S if interval is None else max(0, int(interval))
        with tempfile.TemporaryDirectory(prefix="picharge-firmware-") as tmp:
            await self._notify(FirmwareStatus.downloading)
            fetched = Path(tmp) / "download"
            for attempt in range(1, attempts + 1):
                try:
                    size = await asyncio.to_thread(download, location, fetched)
                    package = await asyncio.to_thread(
                        inspect_package, fetched, self._current, location
                    )
                except (TransferError, FirmwareRejected, OSError) as exc:
                    log.warning("firmware download %d/%d failed: %s", attempt, attempts, exc)
                    if attempt < attempts:
                        await asyncio.sleep(seconds * self._scale)
                    continue
                break
            else:
                await self._notify(FirmwareStatus.download_failed)
                return
            log.info("firmware %s %s downloaded (%d bytes)", package.name, package.version, size)
            await self._notify(FirmwareStatus.downloaded)
            await self._until_no_transaction()
            await self._notify(FirmwareStatus.installing)
            try:
                where = await asyncio.to_thread(self._installer.install, package)
            except (InstallFailed, OSError) as exc:
                log.error("firmware %s not installed: %s", package.version, exc)
                await self._notify(FirmwareStatus.installation_failed)
                return
        log.warning("firmware %s installed in %s: restarting into it", package.version, where)
        await self._notify(FirmwareStatus.installed)
        self._installer.prepare_restart()
        await self._control.reset(ResetKind.HARD)

    async def _until_no_transaction(self) -> None:
        while any(
            (tx := self._control.view(c).transaction) is not None and tx.running
            for c in self._control.connector_ids
        ):
            log.info("firmware waits for the running transactions to end")
            await asyncio.sleep(TRANSACTION_POLL_S * self._scale)

    async def _notify(self, status: FirmwareStatus) -> None:
        self._status = status
        try:
            await self._send(call.FirmwareStatusNotification(status=status))
        except CallFailed as exc:
            log.warning("FirmwareStatusNotification %s not sent: %s", status, exc)


def _parse_time(value: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


class FirmwareHandlers:
    """UpdateFirmware, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.update_firmware)
    def on_update_firmware(
        self, location: str, retrieve_date: str, call_unique_id: str, **kwargs: Any
    ) -> Any:
        return self._s.firmware.plan(call_unique_id, location, retrieve_date, **kwargs)

    @after(Action.update_firmware)
    def after_update_firmware(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.firmware.start_planned(call_unique_id)
