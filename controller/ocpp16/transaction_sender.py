"""Start/StopTransaction and transaction MeterValues through the durable queue.

:class:`TransactionSender` turns the supervisor's transactions into queued messages (plain
data, committed before they are sent: :class:`~controller.csms.queue.TransactionQueue`),
sends them while registered (:meth:`TransactionSender.drain`) and acts on the answers: the
CSMS's transactionId, its verdict on the id tag (remembered in the authorization cache; a
refused tag stops its transaction when StopTransactionOnInvalidId says so). Loop thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.csms.auth import Authorizer
from controller.csms.calls import CallFailed, Spawn
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from controller.csms.wire import iso_utc
from controller.domain import (
    AuthResult,
    ChargePointControl,
    ReadingContext,
    Transaction,
    utc_now,
)
from controller.ocpp16.auth import result_from_info
from controller.ocpp16.errors import CALL_FAILURES
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.meter_values import WireDict, meter_value, parse_measurands
from controller.ocpp16.transactions import tx_request
from controller.ocppj.caller import call_checked, describe
from controller.outbox import OutboxEntry
from controller.storage import Storage

if TYPE_CHECKING:
    from controller.ocpp16.charge_point import OcppChargePoint

log = logging.getLogger(__name__)


def stop_body(
    tx: Transaction, now: dt.datetime, transaction_data: list[WireDict]
) -> dict[str, Any]:
    """StopTransaction's fields for ``tx`` (``now``: its time when it has no stop time)."""
    meter_stop = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.meter_start_wh
    return {
        "meter_stop": round(meter_stop),
        "timestamp": iso_utc(tx.stopped_at or now),
        "reason": tx.stop_reason.value if tx.stop_reason else None,
        "id_tag": tx.stop_id_tag,
        "transaction_data": transaction_data or None,
    }


async def end_message(tx: Transaction, storage: Storage) -> OutboxEntry:
    """The StopTransaction of ``tx`` as an outbox row: the registry's 1.6 end message, which
    power-loss recovery queues under 1.6 while another version runs (the 1.6 CSMS that has
    the start hears the end when 1.6 runs again; its transactionId joins it then, from
    ``outbox_ids``). The interrupted transaction's samples are gone with the power."""
    return OutboxEntry(tx.local_id, TxKind.STOP.value, stop_body(tx, utc_now(), []), True)


class TransactionSender:
    """The transactions the CSMS hears of, and their queue."""

    def __init__(
        self,
        *,
        queue: TransactionQueue,
        authorizer: Authorizer,
        control: ChargePointControl,
        config: OcppConfig,
        clock: Callable[[], dt.datetime],
        spawn: Spawn,
        interval_scale: float,
    ) -> None:
        self.queue = queue
        self._authorizer = authorizer
        self._control = control
        self._config = config
        self._clock = clock
        self._spawn = spawn
        self._scale = interval_scale
        self._transactions: dict[str, Transaction] = {}  # by our id, until the Stop is answered

    def running(self, connector_id: int) -> Transaction | None:
        """The running transaction of a connector, if any."""
        for tx in self._transactions.values():
            if tx.connector_id == connector_id and tx.running:
                return tx
        return None

    def started(self, tx: Transaction) -> None:
        """Queue StartTransaction (not for a transaction resumed after a restart)."""
        self._transactions[tx.local_id] = tx
        if tx.csms_id is not None:  # resumed after a restart: the CSMS knows it already
            self.queue.set_csms_id(tx.local_id, tx.csms_id)
            return
        body = {
            "connector_id": tx.connector_id,
            "id_tag": tx.id_tag,
            "meter_start": round(tx.meter_start_wh),
            "timestamp": iso_utc(tx.started_at),
        }
        if tx.reservation_id is not None:  # OCPP: this ends the reservation at the CSMS
            body["reservation_id"] = tx.reservation_id
        self.queue.put(TxMessage(TxKind.START, tx.local_id, body))

    def stopped(self, tx: Transaction) -> None:
        """Queue StopTransaction with the transaction data of ``tx.samples``."""
        self._transactions.setdefault(tx.local_id, tx)
        if tx.csms_id is not None:
            self.queue.set_csms_id(tx.local_id, tx.csms_id)
        body = stop_body(tx, self._clock(), self._transaction_data(tx))
        self.queue.put(TxMessage(TxKind.STOP, tx.local_id, body))

    def meter_value(self, tx: Transaction, value: WireDict) -> None:
        """Queue a transaction MeterValues."""
        body = {"connector_id": tx.connector_id, "meter_value": [value]}
        self.queue.put(TxMessage(TxKind.METER, tx.local_id, body))

    async def drain(self, cp: OcppChargePoint) -> None:
        """Send the queue in order over ``cp`` (registered), with retries; until cancelled."""
        await self.queue.drain(
            lambda message, tid: self._send(cp, message, tid),
            self._confirmed,
            lambda: self._config.get_int("TransactionMessageAttempts"),
            lambda: self._config.get_int("TransactionMessageRetryInterval") * self._scale,
        )

    def _transaction_data(self, tx: Transaction) -> list[WireDict]:
        sampled = parse_measurands(self._config.get_list("StopTxnSampledData"))
        aligned = parse_measurands(self._config.get_list("StopTxnAlignedData"))
        data = []
        for sample in tx.samples:
            measurands = aligned if sample.context is ReadingContext.CLOCK else sampled
            value = meter_value(sample, measurands, sample.context) if measurands else None
            if value is not None:
                data.append(value)
        return data

    async def _send(
        self, cp: OcppChargePoint, message: TxMessage, transaction_id: int | None
    ) -> Any:
        try:
            return await call_checked(cp, tx_request(message, transaction_id))
        except CALL_FAILURES as exc:
            raise CallFailed(describe(exc)) from exc

    async def _confirmed(self, message: TxMessage, conf: Any) -> None:
        tx = self._transactions.get(message.local_id)
        if message.kind is TxKind.START:
            if tx is not None:
                tx.csms_id = conf.transaction_id
            log.info("transaction %s is %s at the CSMS", message.local_id, conf.transaction_id)
            result = await self._authorizer.remember(
                message.body["id_tag"], result_from_info(conf.id_tag_info)
            )
            if tx is not None and tx.running:
                self._start_answered(tx, result)
        elif message.kind is TxKind.STOP:
            self._transactions.pop(message.local_id, None)
            stop_tag = message.body.get("id_tag")
            if stop_tag and conf.id_tag_info is not None:
                await self._authorizer.remember(stop_tag, result_from_info(conf.id_tag_info))

    def _start_answered(self, tx: Transaction, result: AuthResult) -> None:
        """Act on the idTagInfo of a running transaction's StartTransaction.conf (1.6 §4.8):
        a refused id stops the transaction when StopTransactionOnInvalidId says so, else
        the transaction is kept and the charge point "only stop[s] energy delivery"; the
        parentIdTag becomes the transaction's parent either way (a card of the same group
        may stop it)."""
        stop = not result.accepted and self._config.get_bool("StopTransactionOnInvalidId")
        if stop:
            log.warning("CSMS refused %s (%s): stopping", tx.id_tag, result.status)
            self._spawn(self._control.deauthorize(tx), f"ocpp16-deauthorize-{tx.local_id}")
            return
        if not result.accepted:
            log.warning("CSMS refused %s (%s): no more energy", tx.id_tag, result.status)
        if result.parent_id is not None or not result.accepted:
            self._spawn(
                self._control.transaction_answered(tx, result.parent_id, not result.accepted),
                f"ocpp16-start-answered-{tx.local_id}",
            )
