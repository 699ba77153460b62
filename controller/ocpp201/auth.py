"""2.0.1 IdToken and IdTokenInfo as the domain's ids and :class:`~controller.domain.AuthResult`.

A card's UID from the reader is an ISO14443 idToken (uppercase hex, as the drivers give it).
A CSMS may name other kinds (Central, Local, eMAID, KeyCode, ...) in RequestStartTransaction,
ReserveNow and the local list: :class:`TokenKinds` remembers the kind it gave each id, so the
TransactionEvent of a session it started names the token as the CSMS did. The core keeps an
id as its text alone; ids compare without case (2.0.1 IdToken is case insensitive), so one
text is one token whatever its kind.
2.0.1 has more verdicts than 1.6; every one that is not Accepted, Blocked, Expired or
ConcurrentTx refuses the card as Invalid (NoCredit, NotAtThisLocation, NotAtThisTime,
NotAllowedTypeEVSE, Unknown).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from controller.csms.local_list import ListItem
from controller.csms.wire import parse_iso
from controller.domain import AuthResult, AuthStatus

log = logging.getLogger(__name__)

_STATUS = {s.value: s for s in AuthStatus}
#: The kind of a card's UID read by the charger's reader.
ISO14443 = "ISO14443"


def id_token(uid: str) -> dict[str, str]:
    """The IdTokenType of a card's UID (snake_case, as the library takes it)."""
    return {"id_token": uid.upper(), "type": ISO14443}


def domain_status(status: str) -> AuthStatus:
    """A 2.0.1 AuthorizationStatusEnumType as the domain's (unknown verdicts: Invalid)."""
    return _STATUS.get(status, AuthStatus.INVALID)


class TokenKinds:
    """The kind (IdTokenEnumType) the CSMS gave each id it named; loop thread only.

    Held in memory: a session's Started event is queued, with its idToken, the moment the
    session starts, and the queue keeps it from then on. Bounded: the oldest kinds go first.
    """

    LIMIT = 2000

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}

    def note(self, token: Mapping[str, Any]) -> None:
        """Remember the kind of an IdTokenType (snake_case) the CSMS sent."""
        key = str(token["id_token"]).casefold()
        self._kinds.pop(key, None)
        self._kinds[key] = str(token["type"])
        if len(self._kinds) > self.LIMIT:
            del self._kinds[next(iter(self._kinds))]

    def token(self, id_tag: str) -> dict[str, str]:
        """The IdTokenType of ``id_tag``: as the CSMS named it, else a card read here."""
        kind = self._kinds.get(id_tag.casefold())
        return id_token(id_tag) if kind is None else {"id_token": id_tag, "type": kind}


def list_item(item: Mapping[str, Any]) -> ListItem:
    """A SendLocalList AuthorizationData (snake_case) as the neutral list's item: the
    idTokenInfo's status (in the domain's terms), groupIdToken and cacheExpiryDateTime."""
    tag = str(item["id_token"]["id_token"])
    info = item.get("id_token_info")
    if info is None:
        return ListItem(tag)
    group = info.get("group_id_token")
    expiry = info.get("cache_expiry_date_time")
    return ListItem(
        tag,
        domain_status(str(info["status"])).value,
        None if group is None else str(group["id_token"]),
        None if expiry is None else str(expiry),
    )


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
    return AuthResult(domain_status(str(info["status"])), parent, expiry)
