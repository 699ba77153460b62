"""SecurityEventNotification (OCPP 1.6 security whitepaper): the charger's security log.

Events are recorded where they happen (a refused connection, a reset, a changed security
key) and pushed to the CSMS in order once the link is registered: a failed
connection attempt can only be told afterwards. The pending events are kept in
:class:`~controller.storage.Storage` (namespace :data:`NAMESPACE`), so a reset's
ResetOrReboot still reaches the CSMS when the restart came before the link could send it.
At most :data:`MAX_PENDING` wait (a charger retrying a refused CSMS for days would
otherwise grow without end); the oldest go first.

Every event is also logged (INFO; a refused connection is logged once, by the link), so
the local log is the security log as well.

Besides the pending list, every event goes into a bounded history (the last
:data:`MAX_HISTORY`, also stored) that sending does not empty: GetLog SecurityLog uploads it,
so the CSMS can fetch events it was told already, and events from before a restart.
Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from controller.csms.wire import iso_utc, parse_iso
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "ocpp16-security-events"  # named before the split; existing state directories keep it
PENDING_KEY = "pending"
HISTORY_KEY = "history"
MAX_PENDING = 50
#: Events kept for GetLog SecurityLog (about 150 bytes each stored).
MAX_HISTORY = 1000
#: SecurityEventNotification.req techInfo is a CiString255.
TECH_INFO_MAX = 255


class SecurityEvent(StrEnum):
    """The whitepaper's security event types this charger records."""

    FAILED_TO_AUTHENTICATE = "FailedToAuthenticateAtCentralSystem"  # CSMS refused us
    INVALID_CSMS_CERTIFICATE = "InvalidCentralSystemCertificate"  # we refused the CSMS
    RESET_OR_REBOOT = "ResetOrReboot"
    RECONFIGURATION = "ReconfigurationOfSecurityParameters"
    FIRMWARE_UPDATED = "FirmwareUpdated"  # a new version registered after its install
    INVALID_FIRMWARE_SIGNATURE = "InvalidFirmwareSignature"
    INVALID_CHARGE_POINT_CERTIFICATE = "InvalidChargePointCertificate"  # CertificateSigned
    INVALID_FIRMWARE_SIGNING_CERTIFICATE = "InvalidFirmwareSigningCertificate"


class SecurityEvents:
    """The pending security events and their sending."""

    def __init__(self, storage: Storage, clock: Callable[[], dt.datetime]) -> None:
        self._storage = storage
        self._clock = clock
        self._pending: list[dict[str, str]] = []
        self._history: list[dict[str, str]] = []
        self._history_changed = False
        self._added = asyncio.Event()
        self._saving: asyncio.Task[None] | None = None

    @property
    def pending(self) -> list[dict[str, str]]:
        """Copies of the events not yet answered by the CSMS (wire camelCase)."""
        return [dict(event) for event in self._pending]

    def history(
        self, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> list[dict[str, str]]:
        """Copies of the remembered events (oldest first) recorded between ``since`` and
        ``until`` (inclusive; None: open end), sent or not."""
        return [
            dict(event)
            for event in self._history
            if (since is None or since <= _recorded_at(event))
            and (until is None or _recorded_at(event) <= until)
        ]

    async def restore(self) -> None:
        """Take back what the last run could not send and its history (a corrupt record is
        logged, dropped); events recorded in this run stay after them."""
        stored = await self._storage.load_settings(NAMESPACE)
        pending = _events(stored.get(PENDING_KEY), "pending")
        self._pending[:0] = pending[-MAX_PENDING:]
        del self._pending[:-MAX_PENDING]
        if self._pending:
            self._added.set()
        self._history[:0] = _events(stored.get(HISTORY_KEY), "history")
        del self._history[:-MAX_HISTORY]

    def record(
        self, event: SecurityEvent, tech_info: str | None = None, *, logged: bool = False
    ) -> None:
        """Log the event and queue it for the CSMS (persisted in the background).
        ``logged``: the caller has logged it already (one line per failure): DEBUG here."""
        level = logging.DEBUG if logged else logging.INFO
        log.log(level, "security event %s%s", event, f": {tech_info}" if tech_info else "")
        entry = {"type": event.value, "timestamp": iso_utc(self._clock())}
        if tech_info:
            entry["techInfo"] = tech_info[:TECH_INFO_MAX]
        self._pending.append(entry)
        del self._pending[:-MAX_PENDING]
        self._history.append(dict(entry))
        del self._history[:-MAX_HISTORY]
        self._added.set()
        self._save(with_history=True)

    def _save(self, *, with_history: bool = False) -> None:
        """Write the pending list (and the history when it changed); one write at a time,
        the newest state last. A write that a later one overtakes while it waits is left to
        that one (a burst of events is stored once, not once an event: 1000 kept events are
        about 150 kB)."""
        previous = self._saving
        self._history_changed |= with_history

        async def write() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            if self._saving is not asyncio.current_task():
                return  # a later write stores the newer state
            snapshots = {PENDING_KEY: _dump(self._pending)}
            if self._history_changed:
                snapshots[HISTORY_KEY] = _dump(self._history)
                self._history_changed = False
            try:
                for key, snapshot in snapshots.items():
                    await self._storage.save_setting(NAMESPACE, key, snapshot)
            except StorageError as exc:
                log.error("security events not stored: %s", exc)

        self._saving = asyncio.get_running_loop().create_task(write(), name="security-events")

    async def flush(self) -> None:
        """Wait until the last recorded state is stored (tests, shutdown)."""
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)

    async def drain(
        self,
        send: Callable[[Mapping[str, str]], Awaitable[Any]],
        failures: tuple[type[BaseException], ...],
    ) -> None:
        """Send the pending events in order while registered; runs until cancelled.

        ``send`` delivers one event (``type``, ``timestamp``, optional ``techInfo``) as the
        version speaks it (1.6: SecurityEventNotification).

        An event the CSMS answers (even with a CALLERROR, e.g. a CSMS without the
        whitepaper) is done; ``failures`` raised by ``send`` are logged and the event goes.
        A cancellation (the link closed) leaves the event pending for the next connection.
        """
        while True:
            if not self._pending:
                self._added.clear()
                await self._added.wait()
                continue
            event = self._pending[0]
            try:
                await send(dict(event))
            except failures as exc:
                log.warning("SecurityEventNotification %s not delivered: %s", event["type"], exc)
            if self._pending and self._pending[0] is event:
                self._pending.pop(0)
            self._save()


def _events(stored: str | None, what: str) -> list[dict[str, str]]:
    """The events of a stored JSON list; an unreadable one is logged and gives none."""
    if not stored:
        return []
    try:
        events = [
            {str(k): str(v) for k, v in event.items()}
            for event in json.loads(stored)
            if isinstance(event, dict) and "type" in event and "timestamp" in event
        ]
        for event in events:
            _recorded_at(event)  # a timestamp that does not read spoils the record
        return events
    except (ValueError, AttributeError, TypeError) as exc:
        log.warning("stored security events (%s) unreadable (%s): dropped", what, exc)
        return []


def _recorded_at(event: dict[str, str]) -> dt.datetime:
    """When an event was recorded (its wire timestamp, UTC)."""
    return parse_iso(event["timestamp"])


def _dump(events: list[dict[str, str]]) -> str:
    return json.dumps(events, separators=(",", ":"))
