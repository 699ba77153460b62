"""Standalone mode: a charger with no central system, as many home chargers are.

:class:`StandaloneLink` stands where an OCPP adapter would: it authorizes cards from the
configuration's ``[authorization] cards`` list and the enabled, unexpired cards added from
the web page (:class:`controller.card_store.CardStore`), compared without case like OCPP
idTags, and logs what a CSMS would have been told. Charging without any card is configured
with ``free_charging_id``, which the connector state machine uses directly.

The last card refused is remembered (:attr:`StandaloneLink.last_unknown`), so the page can
offer to add the card just tapped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from controller.card_store import CardStore
from controller.connector_types import ConnectorStatus
from controller.domain import AuthResult, AuthStatus, MeterSample, Transaction, utc_now
from controller.storage import StorageError
from drivers.errors import FaultKind

log = logging.getLogger(__name__)


class StandaloneLink:
    """:class:`controller.domain.CsmsLink` for a charger without a CSMS."""

    def __init__(self, cards: Iterable[str], store: CardStore | None = None) -> None:
        self._cards = {card.casefold() for card in cards}
        self._store = store
        self.transactions: list[Transaction] = []
        #: The last card refused and when (UTC): "add the card just tapped".
        self.last_unknown: tuple[str, dt.datetime] | None = None

    async def authorize(self, id_tag: str) -> AuthResult:
        if id_tag.casefold() in self._cards:
            return AuthResult(AuthStatus.ACCEPTED)
        if self._store is not None:
            try:
                card = await self._store.get(id_tag)
            except StorageError as exc:  # the database fails: it is faulted anyway
                log.error("card %s: the card store cannot be read: %s", id_tag, exc)
                return AuthResult(AuthStatus.INVALID)
            if card is not None:
                if card.allows(utc_now()):
                    return AuthResult(AuthStatus.ACCEPTED)
                log.warning("card %s (%s) is disabled or expired", id_tag, card.name)
                return AuthResult(AuthStatus.BLOCKED if not card.enabled else AuthStatus.EXPIRED)
        self.last_unknown = (id_tag, utc_now())
        log.warning("card %s is not in [authorization] cards: not charging", id_tag)
        return AuthResult(AuthStatus.INVALID)

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Nothing to tell: the supervisor already logs status changes."""

    def transaction_started(self, tx: Transaction) -> None:
        self.transactions.append(tx)

    def transaction_stopped(self, tx: Transaction) -> None:
        assert tx.meter_stop_wh is not None
        log.info(
            "session on connector %d for %s: %.3f kWh",
            tx.connector_id,
            tx.id_tag,
            (tx.meter_stop_wh - tx.meter_start_wh) / 1000,
        )

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """Readings are only reported to a CSMS."""
