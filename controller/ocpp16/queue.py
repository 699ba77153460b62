"""The transaction message queue: StartTransaction, StopTransaction and transaction
MeterValues, sent in order, retried, kept while offline.

OCPP 1.6 §4.10 and the keys TransactionMessageAttempts / TransactionMessageRetryInterval:
a transaction message that the CSMS answers with a CALLERROR (or not at all) is tried again,
``attempts`` times in all, waiting ``retry interval x preceding tries`` before each retry,
then dropped with an error in the log. While the link is down nothing is tried and nothing is
dropped: the queue waits for the next registered connection.

A Stop or MeterValues for a transaction whose StartTransaction is still queued waits behind
it (the queue is strictly in order) and is sent with the transactionId the CSMS gave; if that
StartTransaction was dropped, no id exists and the later messages are dropped too, rather
than sent with a made-up id.

Messages are plain data (:class:`TxMessage`: kind, our transaction id, JSON-ready body), so
issue 5 can make the queue durable by writing each ``put``/``pop`` and the id map to storage
without changing the sender. For now the queue lives in memory. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ocpp.v16 import call

from controller.ocpp16.errors import CallFailed

log = logging.getLogger(__name__)

#: Transaction MeterValues kept while offline, per charge point; the oldest go first.
MAX_QUEUED_METER_VALUES = 1000


class TxKind(StrEnum):
    START = "StartTransaction"
    STOP = "StopTransaction"
    METER = "MeterValues"


@dataclass(frozen=True, slots=True)
class TxMessage:
    """One queued transaction message.

    ``body`` holds the request's fields in the ocpp library's snake_case, except the
    transactionId, which is only known when the message is sent.
    """

    kind: TxKind
    local_id: str
    body: Mapping[str, Any] = field(default_factory=dict)

    def request(self, transaction_id: int | None) -> Any:
        """The ocpp call payload; ``transaction_id`` is the CSMS's id (Stop, MeterValues)."""
        if self.kind is TxKind.START:
            return call.StartTransaction(**self.body)
        if transaction_id is None:
            raise ValueError(f"{self.kind} for {self.local_id} needs the CSMS transactionId")
        if self.kind is TxKind.STOP:
            return call.StopTransaction(transaction_id=transaction_id, **self.body)
        return call.MeterValues(transaction_id=transaction_id, **self.body)


Send = Callable[[TxMessage, int | None], Awaitable[Any]]
Confirmed = Callable[[TxMessage, Any], Awaitable[None]]


class TransactionQueue:
    """In-order transaction messages and the map from our transaction ids to the CSMS's."""

    def __init__(self, max_meter_values: int = MAX_QUEUED_METER_VALUES) -> None:
        self._items: deque[TxMessage] = deque()
        self._ids: dict[str, int] = {}
        self._max_meter_values = max_meter_values
        self._in_flight: TxMessage | None = None
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def messages(self) -> list[TxMessage]:
        """A copy of what is queued, head first."""
        return list(self._items)

    def put(self, message: TxMessage) -> None:
        self._items.append(message)
        if message.kind is TxKind.METER:
            self._limit_meter_values()
        self._changed.set()

    def _limit_meter_values(self) -> None:
        meters = [m for m in self._items if m.kind is TxKind.METER and m is not self._in_flight]
        for old in meters[: max(0, len(meters) - self._max_meter_values)]:
            self._items.remove(old)
            log.warning("queue full: dropped MeterValues of transaction %s", old.local_id)

    def csms_id(self, local_id: str) -> int | None:
        return self._ids.get(local_id)

    def set_csms_id(self, local_id: str, csms_id: int) -> None:
        self._ids[local_id] = csms_id

    async def wait_empty(self) -> None:
        """Return once nothing is queued or in flight."""
        while self._items:
            self._changed.clear()
            await self._changed.wait()

    async def _next(self) -> TxMessage:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        return self._items[0]

    def _done(self, message: TxMessage) -> None:
        if self._items and self._items[0] is message:
            self._items.popleft()
        if message.kind is TxKind.STOP:
            self._ids.pop(message.local_id, None)
        self._changed.set()

    async def drain(
        self,
        send: Send,
        confirmed: Confirmed,
        attempts: Callable[[], int],
        retry_interval_s: Callable[[], float],
    ) -> None:
        """Send queued messages in order until cancelled (the link went down).

        ``send`` raises :class:`CallFailed` for a CALLERROR, an invalid answer or a timeout;
        any other exception (the connection closed) ends the drain with the message kept.
        ``confirmed`` runs after a message left the queue, with the CSMS's answer.
        """
        while True:
            message = await self._next()
            transaction_id = None
            if message.kind is not TxKind.START:
                transaction_id = self._ids.get(message.local_id)
                if transaction_id is None:
                    log.error(
                        "dropping %s of transaction %s: its StartTransaction got no id",
                        message.kind,
                        message.local_id,
                    )
                    self._done(message)
                    continue
            answer = await self._send_with_retries(
                message, transaction_id, send, attempts, retry_interval_s
            )
            if answer is not None and message.kind is TxKind.START:
                self._ids[message.local_id] = answer.transaction_id
            self._done(message)
            if answer is not None:
                await confirmed(message, answer)

    async def _send_with_retries(
        self,
        message: TxMessage,
        transaction_id: int | None,
        send: Send,
        attempts: Callable[[], int],
        retry_interval_s: Callable[[], float],
    ) -> Any:
        tries = 0
        self._in_flight = message
        try:
            while True:
                tries += 1
                try:
                    return await send(message, transaction_id)
                except CallFailed as exc:
                    limit = max(1, attempts())
                    if tries >= limit:
                        log.error(
                            "dropping %s of transaction %s after %d tries: %s",
                            message.kind,
                            message.local_id,
                            tries,
                            exc,
                        )
                        return None
                    delay = max(0.0, retry_interval_s()) * tries
                    log.warning(
                        "%s of transaction %s failed (%s); try %d of %d in %.1f s",
                        message.kind,
                        message.local_id,
                        exc,
                        tries + 1,
                        limit,
                        delay,
                    )
                    await asyncio.sleep(delay)
        finally:
            self._in_flight = None
