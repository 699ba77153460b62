"""The authorization cache and the local authorization rules of OCPP 1.6.

Keys (read at each decision, so a ChangeConfiguration applies at once):

- ``AuthorizationCacheEnabled``: every IdTagInfo the CSMS sends (Authorize, StartTransaction,
  StopTransaction) is remembered, with its expiry, except for ids the local authorization
  list holds (1.6 §3.5.3: they stay out of the cache).
- ``LocalAuthListEnabled``: the local list (:mod:`.local_list`) is consulted; it takes
  precedence over the cache for the ids it holds.
- ``LocalPreAuthorize``: online, a valid Accepted entry of the list (or else the cache)
  starts a session at once, without an Authorize.req.
- ``LocalAuthorizeOffline``: offline, the list and the cache decide for the ids they know.
- ``AllowOfflineTxForUnknownId``: offline, an id neither knows is accepted; an id the list
  holds with another status than Accepted (or an expired one) is refused even so (§3.5.4).

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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from controller.csms.wire import parse_iso
from controller.domain import AuthResult, AuthStatus
from controller.ocpp16.local_list import LocalAuthList
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.ocpp16.keys import OcppConfig
    from controller.storage import CachedAuth, Storage

log = logging.getLogger(__name__)


def result_from_info(info: Mapping[str, Any]) -> AuthResult:
    """An IdTagInfo (as the ocpp library hands it over: snake_case keys) as a domain result."""
    expiry: dt.datetime | None = None
    raw_expiry = info.get("expiry_date")
    if raw_expiry is not None:
        try:
            expiry = parse_iso(str(raw_expiry))
        except ValueError:
            log.warning("ignoring an unreadable expiryDate %r", raw_expiry)
    return AuthResult(AuthStatus(info["status"]), info.get("parent_id_tag"), expiry)


class Authorizer:
    """Decides locally what the cache and the keys allow; remembers what the CSMS said."""

    def __init__(
        self, config: OcppConfig, storage: Storage, clock: Callable[[], dt.datetime]
    ) -> None:
        self._config = config
        self._storage = storage
        self._clock = clock
        self.local_list = LocalAuthList(config, storage, clock)

    @property
    def cache_enabled(self) -> bool:
        return self._config.get_bool("AuthorizationCacheEnabled")

    async def remember(self, id_tag: str, info: Mapping[str, Any]) -> AuthResult:
        """Take the CSMS's IdTagInfo for ``id_tag``: cache it (when enabled and the local
        list does not hold it) and return it."""
        result = result_from_info(info)
        if self.cache_enabled and not await self.local_list.knows(id_tag):
            await self._put(id_tag, result.status, result.parent_id, result.expiry)
        return result

    async def _put(
        self, id_tag: str, status: AuthStatus, parent_id: str | None, expiry: dt.datetime | None
    ) -> None:
        try:
            await self._storage.cache_put(id_tag, status.value, parent_id, expiry)
        except StorageError as exc:
            log.error("authorization cache: %s not stored: %s", id_tag, exc)

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
        if not self._config.get_bool("LocalPreAuthorize"):
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
        local = self._config.get_bool("LocalAuthorizeOffline")
        listed = await self.local_list.lookup(id_tag)
        if listed is not None and (local or not listed.accepted):
            return listed
        if local and self.cache_enabled:
            cached = await self._cached(id_tag)
            if cached is not None:
                return cached
        if self._config.get_bool("AllowOfflineTxForUnknownId"):
            return AuthResult(AuthStatus.ACCEPTED)
        return AuthResult(AuthStatus.INVALID)

    async def clear(self) -> bool:
        """ClearCache; False when the database could not do it."""
        try:
            await self._storage.cache_clear()
        except StorageError as exc:
            log.error("authorization cache not cleared: %s", exc)
            return False
        return True
