"""The charger's durable state: one SQLite file, ``<state_dir>/picharge.db``.

What must survive a power cut lives here: OCPP configuration values, the authorization cache
and (issue 5) transactions, the outbox of messages not yet confirmed by the CSMS, the local
authorization list and charging profiles. The database runs in WAL mode with
``synchronous=FULL``, so a change is on disk when the coroutine that made it returns: a
value the CSMS was told is stored is stored.

Threads: ``sqlite3`` connections belong to the thread that made them, and every call blocks
on the SD card. All SQLite work therefore runs on one dedicated worker thread (a
single-worker :class:`~concurrent.futures.ThreadPoolExecutor`) and the asyncio loop only
awaits it. The worker runs jobs in the order they were submitted, so writes from the loop
are applied in the order they were made.

Schema: ``PRAGMA user_version`` counts the migrations applied; :data:`MIGRATIONS` lists them
in order and :meth:`Storage.open` applies the missing ones, each in its own transaction.
Adding tables is appending a migration, never editing an old one. A database written by a
newer picharge (a higher version than this one knows) is refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from drivers.threads import named_executor

log = logging.getLogger(__name__)

DB_NAME = "picharge.db"
#: The storage thread's name (it is ``storage_0``; see :mod:`drivers.threads`).
STORAGE_THREAD = "storage"
#: How long a statement waits for a lock held by another process (an operator's ``sqlite3``
#: shell, say) before failing, in milliseconds.
BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")


class StorageError(Exception):
    """The state database cannot be used: unreadable, corrupt, too new, or closed."""


class StorageCorrupt(StorageError):
    """The file is not a SQLite database, or its integrity check fails (see
    :func:`controller.recovery.open_state`, which moves such a file aside)."""


@dataclass(frozen=True, slots=True)
class CachedAuth:
    """One authorization cache entry (OCPP IdTagInfo as last received for ``id_tag``).

    ``id_tag`` keeps the spelling last stored; lookups ignore case. ``status`` uses the OCPP
    AuthorizationStatus spelling ("Accepted", "Blocked", ...). Times are aware UTC datetimes;
    ``expiry`` None means the entry does not expire by date.
    """

    id_tag: str
    status: str
    parent_id: str | None
    expiry: dt.datetime | None
    updated_at: dt.datetime


# --- schema -------------------------------------------------------------------------------


def _v1_settings_and_auth_cache(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE settings ("
        " namespace TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " value TEXT NOT NULL,"
        " PRIMARY KEY (namespace, key))"
    )
    conn.execute(
        "CREATE TABLE auth_cache ("
        " id_tag_lower TEXT PRIMARY KEY,"
        " id_tag TEXT NOT NULL,"
        " status TEXT NOT NULL,"
        " parent_id TEXT,"
        " expiry TEXT,"  # ISO 8601 UTC, NULL = no expiry date
        " updated_at TEXT NOT NULL)"
    )


def _v2_charging_profiles(conn: sqlite3.Connection) -> None:
    """Installed OCPP charging profiles (controller.csms.profile_store)."""
    conn.execute(
        "CREATE TABLE charging_profiles ("
        " key TEXT PRIMARY KEY,"  # this installation; a replacement gets a new key
        " profile_id INTEGER NOT NULL,"  # the CSMS's chargingProfileId
        " connector_id INTEGER,"  # NULL: a remote start's profile, connector not known yet
        " transaction_key TEXT,"  # local id of the transaction a TxProfile belongs to
        " id_tag TEXT,"  # a remote start's idTag its TxProfile waits for
        " body TEXT NOT NULL,"  # the profile as the CSMS sent it (JSON)
        " installed_at TEXT NOT NULL)"  # ISO 8601 UTC
    )


def _v3_local_auth_list(conn: sqlite3.Connection) -> None:
    """The OCPP local authorization list (controller.csms.local_list); its version is
    the setting (``ocpp16.local_list``, ``version``), written in the same transaction."""
    conn.execute(
        "CREATE TABLE local_auth_list ("
        " id_tag_lower TEXT PRIMARY KEY,"
        " id_tag TEXT NOT NULL,"
        " status TEXT NOT NULL,"  # OCPP AuthorizationStatus spelling
        " parent_id TEXT,"
        " expiry TEXT)"  # ISO 8601 UTC, NULL = no expiry date
    )


def _v4_reservations(conn: sqlite3.Connection) -> None:
    """Reservations the CSMS made (controller.csms.reservations)."""
    conn.execute(
        "CREATE TABLE reservations ("
        " reservation_id INTEGER PRIMARY KEY,"
        " connector_id INTEGER NOT NULL,"  # 0 = any connector
        " id_tag TEXT NOT NULL,"
        " parent_id TEXT,"
        " expiry TEXT NOT NULL)"  # ISO 8601 UTC
    )


def _v5_transactions_and_outbox(conn: sqlite3.Connection) -> None:
    """Transaction records and the outbox of transaction messages (issue 5:
    controller.journal, controller.outbox)."""
    conn.execute(
        "CREATE TABLE transactions ("
        " local_id TEXT PRIMARY KEY,"
        " connector_id INTEGER NOT NULL,"
        " id_tag TEXT NOT NULL,"
        " parent_id TEXT,"
        " meter_start_wh REAL NOT NULL,"
        " started_at TEXT NOT NULL,"  # ISO 8601 UTC, as every time below
        " last_meter_wh REAL NOT NULL,"  # the last reading persisted while it ran
        " last_meter_at TEXT NOT NULL,"
        " meter_stop_wh REAL,"  # NULL while running
        " stopped_at TEXT,"
        " stop_reason TEXT)"
    )
    conn.execute("CREATE INDEX transactions_running ON transactions (stopped_at)")
    conn.execute(
        "CREATE TABLE outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"  # send order
        " local_id TEXT NOT NULL,"  # the transaction it belongs to
        " kind TEXT NOT NULL,"  # e.g. StartTransaction
        " body TEXT NOT NULL,"  # JSON
        " ends_transaction INTEGER NOT NULL,"  # 1: a StopTransaction (or its equivalent)
        " boot TEXT NOT NULL)"  # which run of the controller queued it
    )
    conn.execute("CREATE INDEX outbox_local_id ON outbox (local_id)")
    conn.execute(
        "CREATE TABLE outbox_ids ("  # our transaction id -> the CSMS's, once confirmed
        " local_id TEXT PRIMARY KEY,"
        " csms_id INTEGER NOT NULL)"
    )


def _v6_security_events(conn: sqlite3.Connection) -> None:
    """Security events as rows (issue 12 §6): one event is one INSERT, never a rewrite of
    the whole history (see :mod:`controller.csms.security_events`)."""
    conn.execute(
        "CREATE TABLE security_events ("
        " seq INTEGER PRIMARY KEY,"
        " type TEXT NOT NULL,"
        " timestamp TEXT NOT NULL,"
        " tech_info TEXT,"
        " pending INTEGER NOT NULL)"  # 1 until the CSMS answered it (or it was dropped)
    )


def _v7_local_cards(conn: sqlite3.Connection) -> None:
    """Standalone cards managed from the web page (issue 15: controller.card_store)."""
    conn.execute(
        "CREATE TABLE local_cards ("
        " uid TEXT PRIMARY KEY,"  # upper case, compared without case like OCPP idTags
        " name TEXT NOT NULL,"
        " enabled INTEGER NOT NULL,"
        " expires_at TEXT,"  # ISO 8601 UTC; NULL: never
        " added_at TEXT NOT NULL)"
    )
    # Session history filters by month (started_at) and card (id_tag).
    conn.execute("CREATE INDEX transactions_started ON transactions (started_at)")


def _v8_outbox_protocol(conn: sqlite3.Connection) -> None:
    """Which OCPP version queued each outbox row (issue 14: a charger switched between 1.6
    and 2.0.1 keeps its state directory; each version's queue touches only its own rows,
    see :mod:`controller.outbox`). Rows from before: '2.0.1' when the body has
    TransactionEvent's keys, else '1.6'. ``outbox_ids`` is rebuilt with the protocol and a
    nullable ``csms_id``: under 2.0.1 the charger's own id is the transaction's id, and the
    row only records that the CSMS has the transaction's start."""
    conn.execute("ALTER TABLE outbox ADD COLUMN protocol TEXT NOT NULL DEFAULT '1.6'")
    conn.execute(
        "UPDATE outbox SET protocol = '2.0.1'"
        " WHERE json_valid(body) AND (json_extract(body, '$.event_type') IS NOT NULL"
        " OR json_extract(body, '$.seq_no') IS NOT NULL)"
    )
    conn.execute("CREATE INDEX outbox_protocol ON outbox (protocol, seq)")
    conn.execute(
        "CREATE TABLE outbox_ids_v8 ("
        " local_id TEXT PRIMARY KEY,"
        " csms_id INTEGER,"  # NULL: the CSMS knows it by our id (2.0.1)
        " protocol TEXT NOT NULL)"
    )
    # -1 marked a 2.0.1 transaction known before this migration (a 1.6 CSMS gives no -1)
    conn.execute(
        "INSERT INTO outbox_ids_v8 (local_id, csms_id, protocol)"
        " SELECT local_id, NULLIF(csms_id, -1),"
        " CASE WHEN csms_id = -1 THEN '2.0.1' ELSE '1.6' END FROM outbox_ids"
    )
    conn.execute("DROP TABLE outbox_ids")
    conn.execute("ALTER TABLE outbox_ids_v8 RENAME TO outbox_ids")


