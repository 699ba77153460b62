"""The local authorization list: its updates, its version and lookups.

The CSMS keeps a list of id tags in the charge point (1.6 §3.5.2, §5.15, §5.10): a Full
update replaces the list, a Differential update adds, changes (an entry with ``idTagInfo``)
or removes (an entry without) tags, and the list carries the version the CSMS gave it.
Answers follow the specification:

- ``NotSupported`` while the list is disabled (:attr:`ListSettings.local_list_enabled`; 1.6:
  ``LocalAuthListEnabled`` or no LocalAuthListManagement profile); the version is then -1.
- ``VersionMismatch`` for a Differential update whose version is not newer than the list's
  (the CSMS then sends a Full update).
- ``Failed`` for what cannot be applied: more entries than one update may carry
  (1.6: ``SendLocalListMaxLength``), a result longer than the list may be
  (``LocalAuthListMaxLength``), a Full entry without ``idTagInfo``, a tag twice in one
  request, an unreadable expiryDate, a negative version, or a database that will not store
  it. Nothing changes then.

The version adapter hands updates over as :class:`ListItem` (strings as the CSMS sent them,
parsed here, so every problem above is found in the same order whatever the version).

Version: what GetLocalListVersion answers and what a Differential update is compared with.
1.6 says 0 stands for an empty list, so an empty list has version 0 whatever version its
Full update named (the OCPP test tool clears the list with a Full update of version 0).

The list lives in :class:`~controller.storage.Storage` (table ``local_auth_list``, the
version in the settings namespace :data:`NAMESPACE`), written in one SQLite transaction
before the answer goes out, and in memory for lookups (at most ``LocalAuthListMaxLength``
small entries), so authorizing a card from the list costs no disk access. Tags compare
without case (CiString). Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from controller.csms.wire import parse_iso
from controller.domain import AuthResult, AuthStatus
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import Storage

log = logging.getLogger(__name__)

#: Storage settings namespace and key of the list's version.
NAMESPACE = "ocpp16.local_list"  # named before the split; existing state directories keep it
VERSION_KEY = "version"


class UpdateOutcome(StrEnum):
    """SendLocalList.conf status, in OCPP spelling."""

    ACCEPTED = "Accepted"
    FAILED = "Failed"
    NOT_SUPPORTED = "NotSupported"
    VERSION_MISMATCH = "VersionMismatch"


class ListSettings(Protocol):
    """The list's settings, read at each use; a version adapter maps its keys."""

    @property
    def local_list_enabled(self) -> bool:
        """False also when the charger is built without a local list."""
        ...

    @property
    def local_list_max(self) -> int:
        """Entries the list may hold."""
        ...

    @property
    def local_list_update_max(self) -> int:
        """Entries one update may carry."""
        ...


