"""The supervisor's event broadcast: what happened, for every edge that listens.

The local web page and API, MQTT and local energy management hear the core through this
broadcast: status changes, transactions started and stopped, meter samples, faults, limit
changes and the CSMS link's state. None of them may delay the supervisor or the safety
path, so :meth:`Broadcast.publish` only appends to one bounded queue per listener and
returns; each listener's queue is drained by a task of its own, which awaits the
listener. A listener that sleeps holds up only its own queue; one that raises is logged
(rate-limited) and keeps receiving the events that follow; one that never suspends gets
one event per turn of the loop, so a hazard's callback never waits behind its queue.

Why the CSMS adapter is not one of these listeners: its :class:`~controller.domain.CsmsLink`
methods are called synchronously by the supervisor, in the order of the machine's
commands, and return at once (the adapter queues and sends). Its transaction messages are
ordered with the transaction journal (recorded before StartTransaction is queued, see
:mod:`controller.recovery`) and kept in the durable outbox until the CSMS confirms them, so
they need no second queue, and moving them behind one would change their order and timing.

What a full queue does (``maxlen`` undelivered events):

- the oldest *state* event (status, meter sample, faults, limits, link state) is
  dropped: each is superseded by a later one, and the listener can read the current state
  from :class:`controller.status_snapshot.StatusSnapshot` at any time;
- transaction events are never dropped while a state event can go instead. A listener so
  far behind that its queue holds nothing but transaction events is cut off instead of
  growing without bound: its queue is emptied, the error is logged, and it receives
  :class:`Resync` before anything newer, so it knows it must rebuild from the snapshot
  (the transactions themselves are safe in the state database);
- whatever was dropped, the listener's next delivery is preceded by one :class:`Resync`
  saying how many events it missed: nothing is lost silently.

Everything here runs on the event loop's thread; listeners are coroutines and must not
block the thread (a blocking call belongs in ``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from controller.connector_types import ConnectorStatus
from controller.domain import MeterSample, Transaction
from controller.limits import CurrentLimits, Offer
from drivers.errors import FaultKind

log = logging.getLogger(__name__)

#: Undelivered events a listener may have queued: about four minutes of one connector's
#: meter samples (one a second), far more than a healthy listener ever falls behind.
DEFAULT_MAXLEN = 256
#: A listener that keeps failing has its traceback logged at most this often (seconds).
FAILURE_LOG_PERIOD_S = 10.0


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A connector's OCPP-neutral status changed; ``fault`` says why when Faulted."""

    connector_id: int
    status: ConnectorStatus
    fault: FaultKind | None


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """A transaction began (a copy of it as it was at the start)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class TransactionStopped:
    """A transaction ended (a copy of it with its stop fields set)."""

    transaction: Transaction


@dataclass(frozen=True, slots=True)
class MeterSampled:
    """A meter reading of one connector (about once a second per connector)."""

    sample: MeterSample
    transaction_id: str | None  # the running transaction's local id, None outside one


@dataclass(frozen=True, slots=True)
class FaultsChanged:
    """The set of active faults on a connector changed (empty: none any more)."""

    connector_id: int
    faults: frozenset[FaultKind]


@dataclass(frozen=True, slots=True)
class LimitsChanged:
    """A limit source was set or cleared, or a fixed bound (the cable) changed the offer."""

    connector_id: int
    limits: CurrentLimits
    offer: Offer


@dataclass(frozen=True, slots=True)
class LinkStateChanged:
    """The CSMS link's state (free text of the adapter: "registered", "backoff", ...)."""

    state: str


@dataclass(frozen=True, slots=True)
class Resync:
    """Sent to one listener after its queue overflowed: ``dropped`` events never reached
    it. Read the current state from the status snapshot instead of the events missed."""

    dropped: int


SupervisorEvent = (
    StatusEvent
    | TransactionStarted
    | TransactionStopped
    | MeterSampled
    | FaultsChanged
    | LimitsChanged
    | LinkStateChanged
    | Resync
)

