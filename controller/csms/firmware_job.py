"""The firmware update under way, kept across restarts (UpdateFirmware and SignedUpdateFirmware).

A charger may restart at any moment between an accepted update and its end: a power cut
during a download, a scheduled retrieveDate days away, and always the restart into the new
version. The job is stored (:class:`~controller.storage.Storage` settings, namespace
:data:`NAMESPACE`) when it is accepted and at each step that a restart must not lose:

- :attr:`Stage.SCHEDULED`: accepted, nothing installed yet. After a restart it runs again
  from the start: it waits for retrieveDate if that is still ahead, else downloads at once
  (an interrupted download starts afresh: the partial file was in a temporary directory).
- :attr:`Stage.INSTALLING`: the installer was called for :attr:`FirmwareJob.version`; the
  switch to it may or may not have happened before the process ended.
- :attr:`Stage.REBOOTING`: installed and current; the restart into it was asked for.

In the last two stages the verdict comes after the restart, once the link registers: the new
version confirms its trial (see :func:`controller.firmware_install.confirm`) and the update is
Installed, or the fall-back put the previous version back and it is InstallationFailed.
Loop thread; the storage does the blocking work in its own thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "ocpp16-firmware"  # named before the split; existing state directories keep it
JOB_KEY = "job"
#: The requestId of the last SignedUpdateFirmware (what ExtendedTriggerMessage reports).
LAST_REQUEST_KEY = "last-request-id"


class Stage(StrEnum):
    SCHEDULED = "scheduled"
    INSTALLING = "installing"
    REBOOTING = "rebooting"


@dataclass(frozen=True, slots=True)
class FirmwareJob:
    """One update as the CSMS asked for it, and how far it got.

    ``request_id`` is None for a 1.6 plain UpdateFirmware (reported in 1.6 core's words);
    a 1.6 SignedUpdateFirmware or any 2.0.1 UpdateFirmware has one (every step reported
    with it). The signing certificate (PEM) and the signature (base64) are the request's;
    empty (2.0.1 without them, L02): the package's detached signature decides, as for a
    plain update. Times are aware UTC datetimes;
    ``retry_interval_s`` is in OCPP seconds (the updater scales it like every interval).
    """

    location: str
    retrieve_at: dt.datetime
    retries: int
    retry_interval_s: int
    request_id: int | None = None
    install_at: dt.datetime | None = None
    signing_certificate: str = ""
    signature: str = ""
    stage: Stage = Stage.SCHEDULED
    version: str = ""  # the version being installed, from Stage.INSTALLING on

    @property
    def signed(self) -> bool:
        """Reported step by step with a requestId (not: who vouches for the package)."""
        return self.request_id is not None

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["retrieve_at"] = self.retrieve_at.isoformat()
        data["install_at"] = self.install_at.isoformat() if self.install_at else None
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> FirmwareJob:
        """Raises ValueError, KeyError or TypeError for a record this code cannot read."""
        data = json.loads(text)
        install_at = data.get("install_at")
        return cls(
            location=str(data["location"]),
            retrieve_at=dt.datetime.fromisoformat(data["retrieve_at"]),
            retries=int(data["retries"]),
            retry_interval_s=int(data["retry_interval_s"]),
            request_id=None if data.get("request_id") is None else int(data["request_id"]),
            install_at=dt.datetime.fromisoformat(install_at) if install_at else None,
            signing_certificate=str(data.get("signing_certificate", "")),
            signature=str(data.get("signature", "")),
            stage=Stage(data.get("stage", Stage.SCHEDULED)),
            version=str(data.get("version", "")),
        )


class JobStore:
    """The stored job (at most one) and the last signed requestId. A failing database is
    logged and the update goes on: it only loses its resumption."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def load(self) -> tuple[FirmwareJob | None, int | None]:
        """The stored job (an unreadable record is logged and dropped) and last requestId."""
        try:
            stored = await self._storage.load_settings(NAMESPACE)
        except StorageError as exc:
            log.error("stored firmware update not readable: %s", exc)
            return None, None
        last_text = stored.get(LAST_REQUEST_KEY, "")
        last = int(last_text) if last_text.lstrip("-").isdigit() else None
        text = stored.get(JOB_KEY, "")
        if not text:
            return None, last
        try:
            return FirmwareJob.from_json(text), last
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("stored firmware update unreadable (%s): dropped", exc)
            await self.clear()
            return None, last

    async def save(self, job: FirmwareJob) -> None:
        await self._write(JOB_KEY, job.to_json())
        if job.request_id is not None:
            await self._write(LAST_REQUEST_KEY, str(job.request_id))

    async def clear(self) -> None:
        await self._write(JOB_KEY, "")

    async def _write(self, key: str, value: str) -> None:
        try:
            await self._storage.save_setting(NAMESPACE, key, value)
        except StorageError as exc:
            log.error("firmware update not stored (%s): a restart would lose it", exc)