@dataclass(frozen=True, slots=True)
class ListItem:
    """One tag of an update as the CSMS sent it; ``status`` None: no IdTagInfo (a removal in
    a Differential update). ``expiry`` is the CSMS's ISO 8601 text."""

    id_tag: str
    status: str | None = None
    parent_id: str | None = None
    expiry: str | None = None


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One tag of the list: its IdTagInfo as the CSMS sent it. Times are aware UTC."""

    id_tag: str
    status: AuthStatus
    parent_id: str | None
    expiry: dt.datetime | None


class BadUpdate(ValueError):
    """A SendLocalList request that cannot be applied (answered Failed)."""


def _entry_from_item(item: ListItem) -> tuple[str, ListEntry | None]:
    """(tag, entry) of an update item; entry None: a removal."""
    tag = item.id_tag
    if item.status is None:
        return tag, None
    expiry = None
    if item.expiry is not None:
        try:
            expiry = parse_iso(item.expiry)
        except ValueError as exc:
            raise BadUpdate(f"{tag}: unreadable expiryDate {item.expiry!r}") from exc
    return tag, ListEntry(tag, AuthStatus(item.status), item.parent_id, expiry)


def _parse_items(items: Iterable[ListItem]) -> dict[str, tuple[str, ListEntry | None]]:
    """{folded tag: (tag, entry or None)}; a tag named twice is a :class:`BadUpdate`."""
    parsed: dict[str, tuple[str, ListEntry | None]] = {}
    for item in items:
        tag, entry = _entry_from_item(item)
        key = tag.casefold()
        if key in parsed:
            raise BadUpdate(f"{tag} appears more than once")
        parsed[key] = (tag, entry)
    return parsed


def _utc_text(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


class LocalAuthList:
    """The local authorization list of one charge point (in memory and in storage)."""

    def __init__(
        self, settings: ListSettings, storage: Storage, clock: Callable[[], dt.datetime]
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._clock = clock
        self._entries: dict[str, ListEntry] = {}  # by folded tag
        self._version = 0
        self._loaded = False
        self._lock = asyncio.Lock()  # one update (or load) at a time

    # --- settings -------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """Whether the list is in use (read at each decision: a change applies at once)."""
        return self._settings.local_list_enabled

    # --- reading ----------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The entries held, whether the list is enabled or not (0 until first read)."""
        return len(self._entries)

    async def load(self) -> None:
        """Read the list now (at start, so :attr:`size` is right before the first lookup);
        raises StorageError."""
        await self._ensure_loaded()

    async def _ensure_loaded(self) -> None:
        """Read the list from storage once; raises StorageError (and tries again next time)."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            version, rows = await self._storage.run(_load_job)
            self._entries = {}
            for tag, status, parent_id, expiry in rows:
                when = None if expiry is None else dt.datetime.fromisoformat(expiry)
                self._entries[tag.casefold()] = ListEntry(tag, AuthStatus(status), parent_id, when)
            self._version = version
            self._loaded = True
            log.info("local authorization list: %d entries, version %d", len(rows), version)

    async def version(self) -> int:
        """GetLocalListVersion: -1 disabled, 0 empty, else the version of the last update.

        Raises StorageError when the list cannot be read.
        """
        if not self.enabled:
            return -1
        await self._ensure_loaded()
        return self._version if self._entries else 0

    async def lookup(self, id_tag: str) -> AuthResult | None:
        """The list's answer for ``id_tag``; None when the list is off or does not know it.

        An Accepted entry whose expiry date has passed answers Expired (1.6 §3.5.4). A
        database that cannot be read is logged and taken as an empty list.
        """
        if not self.enabled:
            return None
        try:
            await self._ensure_loaded()
        except StorageError as exc:
            log.error("local authorization list unreadable, not used: %s", exc)
            return None
        entry = self._entries.get(id_tag.casefold())
        if entry is None:
            return None
        status = entry.status
        expired = entry.expiry is not None and entry.expiry <= self._clock()
        if status is AuthStatus.ACCEPTED and expired:
            status = AuthStatus.EXPIRED
        return AuthResult(status, entry.parent_id, entry.expiry)

    async def knows(self, id_tag: str) -> bool:
        """Whether the (enabled) list holds ``id_tag``: such ids stay out of the cache."""
        return await self.lookup(id_tag) is not None

    # --- updating ---------------------------------------------------------------------------

    async def update(
        self, update_type: str, list_version: int, items: Sequence[ListItem]
    ) -> UpdateOutcome:
        """Apply an update (``update_type`` "Full" or "Differential"); durable before it
        returns Accepted."""
        if not self.enabled:
            log.info("SendLocalList: the local authorization list is disabled")
            return UpdateOutcome.NOT_SUPPORTED
        try:
            await self._ensure_loaded()
            async with self._lock:
                return await self._update(update_type, list_version, items)
        except BadUpdate as exc:
            log.warning("SendLocalList %s version %d failed: %s", update_type, list_version, exc)
            return UpdateOutcome.FAILED
        except StorageError as exc:
            log.error("SendLocalList %s version %d not stored: %s", update_type, list_version, exc)
            return UpdateOutcome.FAILED

    async def _update(
        self, update_type: str, list_version: int, items: Sequence[ListItem]
    ) -> UpdateOutcome:
        full = update_type == "Full"
        current = self._version if self._entries else 0
        if not full and list_version <= current:
            log.warning(
                "SendLocalList Differential version %d, the list is at %d: VersionMismatch",
                list_version,
                current,
            )
            return UpdateOutcome.VERSION_MISMATCH
        if list_version < 0:
            raise BadUpdate("a negative listVersion")
        send_max = self._settings.local_list_update_max
        if len(items) > send_max:
            raise BadUpdate(f"{len(items)} entries, SendLocalListMaxLength is {send_max}")
        changes = _parse_items(items)
        if full:
            missing = [tag for tag, entry in changes.values() if entry is None]
            if missing:
                raise BadUpdate(f"a Full update without idTagInfo for {missing[0]}")
            entries: dict[str, ListEntry] = {}
        else:
            entries = dict(self._entries)
        for key, (_, entry) in changes.items():
            if entry is None:
                entries.pop(key, None)
            else:
                entries[key] = entry
        list_max = self._settings.local_list_max
        if len(entries) > list_max:
            raise BadUpdate(f"{len(entries)} entries, LocalAuthListMaxLength is {list_max}")
        await self._storage.run(_write_job(full, list_version, changes))
        self._entries, self._version = entries, list_version
        log.info(
            "local authorization list: %s update to version %d, %d entries",
            update_type,
            list_version,
            len(entries),
        )
        return UpdateOutcome.ACCEPTED


# --- storage jobs (run on the storage thread) -----------------------------------------------


_Row = tuple[str, str, str | None, str | None]  # id_tag, status, parent_id, expiry


def _load_job(conn: sqlite3.Connection) -> tuple[int, list[_Row]]:
    row = conn.execute(
        "SELECT value FROM settings WHERE namespace = ? AND key = ?", (NAMESPACE, VERSION_KEY)
    ).fetchone()
    rows = conn.execute(
        "SELECT id_tag, status, parent_id, expiry FROM local_auth_list ORDER BY id_tag_lower"
    ).fetchall()
    return (int(row[0]) if row is not None else 0), rows


def _write_job(
    full: bool, version: int, changes: Mapping[str, tuple[str, ListEntry | None]]
) -> Callable[[sqlite3.Connection], None]:
    def job(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if full:
                conn.execute("DELETE FROM local_auth_list")
            for key, (tag, entry) in changes.items():
                if entry is None:
                    conn.execute("DELETE FROM local_auth_list WHERE id_tag_lower = ?", (key,))
                    continue
                conn.execute(
                    "INSERT INTO local_auth_list (id_tag_lower, id_tag, status, parent_id, expiry)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id_tag_lower) DO UPDATE SET"
                    " id_tag = excluded.id_tag, status = excluded.status,"
                    " parent_id = excluded.parent_id, expiry = excluded.expiry",
                    (key, tag, entry.status.value, entry.parent_id, _utc_text(entry.expiry)),
                )
            conn.execute(
                "INSERT INTO settings (namespace, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                (NAMESPACE, VERSION_KEY, str(version)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    return job
