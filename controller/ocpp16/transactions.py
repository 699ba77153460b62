"""Queued transaction messages as OCPP 1.6 calls.

The version-neutral :class:`~controller.csms.queue.TransactionQueue` keeps each message as
plain data (kind, our transaction id, a JSON-ready body in the ocpp library's snake_case);
only when it is sent does the CSMS's transactionId join it and does it become a 1.6 call.
"""

from __future__ import annotations

from typing import Any

from ocpp.v16 import call

from controller.csms.queue import TxKind, TxMessage


def tx_request(message: TxMessage, transaction_id: int | None) -> Any:
    """The ocpp call payload; ``transaction_id`` is the CSMS's id (Stop, MeterValues), None
    for MeterValues of a transaction whose StartTransaction got no id (sent without one)."""
    if message.kind is TxKind.START:
        return call.StartTransaction(**message.body)
    if message.kind is TxKind.STOP:
        if transaction_id is None:
            raise ValueError(f"StopTransaction for {message.local_id} needs a transactionId")
        return call.StopTransaction(transaction_id=transaction_id, **message.body)
    return call.MeterValues(transaction_id=transaction_id, **message.body)
