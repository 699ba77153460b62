"""Standalone mode: a charger with no central system, as many home chargers are.

:class:`StandaloneLink` stands where an OCPP adapter would: it authorizes cards from the
configuration's ``[authorization] cards`` list (compared without case, like OCPP idTags) and
logs what a CSMS would have been told. Charging without any card is configured with
``free_charging_id``, which the connector state machine uses directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from controller.connector_types import ConnectorStatus
from controller.domain import AuthResult, AuthStatus, MeterSample, Transaction
from drivers.errors import FaultKind

log = logging.getLogger(__name__)


class StandaloneLink:
    """:class:`controller.domain.CsmsLink` for a charger without a CSMS."""

    def __init__(self, cards: Iterable[str]) -> None:
        self._cards = {card.casefold() for card in cards}
        self.transactions: list[Transaction] = []

    async def authorize(self, id_tag: str) -> AuthResult:
        if id_tag.casefold() in self._cards:
            return AuthResult(AuthStatus.ACCEPTED)
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
