"""SendLocalList and GetLocalListVersion (1.6 §5.15, §5.10) onto the local authorization list.

The list itself, its rules and its storage are version-neutral
(:class:`controller.csms.local_list.LocalAuthList`); here the 1.6 wire items become
:class:`~controller.csms.local_list.ListItem` and outcomes become 1.6 statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, UpdateStatus

from controller.csms.local_list import ListItem
from controller.storage import StorageError

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


def list_item(item: Mapping[str, Any]) -> ListItem:
    """A localAuthorizationList item (the library's snake_case keys) as a neutral item."""
    info = item.get("id_tag_info")
    if info is None:
        return ListItem(str(item["id_tag"]))
    expiry = info.get("expiry_date")
    return ListItem(
        str(item["id_tag"]),
        str(info["status"]),
        info.get("parent_id_tag"),
        None if expiry is None else str(expiry),
    )


class LocalListHandlers:
    """SendLocalList and GetLocalListVersion, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.send_local_list)
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        outcome = await self._s.authorizer.local_list.update(
            update_type, list_version, [list_item(i) for i in local_authorization_list or []]
        )
        return call_result.SendLocalList(UpdateStatus(outcome.value))

    @on(Action.get_local_list_version)
    async def on_get_local_list_version(self, **kwargs: Any) -> Any:
        try:
            version = await self._s.authorizer.local_list.version()
        except StorageError as exc:
            log.error("GetLocalListVersion: the list is unreadable: %s", exc)
            version = 0  # nothing usable: the CSMS sends a Full update
        return call_result.GetLocalListVersion(list_version=version)
