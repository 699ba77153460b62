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

Storage (issue 12 §6, SD-card wear): each event is one row of the ``security_events``
table, inserted when recorded and marked sent when the CSMS answered (one small UPDATE);
the history is never rewritten. Rows beyond :data:`MAX_HISTORY` are deleted
:data:`PRUNE_EVERY` at a time, in the same write as the insert that passes the mark. (The
earlier store rewrote the whole history, about 150 kB, at every event: a charger whose CSMS
refuses it wrote some 200 MB a day.) A state directory of the earlier kind is read once
and moved into the table. Writes go to the storage thread in order
(:meth:`controller.storage.Storage.submit`); a failed one faults the charge point there.
Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from controller.csms.wire import iso_utc, parse_iso
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

#: Where the events lived before they were rows (read once, then deleted).
NAMESPACE = "ocpp16-security-events"
PENDING_KEY = "pending"
HISTORY_KEY = "history"
MAX_PENDING = 50
#: Events kept for GetLog SecurityLog (about 150 bytes each stored).
MAX_HISTORY = 1000
#: Rows beyond MAX_HISTORY deleted in one go (so pruning is not a write per event).
PRUNE_EVERY = 100
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


class _Row:
    """Where an event's row is: its ``seq`` once the storage thread inserted it. Jobs run
    in submission order on that one thread, so a later job always finds it set."""

    __slots__ = ("seq",)

    def __init__(self, seq: int | None = None) -> None:
        self.seq = seq


class SecurityEvents:
    """The pending security events and their sending."""

    def __init__(self, storage: Storage, clock: Callable[[], dt.datetime]) -> None:
        self._storage = storage
        self._clock = clock
        self._pending: list[tuple[_Row, dict[str, str]]] = []
        self._history: list[dict[str, str]] = []
        self._added = asyncio.Event()
        self._last_write: asyncio.Future[None] | None = None
        self._stored_rows = 0  # rows in the table, as far as this run knows

    @property
    def pending(self) -> list[dict[str, str]]:
        """Copies of the events not yet answered by the CSMS (wire camelCase)."""
        return [dict(event) for _, event in self._pending]

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
        await self._import_settings()
        rows = await self._storage.run(
            lambda conn: conn.execute(
                "SELECT seq, type, timestamp, tech_info, pending FROM security_events ORDER BY seq"
            ).fetchall()
        )
        pending: list[tuple[_Row, dict[str, str]]] = []
        history: list[dict[str, str]] = []
        for seq, kind, timestamp, tech_info, is_pending in rows:
            event = _event(kind, timestamp, tech_info)
            if event is None:
                continue
            history.append(event)
            if is_pending:
                pending.append((_Row(int(seq)), dict(event)))
        self._stored_rows += len(rows)
        dropped = pending[:-MAX_PENDING]
        self._pending[:0] = pending[-MAX_PENDING:]
        del self._pending[:-MAX_PENDING]
        if dropped:
            self._write(lambda conn: _unmark(conn, [row for row, _ in dropped]))
        if self._pending:
            self._added.set()
        self._history[:0] = history
        del self._history[:-MAX_HISTORY]

    def record(
        self, event: SecurityEvent, tech_info: str | None = None, *, logged: bool = False
    ) -> None:
        """Log the event and queue it for the CSMS (stored in the background: one row).
        ``logged``: the caller has logged it already (one line per failure): DEBUG here."""
        level = logging.DEBUG if logged else logging.INFO
        log.log(level, "security event %s%s", event, f": {tech_info}" if tech_info else "")
        entry = {"type": event.value, "timestamp": iso_utc(self._clock())}
        if tech_info:
            entry["techInfo"] = tech_info[:TECH_INFO_MAX]
        row = _Row()
        self._pending.append((row, entry))
        dropped = [r for r, _ in self._pending[:-MAX_PENDING]]
        del self._pending[:-MAX_PENDING]
        self._history.append(dict(entry))
        del self._history[:-MAX_HISTORY]
        self._added.set()
        self._stored_rows += 1
        prune = self._stored_rows >= MAX_HISTORY + PRUNE_EVERY
        if prune:
            self._stored_rows = MAX_HISTORY

        def insert(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                cursor = conn.execute(
                    "INSERT INTO security_events (type, timestamp, tech_info, pending)"
                    " VALUES (?, ?, ?, 1)",
                    (entry["type"], entry["timestamp"], entry.get("techInfo")),
                )
                row.seq = cursor.lastrowid
                _unmark(conn, dropped)
                if prune:
                    conn.execute(
                        "DELETE FROM security_events WHERE seq <= ?",
                        (int(cursor.lastrowid or 0) - MAX_HISTORY,),
                    )

        self._write(insert)

    def _sent(self, row: _Row) -> None:
        self._write(lambda conn: _unmark(conn, [row]))

    def _write(self, job: Callable[[sqlite3.Connection], None]) -> None:
        """Submit ``job`` to the storage thread now (in order); a failure is logged here
        (and heard by the storage's failure hook)."""
        try:
            future = self._storage.submit(job)
        except StorageError as exc:
            log.error("security events not stored: %s", exc)
            return
        future.add_done_callback(_log_failure)
        self._last_write = future

    async def _import_settings(self) -> None:
        """A state directory from before the table: move its two JSON lists into rows."""
        stored = await self._storage.load_settings(NAMESPACE)
        if not stored:
            return
        pending = _events(stored.get(PENDING_KEY), "pending")
        history = _events(stored.get(HISTORY_KEY), "history")
        pending_keys = {(e["type"], e["timestamp"], e.get("techInfo")) for e in pending}
        rows = [
            (e["type"], e["timestamp"], e.get("techInfo"), 0)
            for e in history
            if (e["type"], e["timestamp"], e.get("techInfo")) not in pending_keys
        ]
        rows += [(e["type"], e["timestamp"], e.get("techInfo"), 1) for e in pending]

        def move(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO security_events (type, timestamp, tech_info, pending)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
                conn.execute("DELETE FROM settings WHERE namespace = ?", (NAMESPACE,))

        await self._storage.run(move)
        log.info("security events moved into their own table (%d)", len(rows))

    async def flush(self) -> None:
        """Wait until the last recorded state is stored (tests, shutdown)."""
        if self._last_write is not None:
            await asyncio.gather(self._last_write, return_exceptions=True)

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
            row, event = self._pending[0]
            try:
                await send(dict(event))
            except failures as exc:
                log.warning("SecurityEventNotification %s not delivered: %s", event["type"], exc)
            if self._pending and self._pending[0][1] is event:
                self._pending.pop(0)
            self._sent(row)


def _unmark(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Storage thread: these events are no longer pending (answered, or dropped for room)."""
    seqs = [(row.seq,) for row in rows if row.seq is not None]
    if seqs:
        conn.executemany("UPDATE security_events SET pending = 0 WHERE seq = ?", seqs)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an error) on the storage's
    autocommit connection: one durable write."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("security events not stored: %s", future.exception())


def _event(kind: str, timestamp: str, tech_info: str | None) -> dict[str, str] | None:
    """A stored row as the wire event; an unreadable one is logged and gives None."""
    event = {"type": str(kind), "timestamp": str(timestamp)}
    if tech_info:
        event["techInfo"] = str(tech_info)
    try:
        _recorded_at(event)
    except (ValueError, TypeError) as exc:
        log.warning("stored security event unreadable (%s): dropped", exc)
        return None
    return event


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
