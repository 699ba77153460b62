"""NotifyEvent messages on their way to the CSMS (N07, N08), kept while the link is down.

Hardware faults (:mod:`.fault_events`) and tripped monitors (:mod:`.monitoring`) report
through :class:`NotifyEvents`: each report is queued in order and sent while the station is
registered; a report made while offline waits and goes out after the reconnect, in order,
rather than being dropped. The queue lives in memory: after a restart each fault is
reported afresh from the hardware and each monitor from the next reading, so nothing the
CSMS must hear is lost with it. It holds at most :data:`MAX_QUEUED` reports; beyond that
the oldest is dropped (logged), so a long outage with a flapping sensor cannot grow it
without bound.

A report the CSMS answers with a CALLERROR is logged and dropped (sending it again would
get the same answer); one that got no answer (timeout, the link closed) stays first in the
queue for the next connection. ``eventId`` is unique in this run; ``seqNo`` counts every
NotifyEvent of the run from 0. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocpp.v201 import call

from controller.csms.wire import iso_utc
from controller.ocppj.caller import ANSWERED_FAILURES, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from ocpp.charge_point import ChargePoint

log = logging.getLogger(__name__)

#: Reports kept while offline; the oldest goes first beyond this.
MAX_QUEUED = 200
#: Seconds before a report that got no answer is tried again on the same connection.
RETRY_S = 5.0


class NotifyEvents:
    """The NotifyEvent reports not yet answered, oldest first."""

    def __init__(self, clock: Callable[[], dt.datetime], *, retry_s: float = RETRY_S) -> None:
        self._clock = clock
        self._retry_s = retry_s
        self._queue: deque[call.NotifyEvent] = deque()
        self._added = asyncio.Event()
        self._event_ids = itertools.count(1)
        self._seq = itertools.count(0)

    def __len__(self) -> int:
        return len(self._queue)

    def next_event_id(self) -> int:
        """A fresh ``eventId`` for one EventDataType."""
        return next(self._event_ids)

    def report(self, event_data: list[dict[str, Any]]) -> call.NotifyEvent:
        """Queue one NotifyEvent carrying ``event_data``; the request queued."""
        request = call.NotifyEvent(
            generated_at=iso_utc(self._clock()), seq_no=next(self._seq), event_data=event_data
        )
        if len(self._queue) >= MAX_QUEUED:
            dropped = self._queue.popleft()
            log.warning("NotifyEvent queue full: dropping the oldest (seqNo %d)", dropped.seq_no)
        self._queue.append(request)
        self._added.set()
        return request

    async def drain(self, cp: ChargePoint) -> None:
        """Send the queue in order over ``cp`` (registered); until cancelled."""
        while True:
            if not self._queue:
                self._added.clear()
                await self._added.wait()
                continue
            request = self._queue[0]
            try:
                await call_checked(cp, request)
            except ANSWERED_FAILURES as exc:  # a CALLERROR: the CSMS will not take it
                log.warning("NotifyEvent %d refused: %s; dropped", request.seq_no, describe(exc))
            except CALL_FAILURES as exc:
                log.warning("NotifyEvent %d unanswered: %s", request.seq_no, describe(exc))
                await asyncio.sleep(self._retry_s)
                continue
            if self._queue and self._queue[0] is request:
                self._queue.popleft()
