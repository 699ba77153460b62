"""The transaction message queue: StartTransaction, StopTransaction and transaction
MeterValues, sent in order, retried, kept while offline and across restarts.

OCPP 1.6 §4.10 and the keys TransactionMessageAttempts / TransactionMessageRetryInterval:
a transaction message that the CSMS answers with a CALLERROR (or not at all) is tried again,
``attempts`` times in all, waiting ``retry interval x preceding tries`` before each retry,
then dropped with an error in the log. While the link is down nothing is tried and nothing is
dropped: the queue waits for the next registered connection.

A Stop or MeterValues for a transaction whose StartTransaction is still queued waits behind
it (the queue is strictly in order) and is sent with the transactionId the CSMS gave. If that
StartTransaction was dropped (the CSMS answered it with CALLERRORs until its attempts ran
out), the later messages are still sent: 1.6 §4.10 lets a charge point give up a transaction
message only when the CSMS keeps refusing *that* message, and a StopTransaction carries the
meter reading a bill needs. The StopTransaction then carries :data:`NO_TRANSACTION_ID` (-1):
the schema requires an integer, the specification gives none for this case, and -1 is the
value other charge points (EVerest) use, which no CSMS hands out as an id. Its MeterValues
go without a transactionId (optional in MeterValues.req): connector readings, rather than
readings of a transaction the CSMS does not know under any id.

Durability (issue 5): with a :class:`~controller.outbox.Outbox`, every message is inserted
into the state database when it is queued and is not sent before that insert committed; it
is deleted only once the CSMS answered, in the same SQLite transaction that records (Start)
or forgets (Stop) the CSMS's transactionId, and the next message waits for that commit. A
restart (:meth:`TransactionQueue.restore`) resumes with what is left, in order, and with the
id map, so a transaction started offline before a power cut still gets its real id and every
later message carries it. A crash between an answer and its delete repeats that one message
after the restart (at least once; a CSMS recognises a repeated StartTransaction by its
connector, idTag, timestamp and meterStart, as SteVe does).

Bound (:data:`MAX_QUEUED_METER_VALUES`): StartTransaction and StopTransaction are never
dropped for space (a few per session: an outage cannot make many). Transaction MeterValues
are bounded: when more than the bound are queued, every other one of the older half is
dropped, so a long outage keeps its whole span at a resolution that halves with age (the
newest readings stay dense; at a 60 s sample interval the bound holds 16 h of one connector
at full resolution). A message being sent is never dropped. About 1 KiB of database per
queued MeterValues.

Messages are plain data (:class:`TxMessage`: kind, our transaction id, JSON-ready body).
Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.csms.calls import CallFailed
from controller.outbox import Outbox, OutboxEntry
from controller.storage import StorageError

log = logging.getLogger(__name__)

#: Transaction MeterValues kept while offline, per charge point; beyond it the older half is
#: thinned (see the module docstring).
MAX_QUEUED_METER_VALUES = 1000
#: The transactionId of a StopTransaction whose StartTransaction never got one (see the
#: module docstring).
NO_TRANSACTION_ID = -1


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


Send = Callable[[TxMessage, int | None], Awaitable[Any]]
Confirmed = Callable[[TxMessage, Any], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Entry:
    """A queued message and its row in the outbox (``saved``: its insert, None without one)."""

    message: TxMessage
    row: OutboxEntry
    saved: asyncio.Future[None] | None = None


class TransactionQueue:
    """In-order transaction messages and the map from our transaction ids to the CSMS's.

    ``store`` makes it durable (see the module docstring); without one it lives in memory.
    ``csms_ids``: the CSMS gives each transaction its id in the answer to the start (1.6);
    False when the charger makes the id itself and the messages carry it (2.0.1's
    TransactionEvent), so nothing waits for or maps an id (a started transaction is still
    recorded as known, without an id: None).
    """

    def __init__(
        self,
        max_meter_values: int = MAX_QUEUED_METER_VALUES,
        store: Outbox | None = None,
        *,
        csms_ids: bool = True,
    ) -> None:
        self._csms_ids = csms_ids
        self._items: deque[_Entry] = deque()
        #: our transaction id -> the CSMS's (None: it knows ours), for each transaction
        #: whose start the CSMS confirmed and whose end it has not
        self._ids: dict[str, int | None] = {}
        self._max_meter_values = max_meter_values
        self._store = store
        self._restored = store is None
        self._in_flight: _Entry | None = None
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def messages(self) -> list[TxMessage]:
        """A copy of what is queued, head first."""
        return [entry.message for entry in self._items]

    def put(self, message: TxMessage) -> None:
        row = OutboxEntry(
            message.local_id, message.kind.value, message.body, message.kind is TxKind.STOP
        )
        entry = _Entry(message, row)
        if self._store is not None:
            entry.saved = self._store.append(row)
        self._items.append(entry)
        if message.kind is TxKind.METER:
            self._limit_meter_values()
        self._changed.set()

    def _limit_meter_values(self) -> None:
        dropped: list[_Entry] = []
        while True:
            meters = [
                e
                for e in self._items
                if e.message.kind is TxKind.METER and e is not self._in_flight
            ]
            if len(meters) <= self._max_meter_values:
                break
            # Every other one of the older half, keeping the oldest (the span stays covered);
            # with only one to choose from, that one.
            older = meters[: max(1, len(meters) // 2)]
            victims = older[1::2] or older[:1]
            for victim in victims:
                self._items.remove(victim)
            dropped += victims
        if not dropped:
            return
        log.warning(
            "queue over %d MeterValues: thinned %d of the oldest (first from transaction %s)",
            self._max_meter_values,
            len(dropped),
            dropped[0].message.local_id,
        )
        if self._store is not None:
            self._watch(self._store.discard([e.row for e in dropped]))

    def csms_id(self, local_id: str) -> int | None:
        """The CSMS's id of our transaction ``local_id`` (1.6), None when unknown."""
        return self._ids.get(local_id)

    def set_csms_id(self, local_id: str, csms_id: int) -> None:
        self._ids[local_id] = csms_id

    async def restore(self) -> None:
        """Put what earlier runs left in the outbox ahead of anything queued since; once.

        Call before :meth:`drain` (the adapter does, when it starts; so does drain). When the
        outbox cannot be read the failure is logged and the next call tries again (the
        charge point is faulted meanwhile: see :mod:`controller.recovery`).
        """
        if self._restored or self._store is None:
            return
        try:
            loaded, ids = await self._store.load()
        except StorageError as exc:
            log.error("outbox unreadable (%s): what earlier runs queued waits", exc)
            return
        if self._restored:
            return
        self._restored = True
        earlier = []
        for row in loaded:
            try:
                kind = TxKind(row.kind)
            except ValueError:
                log.error("outbox row %s has unknown kind %r: dropped", row.seq, row.kind)
                self._watch(self._store.discard([row]))
                continue
            earlier.append(_Entry(TxMessage(kind, row.local_id, row.body), row))
        self._items = deque([*earlier, *self._items])
        for local_id, csms_id in ids.items():
            self._ids.setdefault(local_id, csms_id)
        self._limit_meter_values()
        self._changed.set()

    async def resync(self) -> None:
        """Write the whole queue and id map to the outbox again (after the database failed
        and recovered: memory is the truth)."""
        if self._store is None:
            return
        await self.restore()
        if not self._restored:
            return  # the outbox may hold rows not loaded yet: rewriting would lose them
        entries = list(self._items)
        future = self._store.rewrite([e.row for e in entries], dict(self._ids))
        for entry in entries:
            entry.saved = future
        await asyncio.shield(future)

    async def wait_empty(self) -> None:
        """Return once nothing is queued or in flight."""
        while self._items:
            self._changed.clear()
            await self._changed.wait()

    async def _next(self) -> _Entry:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        return self._items[0]

    async def _committed(self, entry: _Entry) -> None:
        """Wait for ``entry``'s insert; a failed one is logged (the database's failure is
        reported as a fault) and the message is sent from memory all the same."""
        if entry.saved is None:
            return
        try:
            await asyncio.shield(entry.saved)
        except StorageError as exc:
            log.error(
                "%s of transaction %s not stored (%s): sending it anyway",
                entry.message.kind,
                entry.message.local_id,
                exc,
            )

    async def _done(self, entry: _Entry, answer: Any) -> None:
        """``entry`` left the queue: answered (``answer``) or given up (None)."""
        message = entry.message
        set_id = None
        forget_id = None
        if answer is not None and message.kind is TxKind.START:
            # Recorded under 2.0.1 too (without an id): power-loss recovery must know that
            # the CSMS has this transaction's start once no message of it is queued.
            csms_id = int(answer.transaction_id) if self._csms_ids else None
            self._ids[message.local_id] = csms_id
            set_id = (message.local_id, csms_id)
        elif message.kind is TxKind.STOP:
            self._ids.pop(message.local_id, None)
            forget_id = message.local_id
        deleted = None
        if self._store is not None:
            deleted = self._store.delete(entry.row, set_id=set_id, forget_id=forget_id)
        if self._items and self._items[0] is entry:
            self._items.popleft()
        elif entry in self._items:
            self._items.remove(entry)
        self._changed.set()
        if deleted is not None:
            try:
                await asyncio.shield(deleted)
            except StorageError as exc:
                log.error("outbox: %s of %s not removed: %s", message.kind, message.local_id, exc)

    def _watch(self, future: asyncio.Future[None]) -> None:
        """A write nobody awaits: its failure reaches Storage.on_failure; log it too."""

        def done(f: asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("outbox write failed: %s", f.exception())

        future.add_done_callback(done)

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
        await self.restore()
        while True:
            entry = await self._next()
            await self._committed(entry)
            if not self._items or self._items[0] is not entry:
                continue  # thinned while its insert was awaited
            message = entry.message
            transaction_id = None
            if message.kind is not TxKind.START and self._csms_ids:
                transaction_id = self._ids.get(message.local_id)
                if transaction_id is None and message.kind is TxKind.STOP:
                    transaction_id = NO_TRANSACTION_ID
                if transaction_id is None or transaction_id == NO_TRANSACTION_ID:
                    log.warning(
                        "%s of transaction %s goes without an id: its StartTransaction got none",
                        message.kind,
                        message.local_id,
                    )
            answer = await self._send_with_retries(
                entry, transaction_id, send, attempts, retry_interval_s
            )
            # The CSMS has it: record that even if the link drops (we are cancelled) now.
            await asyncio.shield(self._finish(entry, answer, confirmed))

    async def _finish(self, entry: _Entry, answer: Any, confirmed: Confirmed) -> None:
        await self._done(entry, answer)
        if answer is not None:
            await confirmed(entry.message, answer)

    async def _send_with_retries(
        self,
        entry: _Entry,
        transaction_id: int | None,
        send: Send,
        attempts: Callable[[], int],
        retry_interval_s: Callable[[], float],
    ) -> Any:
        tries = 0
        message = entry.message
        self._in_flight = entry
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