Listener = Callable[[SupervisorEvent], Awaitable[None]]
"""A coroutine function given each event in order; it may take its time (its queue waits)."""


def _is_transaction(event: SupervisorEvent) -> bool:
    return isinstance(event, TransactionStarted | TransactionStopped)


class Subscription:
    """One listener, its bounded queue and the task that delivers from it.

    Created by :meth:`Broadcast.subscribe`; :meth:`close` ends delivery (idempotent).
    """

    def __init__(self, name: str, listener: Listener, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self.name = name
        self._listener = listener
        self._maxlen = maxlen
        self._queue: collections.deque[SupervisorEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._dropped = 0  # since the last Resync was delivered
        self.dropped_total = 0
        self.failures = 0
        self._failure_logged_at = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Events waiting to be delivered (never more than ``maxlen``)."""
        return len(self._queue)

    def pending(self) -> tuple[SupervisorEvent, ...]:
        """The events waiting to be delivered, oldest first (for tests and diagnostics)."""
        return tuple(self._queue)

    def offer(self, event: SupervisorEvent) -> None:
        """Queue ``event``; never blocks, never raises. Loop thread only."""
        if self._closed:
            return
        if len(self._queue) >= self._maxlen:
            self._make_room()
        self._queue.append(event)
        self._wake.set()
        if self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # published outside the loop (set-up code): delivered from the next
            self._task = loop.create_task(self._deliver(), name=f"listener-{self.name}")

    def _make_room(self) -> None:
        for i, queued in enumerate(self._queue):
            if not _is_transaction(queued):
                del self._queue[i]
                self._count_dropped(1)
                return
        # Nothing but transaction events: this listener has stopped keeping up for good.
        log.error(
            "listener %s: %d transaction events undelivered; cut off, it must resync",
            self.name,
            len(self._queue),
        )
        self._count_dropped(len(self._queue))
        self._queue.clear()

    def _count_dropped(self, count: int) -> None:
        if self._dropped == 0:
            log.warning("listener %s is behind: dropping its oldest events", self.name)
        self._dropped += count
        self.dropped_total += count

    async def _deliver(self) -> None:
        while not self._closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._dropped:
                event: SupervisorEvent = Resync(self._dropped)
                self._dropped = 0
            else:
                event = self._queue.popleft()
            try:
                await self._listener(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failed(event)
            # A listener that never suspends would otherwise run its whole queue in one go,
            # and a hazard's callback (an RCD trip) would wait behind it: one event per turn.
            await asyncio.sleep(0)

    def _failed(self, event: SupervisorEvent) -> None:
        """Log a listener's exception, with its traceback at most once per
        ``FAILURE_LOG_PERIOD_S``: a listener failing on every event must not flood the log
        (nor take the loop's time writing it)."""
        self.failures += 1
        now = time.monotonic()
        if now - self._failure_logged_at >= FAILURE_LOG_PERIOD_S:
            log.exception(
                "listener %s failed on %s (%d failures so far)",
                self.name,
                type(event).__name__,
                self.failures,
            )
            self._failure_logged_at = now

    def close(self) -> None:
        """Stop delivering and forget the queue; idempotent."""
        self._closed = True
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()


class Broadcast:
    """Fans supervisor events out to every subscribed listener. Loop thread only."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(
        self, name: str, listener: Listener, *, maxlen: int = DEFAULT_MAXLEN
    ) -> Subscription:
        """Deliver every event published from now on to ``listener`` (in order, through a
        queue of at most ``maxlen`` events). ``name`` appears in logs and task names."""
        subscription = Subscription(name, listener, maxlen)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to ``subscription``; idempotent."""
        subscription.close()
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, event: SupervisorEvent) -> None:
        """Queue ``event`` for every listener and return at once (O(listeners))."""
        for subscription in self._subscriptions:
            subscription.offer(event)

    def close(self) -> None:
        """Unsubscribe everyone (on shutdown); idempotent."""
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)
