"""Serving the CSMS's CALLs on one OCPP-J connection, the same in every version: a mixin
before the version's ``ChargePoint`` in the bases.

:meth:`CallServing.route_message` replaces the library's: every frame is checked first (the
version's :meth:`~CallServing.check_frame`) so malformed frames get a CALLERROR instead of
silence. CALLs are served one at a time, as OCPP-J expects (a CSMS sends its next CALL
after our answer), by a task apart from the receive loop, so a slow handler never holds up
the answers to our own calls. A CSMS that does not wait cannot make the charger pile up
work: at most :data:`CALL_BACKLOG` CALLs wait to be served; each one beyond that is answered
at once with a CALLERROR ``GenericError`` ("busy") and never served. The receive loop
yields to the event loop after each CALL, so a flood of frames already buffered cannot
hold the loop for the whole flood. Nor can it make the charger spend its CPU: every frame
but an answer to a call of ours takes a token of the connection's
:class:`~controller.ocppj.throttle.FrameBucket` first, and when none is left the receive
loop waits before it reads on (TCP pushes back on the CSMS; the module's docstring says
what becomes of a link that keeps flooding).

Every CALL gets an answer: one the version's :meth:`~CallServing.precheck` refuses never
reaches the library, a failure the library raises becomes the version's CALLERROR
(:meth:`~CallServing.call_error_for`), and any other failure while serving it is logged as
our bug and answered with InternalError.

A CALLRESULT or CALLERROR reaches the library's response queue only when it answers a call of
ours still waiting (:meth:`CallServing.call` notes each one's id); anything else is logged
and dropped (the library would keep it queued, and skip each stale entry with one more
recursive call at our next call: 50,000 unsolicited answers cost 12 MB and ended in a
RecursionError that dropped the link). Loop thread only.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from ocpp.charge_point import ChargePoint
from ocpp.exceptions import GenericError, InternalError, OCPPError
from ocpp.messages import Call, CallError, CallResult
from websockets.exceptions import ConnectionClosed

from controller.ocppj.frames import FrameProblem
from controller.ocppj.throttle import LOGGED_COUNTS, FrameBucket

log = logging.getLogger(__name__)

#: CALLs from the CSMS that may wait to be served; a CALL beyond them is refused as busy.
CALL_BACKLOG = 16


class CallServing(ChargePoint, abc.ABC):
    """The serving of CALLs; the version gives its frame check, its CALLERROR mapping and a
    task spawner (:meth:`spawn_serving`), and calls :meth:`init_serving` in ``__init__``.

    Abstract: a version class that forgot one of the three cannot be instantiated (a
    TypeError naming it at the first connection, not a NotImplementedError at the first
    frame)."""

    #: Set by the link loop once this connection's BootNotification is Accepted (or the
    #: charge point registered earlier in this run); until then remote starts are refused.
    registered: bool = False

    def init_serving(self, task_prefix: str) -> None:
        self._task_prefix = task_prefix
        self._awaiting: set[str] = set()  # unique ids of our calls waiting for their answer
        self._dropped_answers = 0
        self._backlog: collections.deque[Call] = collections.deque()
        self._serving = False  # a task is serving the backlog
        self.refused_busy = 0  # CALLs refused because the backlog was full (a diagnostic)
        self.frame_bucket = FrameBucket()  # the CSMS's frames other than answers to ours

    # --- what the version gives ----------------------------------------------------------

    @abc.abstractmethod
    def check_frame(self, raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
        """The frame parsed, or the problem to answer with a CALLERROR."""

    @abc.abstractmethod
    def call_error_for(self, call: Call, error: OCPPError) -> OCPPError:
        """The version's CALLERROR for ``error`` raised while serving ``call``."""

    def precheck(self, call: Call) -> OCPPError | None:
        """A CALLERROR for a CALL the library must not see, else None."""
        return None

    @abc.abstractmethod
    def spawn_serving(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task the connection's owner cancels with it."""

    # --- calls and frames -----------------------------------------------------------------

    async def call(
        self,
        payload: Any,
        suppress: bool = True,
        unique_id: str | None = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        """The library's ``call``, with its id noted while it waits (see :meth:`route_message`)."""
        unique_id = unique_id if unique_id is not None else str(uuid.uuid4())
        self._awaiting.add(unique_id)
        try:
            return await super().call(
                payload,
                suppress=suppress,
                unique_id=unique_id,
                skip_schema_validation=skip_schema_validation,
            )
        finally:
            self._awaiting.discard(unique_id)

    async def route_message(self, raw_msg: str | bytes) -> None:
        message = self.check_frame(raw_msg)
        if isinstance(message, (CallResult, CallError)) and message.unique_id in self._awaiting:
            self._awaiting.discard(message.unique_id)  # one answer per call
            self._response_queue.put_nowait(message)
            return
        # Anything else the CSMS may send as fast as it likes: the receive loop (the caller)
        # reads no further frame until the bucket has a token (see controller.ocppj.throttle).
        await self.frame_bucket.take()
        if isinstance(message, FrameProblem):
            log.warning(
                "malformed frame from the CSMS (%s): %.200r",
                message.error.details.get("cause"),
                raw_msg,
            )
            await self._send(message.to_json())
        elif isinstance(message, Call):
            await self._accept_call(message)
            await asyncio.sleep(0)  # let the loop's other work run between frames of a flood
        else:
            self._dropped_answers += 1
            if self._dropped_answers in LOGGED_COUNTS:  # a flood must not flood the journal
                log.warning(
                    "dropped %d answer(s) to no call of ours on this link, the last: %.200r",
                    self._dropped_answers,
                    raw_msg,
                )

    async def _accept_call(self, message: Call) -> None:
        """Queue ``message`` for the serving task, or refuse it when the backlog is full."""
        if len(self._backlog) >= CALL_BACKLOG:
            self.refused_busy += 1
            if self.refused_busy in LOGGED_COUNTS:  # a flood must not flood the journal
                log.warning(
                    "CSMS sends CALLs without waiting for the answers: %d refused as busy "
                    "(at most %d wait to be served)",
                    self.refused_busy,
                    CALL_BACKLOG,
                )
            busy = GenericError(
                description="busy", details={"cause": f"more than {CALL_BACKLOG} calls waiting"}
            )
            try:
                await self._send(message.create_call_error(busy).to_json())
            except ConnectionClosed:
                log.info("link closed before the busy CALLERROR for %s went out", message.action)
            return
        self._backlog.append(message)
        if not self._serving:
            self._serving = True
            self.spawn_serving(self._serve_backlog(), f"{self._task_prefix}-calls")

    async def _serve_backlog(self) -> None:
        """Serve the waiting CALLs in order, one at a time (each gets its answer, see
        :meth:`_serve`); ends when none is left, so no task outlives its connection."""
        try:
            while self._backlog:
                await self._serve(self._backlog.popleft())
        finally:
            self._serving = False

    async def _serve(self, message: Call) -> None:
        try:
            problem = self.precheck(message)
            if problem is not None:
                await self._refuse(message, problem)
            else:
                await self._handle_call(message)
        except OCPPError as error:
            await self._refuse(message, self.call_error_for(message, error))
        except ConnectionClosed:
            log.info("link closed before the answer to %s went out", message.action)
        except Exception:  # our bug, not the CSMS's: it still hears back
            log.exception("%s %s failed", message.action, message.unique_id)
            await self._refuse(message, InternalError(details={"cause": "the charge point failed"}))

    async def _refuse(self, message: Call, answer: OCPPError) -> None:
        log.warning("%s %s: CALLERROR %s", message.action, message.unique_id, answer.code)
        try:
            await self._send(message.create_call_error(answer).to_json())
        except ConnectionClosed:
            log.info("link closed before the CALLERROR for %s went out", message.action)
