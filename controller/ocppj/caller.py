"""Calls to the CSMS over the current OCPP-J connection (any version), failures as
:class:`CallFailed`.

:func:`call_checked` sends on a given connection (the session's own tasks use it);
:class:`SessionCaller` is what everything outside the session sends through (services,
authorization, clock-aligned values): it knows the current connection, if any, and refuses
while there is none or it is not registered. Loop thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

from ocpp.charge_point import ChargePoint as OcppChargePoint
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from websockets.exceptions import ConnectionClosed

from controller.csms.calls import CallFailed, CallRefused
from controller.ocppj.frames import CALL_FAILURES

CALL_OR_LINK_FAILURES: tuple[type[BaseException], ...] = (*CALL_FAILURES, ConnectionClosed)
#: The CSMS answered, but unusably: a CALLERROR, or an answer that fails the schemas (the
#: library raises an OCPPError for both) or names an error code OCPP does not define.
ANSWERED_FAILURES: tuple[type[BaseException], ...] = (OCPPError, UnknownCallErrorCodeError)


def describe(exc: BaseException) -> str:
    """A failed call's reason, for the log."""
    if isinstance(exc, CallFailed):
        return str(exc)
    if isinstance(exc, OCPPError):
        return f"{exc.code}: {exc.description}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"


async def call_checked(cp: OcppChargePoint, payload: Any) -> Any:
    """``cp.call(payload)`` raising on a CALLERROR, and honouring a cancellation it swallowed.

    The library waits for the answer with ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation that arrives together with the answer (CPython gh-86296): the task would
    carry on as if never cancelled, and a TaskGroup waiting for it would hang.
    """
    try:
        return await cp.call(payload, suppress=False)
    finally:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


#: The version's ChargePoint class (1.6 or 2.0.1), so its own attributes stay typed.
CP = TypeVar("CP", bound=OcppChargePoint)


class SessionCaller(Generic[CP]):
    """The current connection (set by the link loop) and calls from outside its tasks."""

    def __init__(self) -> None:
        self.cp: CP | None = None
        self._closed: asyncio.Event | None = None
        self.registered = False  # the current connection's BootNotification is Accepted

    def attach(self, cp: CP, closed: asyncio.Event) -> None:
        """A connection opened; ``closed`` is set when it ends."""
        self.cp, self._closed = cp, closed

    def detach(self) -> None:
        self.cp = self._closed = None
        self.registered = False

    async def call(self, payload: Any) -> Any:
        """Send ``payload`` now and return the answer.

        Raises :class:`CallFailed` when offline, unanswered, or the link closes meanwhile.
        """
        cp, closed = self.cp, self._closed
        if cp is None or closed is None or not self.registered:
            raise CallFailed("not connected and registered")
        calling = asyncio.ensure_future(call_checked(cp, payload))
        closing = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({calling, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not calling.done():
                calling.cancel()
        if not calling.done():
            raise CallFailed("the link closed")
        try:
            return calling.result()
        except ANSWERED_FAILURES as exc:
            raise CallRefused(describe(exc)) from exc
        except CALL_OR_LINK_FAILURES as exc:
            raise CallFailed(describe(exc)) from exc
