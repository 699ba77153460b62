"""The local authorization list and the cache (D01, D02, C11), as a mixin of
:class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

The list, its rules (Full and Differential updates, versions, VersionMismatch, Failed for
what cannot be applied) and its storage are version-neutral
(:class:`controller.csms.local_list.LocalAuthList`, used by 1.6 alike); here the 2.0.1
AuthorizationData become its items and its outcomes 2.0.1 statuses. 2.0.1 specifics:

- a SendLocalList whose list is larger than LocalAuthListCtrlr.BytesPerMessage (its JSON,
  written compactly) is Failed, as one with more entries than ItemsPerMessage, or one that
  would leave more than Entries' maxLimit in the list;
- 2.0.1 has no NotSupported: while LocalAuthListCtrlr.Enabled is false an update is Failed
  and GetLocalListVersion answers 0 (no list), where 1.6 answers -1;
- ClearCache is Rejected while AuthCacheCtrlr.Enabled is false (C11.FR.04) or when the
  database cannot do it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ocpp.charge_point import snake_to_camel_case
from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action, ClearCacheStatusEnumType, SendLocalListStatusEnumType

from controller.csms.local_list import UpdateOutcome
from controller.ocpp201.auth import list_item
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)

_OUTCOME = {
    UpdateOutcome.ACCEPTED: SendLocalListStatusEnumType.accepted,
    UpdateOutcome.VERSION_MISMATCH: SendLocalListStatusEnumType.version_mismatch,
}


def list_bytes(items: list[dict[str, Any]]) -> int:
    """The size of a localAuthorizationList as the CSMS wrote it, compactly (its JSON)."""
    return len(json.dumps(snake_to_camel_case(items), separators=(",", ":")).encode())


class AuthHandlers:
    """SendLocalList, GetLocalListVersion and ClearCache, mixed into the 2.0.1 ChargePoint."""

    _s: Services

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        items = local_authorization_list or []
        limit = self._s.model.get_int("LocalAuthListCtrlr.BytesPerMessage")
        size = list_bytes(items)
        if size > limit:
            log.warning("SendLocalList of %d bytes, BytesPerMessage is %d: Failed", size, limit)
            return call_result.SendLocalList(SendLocalListStatusEnumType.failed)
        for item in items:
            self._s.token_kinds.note(item["id_token"])
        outcome = await self._s.authorizer.local_list.update(
            update_type, version_number, [list_item(item) for item in items]
        )
        return call_result.SendLocalList(_OUTCOME.get(outcome, SendLocalListStatusEnumType.failed))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **_: Any) -> Any:
        try:
            version = max(0, await self._s.authorizer.local_list.version())
        except StorageError as exc:
            log.error("GetLocalListVersion: the list is unreadable: %s", exc)
            version = 0  # nothing usable: the CSMS sends a Full update
        return call_result.GetLocalListVersion(version_number=version)

    @on(Action.clear_cache)
    async def on_clear_cache(self, **_: Any) -> Any:
        authorizer = self._s.authorizer
        cleared = authorizer.cache_enabled and await authorizer.clear()
        return call_result.ClearCache(
            ClearCacheStatusEnumType.accepted if cleared else ClearCacheStatusEnumType.rejected
        )
