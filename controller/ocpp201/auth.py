"""2.0.1 IdToken and IdTokenInfo as the domain's ids and :class:`~controller.domain.AuthResult`.

A card's UID from the reader is an ISO14443 idToken (uppercase hex, as the drivers give it).
2.0.1 has more verdicts than 1.6; every one that is not Accepted, Blocked, Expired or
ConcurrentTx refuses the card as Invalid (NoCredit, NotAtThisLocation, NotAtThisTime,
NotAllowedTypeEVSE, Unknown).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from controller.csms.wire import parse_iso
from controller.domain import AuthResult, AuthStatus

log = logging.getLogger(__name__)

_STATUS = {s.value: s for s in AuthStatus}


def id_token(uid: str) -> dict[str, str]:
    """The IdTokenType of a card's UID (snake_case, as the library takes it)."""
    return {"id_token": uid.upper(), "type": "ISO14443"}


def result_from_info(info: Mapping[str, Any]) -> AuthResult:
    """An IdTokenInfo (snake_case keys, as the library hands it over) as a domain result."""
    expiry: dt.datetime | None = None
    raw_expiry = info.get("cache_expiry_date_time")
    if raw_expiry is not None:
        try:
            expiry = parse_iso(str(raw_expiry))
        except ValueError:
            log.warning("ignoring an unreadable cacheExpiryDateTime %r", raw_expiry)
    group = info.get("group_id_token")
    parent = str(group["id_token"]) if isinstance(group, Mapping) else None
    return AuthResult(_STATUS.get(str(info["status"]), AuthStatus.INVALID), parent, expiry)
