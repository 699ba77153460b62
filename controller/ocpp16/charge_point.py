"""The charge point side of an OCPP 1.6J connection: the ocpp library's ChargePoint with our
handlers for what the CSMS asks (the mixins of :mod:`controller.ocpp16.handlers`).

Each ``@on`` handler maps a request onto :class:`~controller.domain.ChargePointControl` (or
the configuration and authorization cache) and returns at once: none awaits an outgoing
call, which would stall the library's receive loop (its issue #130). Work that must follow
the answer (a reset) runs from ``@after`` in a task of our own, whose errors are logged.

:meth:`OcppChargePoint.route_message` replaces the library's: every frame is checked first
(:mod:`controller.ocpp16.errors`) so malformed frames get a CALLERROR instead of silence.

CALLs from the CSMS are served one at a time, as OCPP-J expects (a CSMS sends its next CALL
after our answer), by a task apart from the receive loop, so a slow handler never holds up
the answers to our own calls. A CSMS that does not wait cannot make the charger pile up
work: at most :data:`CALL_BACKLOG` CALLs wait to be served; each one beyond that is answered
at once with a CALLERROR ``GenericError`` ("busy") and never served. The receive loop
yields to the event loop after each CALL, so a flood of frames already buffered cannot
hold the loop for the whole flood (the safety path does not depend on the loop anyway:
:mod:`drivers.interlock`).

Every CALL gets an answer: one holding a number the library cannot judge is refused before
it reaches the library (:func:`~controller.ocpp16.errors.number_problem`), and any other
failure while serving it is logged as our bug and answered with InternalError.

A CALLRESULT or CALLERROR reaches the library's response queue only when it answers a call of
ours still waiting (:meth:`OcppChargePoint.call` notes each one's id); anything else is
logged and dropped. The library would keep it queued, and skip each stale entry with one more
recursive call at our next call: 50,000 unsolicited answers cost 12 MB and ended in a
RecursionError that dropped the link. One instance per websocket connection; loop thread
only.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import GenericError, InternalError, NotSupportedError, OCPPError
from ocpp.messages import Call
from ocpp.v16 import ChargePoint
from websockets.exceptions import ConnectionClosed

from controller.ocpp16.errors import FrameProblem, call_error_for, check_frame, number_problem
from controller.ocpp16.handlers.certificates import CertificateHandlers
from controller.ocpp16.handlers.core import CoreHandlers
from controller.ocpp16.handlers.diagnostics import DiagnosticsHandlers
from controller.ocpp16.handlers.extended_trigger import ExtendedTriggerHandlers
from controller.ocpp16.handlers.firmware import FirmwareHandlers
from controller.ocpp16.handlers.get_log import GetLogHandlers
from controller.ocpp16.handlers.local_list import LocalListHandlers
from controller.ocpp16.handlers.reservations import ReservationHandlers
from controller.ocpp16.handlers.smart_charging import SmartChargingHandlers
from controller.ocpp16.handlers.triggers import TriggerHandlers
from controller.ocpp16.keys import profile_of_action

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)

#: Dropped answers are logged at the 1st, 10th, 100th... of a connection: each one shows
#: in the journal, a flood of them costs a line per tenfold.
_LOGGED_COUNTS = frozenset(10**n for n in range(12))
#: CALLs from the CSMS that may wait to be served; a CALL beyond them is refused as busy.
CALL_BACKLOG = 16


class OcppChargePoint(
    CoreHandlers,
    CertificateHandlers,
    DiagnosticsHandlers,
    ExtendedTriggerHandlers,
    FirmwareHandlers,
    GetLogHandlers,
    LocalListHandlers,
    ReservationHandlers,
    SmartChargingHandlers,
    TriggerHandlers,
    ChargePoint,
):
    def __init__(
        self, chargepoint_id: str, connection: Any, services: Services, response_timeout: float
    ) -> None:
        super().__init__(chargepoint_id, connection, response_timeout=response_timeout)
        self._s = services
        #: Set by the link loop once this connection's BootNotification is Accepted (or the
        #: charge point registered earlier in this run); until then the boot is Pending or
        #: unanswered, and RemoteStart/RemoteStopTransaction are refused (1.6 §4.2).
        self.registered = False
        self._awaiting: set[str] = set()  # unique ids of our calls waiting for their answer
        self._dropped_answers = 0
        self._backlog: collections.deque[Call] = collections.deque()
        self._serving = False  # a task is serving the backlog
        self.refused_busy = 0  # CALLs refused because the backlog was full (a diagnostic)

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

    # --- frames ---------------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        message = check_frame(raw_msg)
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
        elif message.unique_id in self._awaiting:
            self._awaiting.discard(message.unique_id)  # one answer per call
            self._response_queue.put_nowait(message)
        else:
            self._dropped_answers += 1
            if self._dropped_answers in _LOGGED_COUNTS:  # a flood must not flood the journal
                log.warning(
                    "dropped %d answer(s) to no call of ours on this link, the last: %.200r",
                    self._dropped_answers,
                    raw_msg,
                )

    async def _accept_call(self, message: Call) -> None:
        """Queue ``message`` for the serving task, or refuse it when the backlog is full."""
        if len(self._backlog) >= CALL_BACKLOG:
            self.refused_busy += 1
            if self.refused_busy in _LOGGED_COUNTS:  # a flood must not flood the journal
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
            self._s.spawn(self._serve_backlog(), "ocpp16-calls")

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
            profile = profile_of_action(message.action)
            if profile is not None and profile not in self._s.config.table.ctx.profiles:
                # switched off by the operator's preset (SupportedFeatureProfiles)
                raise NotSupportedError(
                    description=f"{message.action}: the {profile} profile is not supported"
                )
            problem = number_problem(message)
            if problem is not None:
                await self._refuse(message, problem)
            else:
                await self._handle_call(message)
        except OCPPError as error:
            await self._refuse(message, call_error_for(message, error))
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
