"""The authorization cache and the local authorization rules.

Driven by :class:`AuthSettings` (read at each decision, so a change applies at once; the 1.6
key of each in brackets):

- ``cache_enabled`` (AuthorizationCacheEnabled): every answer the CSMS gives about an id
  (Authorize, StartTransaction, StopTransaction) is remembered, with its expiry, except for
  ids the local authorization list holds (1.6 §3.5.3: they stay out of the cache).
- ``local_list_enabled`` (LocalAuthListEnabled): the local list (:mod:`.local_list`) is
  consulted; it takes precedence over the cache for the ids it holds.
- ``local_pre_authorize`` (LocalPreAuthorize): online, a valid Accepted entry of the list (or
  else the cache) starts a session at once, without asking the CSMS.
- ``local_authorize_offline`` (LocalAuthorizeOffline): offline, the list and the cache decide
  for the ids they know.
- ``allow_offline_unknown`` (AllowOfflineTxForUnknownId): offline, an id neither knows is
  accepted; an id the list holds with another status than Accepted (or an expired one) is
  refused even so (§3.5.4).

A version may also bound how long a cache entry stays valid (2.0.1: AuthCacheCtrlr.LifeTime):
an answer stored without an expiry of its own then expires that long after it was stored,
i.e. after the CSMS last confirmed the id (using it offline does not extend it). And it may
bound the cache's size (2.0.1: AuthCacheCtrlr.Storage's maxLimit, in bytes): past it, the
entries the CSMS confirmed least recently go first (AuthCacheCtrlr.Policy LRU, "used" being
"answered by the CSMS": an online use of a card always is). An entry's size is the bytes of
its stored text (id, status, parent id and the two times); :attr:`Authorizer.cache_bytes`
is the cache's size after the last change.

Every answer carries the parentIdTag the list, the cache or the CSMS gave, so a card of the
same parent may stop a session. An Accepted cache entry whose expiry has passed is changed
to Expired in the cache (1.6 §3.5.2); an expired list entry answers Expired.
The cache lives in :class:`controller.storage.Storage` (case-insensitive, durable). It only
saves round trips: when the database fails, the failure is logged and the decision is made as
if the cache were empty, so a storage fault never stops authorization or the link.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from controller.csms.local_list import ListSettings, LocalAuthList
from controller.domain import AuthResult, AuthStatus
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.storage import CachedAuth, Storage

log = logging.getLogger(__name__)


class AuthSettings(ListSettings, Protocol):
    """The authorization settings, read at each decision; a version adapter maps its keys."""

    @property
    def cache_enabled(self) -> bool: ...

    @property
    def local_pre_authorize(self) -> bool: ...

    @property
    def local_authorize_offline(self) -> bool: ...

    @property
    def allow_offline_unknown(self) -> bool: ...


class Authorizer:
    """Decides locally what the cache and the keys allow; remembers what the CSMS said."""

    def __init__(
        self,
        settings: AuthSettings,
        storage: Storage,
        clock: Callable[[], dt.datetime],
        *,
        cache_lifetime_s: Callable[[], int] | None = None,
        cache_max_bytes: int | None = None,
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._clock = clock
        self._lifetime_s = cache_lifetime_s
        self._max_bytes = cache_max_bytes
        #: The cache's size in bytes (see the module's docstring) after the last change.
        self.cache_bytes = 0
        self.local_list = LocalAuthList(settings, storage, clock)

    @property
    def cache_enabled(self) -> bool:
        return self._settings.cache_enabled

    async def remember(self, id_tag: str, result: AuthResult) -> AuthResult:
        """Take the CSMS's answer for ``id_tag``: cache it (when enabled and the local list
        does not hold it) and return it."""
        if self.cache_enabled and not await self.local_list.knows(id_tag):
            expiry = result.expiry
            if expiry is None and self._lifetime_s is not None:
                expiry = self._clock() + dt.timedelta(seconds=self._lifetime_s())
            await self._put(id_tag, result.status, result.parent_id, expiry)
        return result

    async def _put(
        self, id_tag: str, status: AuthStatus, parent_id: str | None, expiry: dt.datetime | None
    ) -> None:
        try:
            await self._storage.cache_put(id_tag, status.value, parent_id, expiry)
            if self._max_bytes is not None:
                self.cache_bytes, evicted = await self._storage.run(_evict_job(self._max_bytes))
                if evicted:
                    log.info("authorization cache full: %d entries dropped", evicted)
        except StorageError as exc:
            log.error("authorization cache: %s not stored: %s", id_tag, exc)

    async def measure_cache(self) -> None:
        """Set :attr:`cache_bytes` from the database (at start); a failure is logged."""
        try:
            self.cache_bytes = await self._storage.run(_cache_bytes)
        except StorageError as exc:
            log.error("authorization cache not measured: %s", exc)

    async def _cached(self, id_tag: str) -> AuthResult | None:
        try:
            entry: CachedAuth | None = await self._storage.cache_get(id_tag)
        except StorageError as exc:
            log.error("authorization cache: %s not read: %s", id_tag, exc)
            return None
        if entry is None:
            return None
        status = AuthStatus(entry.status)
        if (
            status is AuthStatus.ACCEPTED
            and entry.expiry is not None
            and entry.expiry <= self._clock()
        ):
            status = AuthStatus.EXPIRED
            await self._put(entry.id_tag, status, entry.parent_id, entry.expiry)
            log.info("cached authorization of %s expired at %s", id_tag, entry.expiry)
        return AuthResult(status, entry.parent_id, entry.expiry)

    async def pre_authorized(self, id_tag: str) -> AuthResult | None:
        """Online: a valid Accepted entry of the local list, else of the cache, when
        LocalPreAuthorize allows skipping the CSMS; None means "ask the CSMS"."""
        if not self._settings.local_pre_authorize:
            return None
        listed = await self.local_list.lookup(id_tag)
        if listed is not None:
            return listed if listed.accepted else None
        if not self.cache_enabled:
            return None
        cached = await self._cached(id_tag)
        if cached is not None and cached.accepted:
            return cached
        return None

    async def offline(self, id_tag: str) -> AuthResult:
        """The answer without a CSMS (offline, or it did not answer in time)."""
        local = self._settings.local_authorize_offline
        listed = await self.local_list.lookup(id_tag)
        if listed is not None and (local or not listed.accepted):
            return listed
        if local and self.cache_enabled:
            cached = await self._cached(id_tag)
            if cached is not None:
                return cached
        if self._settings.allow_offline_unknown:
            return AuthResult(AuthStatus.ACCEPTED)
        return AuthResult(AuthStatus.INVALID)

    async def clear(self) -> bool:
        """ClearCache; False when the database could not do it."""
        try:
            await self._storage.cache_clear()
        except StorageError as exc:
            log.error("authorization cache not cleared: %s", exc)
            return False
        self.cache_bytes = 0
        return True


# --- storage jobs (run on the storage thread) -----------------------------------------------

_ENTRY_BYTES = (
    "length(CAST(id_tag AS BLOB)) + length(status) + coalesce(length(CAST(parent_id AS BLOB)), 0)"
    " + coalesce(length(expiry), 0) + length(updated_at)"
)


def _cache_bytes(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(f"SELECT coalesce(sum({_ENTRY_BYTES}), 0) FROM auth_cache").fetchone()[0]
    )


def _evict_job(max_bytes: int) -> Callable[[sqlite3.Connection], tuple[int, int]]:
    """Drop the least recently confirmed entries until the cache fits ``max_bytes``:
    (the size then, how many were dropped)."""

    def job(conn: sqlite3.Connection) -> tuple[int, int]:
        size = _cache_bytes(conn)
        if size <= max_bytes:
            return size, 0
        rows = conn.execute(
            f"SELECT id_tag_lower, {_ENTRY_BYTES} FROM auth_cache ORDER BY updated_at, id_tag_lower"
        ).fetchall()
        doomed = []
        for key, entry_bytes in rows:
            if size <= max_bytes:
                break
            doomed.append((key,))
            size -= entry_bytes
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM auth_cache WHERE id_tag_lower = ?", doomed)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return size, len(doomed)

    return job