#: Schema migrations in order; ``PRAGMA user_version`` = how many have been applied.
#: Append only: a released migration never changes.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_settings_and_auth_cache,
    _v2_charging_profiles,
    _v3_local_auth_list,
    _v4_reservations,
    _v5_transactions_and_outbox,
    _v6_security_events,
    _v7_local_cards,
    _v8_outbox_protocol,
)


# --- helpers that run on the worker thread -------------------------------------------------


def _utc_text(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware, got naive {value!r}")
    return value.astimezone(dt.UTC).isoformat()


def _utc_parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


#: Page size of a new database, in bytes.
PAGE_SIZE = 1024


def _connect(path: Path, *, in_memory: bool = False) -> tuple[sqlite3.Connection, bool]:
    """Open (creating if need be) and migrate the database; returns (connection, is_new)."""
    try:
        # isolation_level=None: autocommit; transactions are explicit (see Storage._write).
        conn = sqlite3.connect(":memory:" if in_memory else path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the state database: {exc}") from exc
    try:
        is_new = _prepare(conn, path, in_memory=in_memory)
    except BaseException:
        conn.close()
        raise
    return conn, is_new


def _prepare(conn: sqlite3.Connection, path: Path, *, in_memory: bool = False) -> bool:
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # A new database gets small pages (an existing one keeps its own; SQLite changes it
        # only before the first table): every commit writes whole pages to the WAL, and
        # our commits are a row or two, so 1 KiB instead of 4 KiB quarters the SD-card
        # wear of a charging session (bench/state_writes.py, docs/benchmarks.md).
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        # The first statement that reads the file is where a non-database is noticed.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        check = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StorageCorrupt(
            f"{path}: not a usable SQLite database ({exc}); move it aside to start afresh"
        ) from exc
    if [row[0] for row in check] != ["ok"]:
        problems = "; ".join(str(row[0]) for row in check[:3])
        raise StorageCorrupt(f"{path}: the state database is corrupt: {problems}")
    if str(mode).lower() != "wal" and not in_memory:
        raise StorageError(f"{path}: cannot switch the database to WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")

    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StorageError(
            f"{path}: schema version {version} was written by a newer picharge "
            f"(this one knows up to {len(MIGRATIONS)})"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[number - 1](conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("%s: schema migrated to version %d", path, number)
    return version == 0


# --- the store ----------------------------------------------------------------------------


class Storage:
    """The state database. Create with :meth:`open`; loop-thread methods, one worker thread.

    Every ``async`` method may be called from the loop thread only; the SQLite work runs on
    the storage thread (``storage_0``, for the OS too). After :meth:`close`, every method
    raises :class:`StorageError`.
    """

    def __init__(
        self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor, is_new: bool
    ) -> None:
        """Use :meth:`open`; this only adopts an already prepared connection."""
        self._path = path
        self._conn = conn
        self._executor = executor
        self._is_new = is_new
        self._closed = False
        #: Called on the loop thread with every failed job's error (not after close): the
        #: charge point turns a failing database into a fault (controller.recovery).
        self.on_failure: Callable[[StorageError], None] | None = None

    @classmethod
    async def open(cls, state_dir: Path) -> Storage:
        """Open ``state_dir/picharge.db``, creating the directory, file and tables as needed.

        Raises :class:`StorageError` naming the path when the directory cannot be made or
        the file is not a usable SQLite database (the file is left where it is).
        """
        path = state_dir / DB_NAME
        executor = named_executor(STORAGE_THREAD, max_workers=1)
        loop = asyncio.get_running_loop()
        try:
            conn, is_new = await loop.run_in_executor(
                executor, functools.partial(_open_file, state_dir, path)
            )
        except BaseException:
            executor.shutdown(wait=True)  # the failed job is finished: this join is immediate
            raise
        log.info("state database %s opened%s", path, " (new)" if is_new else "")
        return cls(path, conn, executor, is_new)

    @classmethod
    async def open_in_memory(cls, state_dir: Path) -> Storage:
        """A database in RAM with every table, for when ``state_dir`` cannot hold one (see
        :func:`controller.recovery.open_state`); nothing in it survives the process."""
        path = state_dir / DB_NAME
        executor = named_executor(STORAGE_THREAD, max_workers=1)
        loop = asyncio.get_running_loop()
        try:
            conn, _ = await loop.run_in_executor(
                executor, functools.partial(_connect, path, in_memory=True)
            )
        except BaseException:
            executor.shutdown(wait=True)
            raise
        log.warning("state database in memory only: nothing is kept across a restart")
        return cls(path, conn, executor, True)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def is_new(self) -> bool:
        """True when this :meth:`open` created the database (there was no schema before)."""
        return self._is_new

    async def close(self) -> None:
        """Close the database and join the storage thread; idempotent.

        Jobs already submitted finish first (the worker runs them in order), so a write that
        was awaited elsewhere is never cut short.
        """
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._conn.close)
        finally:
            # Every job has run by now, so the worker is idle and the join returns at once.
            self._executor.shutdown(wait=True)

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job(connection)`` on the storage thread and return its result.

        For the modules that add tables (issue 5); ``job`` runs in autocommit mode, so a
        multi-statement change wraps itself in ``BEGIN IMMEDIATE`` / ``COMMIT``.
        """
        return await self.submit(job)

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``job`` on the storage thread now and return its future (loop thread).

        For synchronous callers that must fix the order of writes (a transaction record
        before the message that announces it): jobs run in the order they were submitted,
        and :meth:`run` submits when it is called. The future fails with
        :class:`StorageError`; :attr:`on_failure` hears of it whether or not it is awaited.
        """
        if self._closed:
            raise StorageError(f"{self._path}: storage is closed")
        path = self._path

        def guarded(conn: sqlite3.Connection) -> T:
            try:
                return job(conn)
            except sqlite3.Error as exc:
                raise StorageError(f"{path}: {exc}") from exc

        future = asyncio.get_running_loop().run_in_executor(self._executor, guarded, self._conn)
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, StorageError) and self.on_failure is not None and not self._closed:
            self.on_failure(error)

    async def _write(self, statement: str, params: tuple[object, ...] = ()) -> None:
        """One durable write: committed (and fsynced, synchronous=FULL) when this returns."""

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(statement, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.run(job)

    # --- settings: namespaced key/value strings ------------------------------------------

    async def load_settings(self, namespace: str) -> dict[str, str]:
        """Every setting stored under ``namespace`` (keys exactly as saved)."""
        rows = await self.run(
            lambda conn: conn.execute(
                "SELECT key, value FROM settings WHERE namespace = ? ORDER BY key", (namespace,)
            ).fetchall()
        )
        return {str(key): str(value) for key, value in rows}

    async def save_setting(self, namespace: str, key: str, value: str) -> None:
        """Store ``value`` under (``namespace``, ``key``); durable when this returns."""
        await self._write(
            "INSERT INTO settings (namespace, key, value) VALUES (?, ?, ?)"
            " ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            (namespace, key, value),
        )

    async def delete_setting(self, namespace: str, key: str) -> None:
        """Remove (``namespace``, ``key``) if stored; durable when this returns."""
        await self._write("DELETE FROM settings WHERE namespace = ? AND key = ?", (namespace, key))

    # --- authorization cache ---------------------------------------------------------------

    async def cache_get(self, id_tag: str) -> CachedAuth | None:
        """The cache entry for ``id_tag`` compared case-insensitively, or None."""
        row = await self.run(
            lambda conn: conn.execute(
                "SELECT id_tag, status, parent_id, expiry, updated_at FROM auth_cache"
                " WHERE id_tag_lower = ?",
                (id_tag.lower(),),
            ).fetchone()
        )
        if row is None:
            return None
        tag, status, parent_id, expiry, updated_at = row
        return CachedAuth(
            id_tag=tag,
            status=status,
            parent_id=parent_id,
            expiry=None if expiry is None else _utc_parse(expiry),
            updated_at=_utc_parse(updated_at),
        )

    async def cache_put(
        self, id_tag: str, status: str, parent_id: str | None, expiry: dt.datetime | None
    ) -> None:
        """Store (or replace) the entry for ``id_tag``; ``expiry`` must be timezone-aware."""
        expiry_text = None if expiry is None else _utc_text(expiry)
        now = _utc_text(dt.datetime.now(dt.UTC))
        await self._write(
            "INSERT INTO auth_cache (id_tag_lower, id_tag, status, parent_id, expiry, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id_tag_lower) DO UPDATE SET id_tag = excluded.id_tag,"
            " status = excluded.status, parent_id = excluded.parent_id,"
            " expiry = excluded.expiry, updated_at = excluded.updated_at",
            (id_tag.lower(), id_tag, status, parent_id, expiry_text, now),
        )

    async def cache_clear(self) -> None:
        """Forget every cache entry (OCPP ClearCache)."""
        await self._write("DELETE FROM auth_cache")


def _open_file(state_dir: Path, path: Path) -> tuple[sqlite3.Connection, bool]:
    """Storage-thread part of :meth:`Storage.open`."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{state_dir}: cannot create the state directory: {exc}") from exc
    return _connect(path)
