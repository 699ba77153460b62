"""1.6 IdTagInfo as the domain's :class:`~controller.domain.AuthResult`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from controller.csms.wire import parse_iso
from controller.domain import AuthResult, AuthStatus

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
