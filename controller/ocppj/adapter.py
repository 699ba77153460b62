"""The skeleton every version adapter shares: the link's properties, run and stop, the
tasks that serve a registered connection, and the order of an authorization.

A version adapter (:class:`~controller.ocpp16.Ocpp16Adapter`, :class:`~controller.ocpp201.
adapter.Ocpp201Adapter`) derives from :class:`LinkedAdapter` and builds, in its
``__init__``, the parts named there (the link loop, the session caller, the durable queue,
the task set, the authorizer); what it then adds is the version's own: its messages, the
background tasks only it has, what it sends first once registered. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Generic

from controller.csms.auth import Authorizer
from controller.csms.calls import CallFailed, CallRefused
from controller.csms.link import LinkState, LinkTiming
from controller.csms.queue import TransactionQueue
from controller.csms.security_events import SecurityEvents
from controller.csms.tasks import TaskSet
from controller.domain import AuthResult, AuthStatus
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES
from controller.ocppj.link_loop import CP, LinkLoop, replaced_timing

log = logging.getLogger(__name__)


class LinkedAdapter(Generic[CP]):
    """A CSMS adapter around one :class:`LinkLoop`: the :class:`~controller.csms.adapter.
    CsmsAdapter` members that do not depend on the version.

    The version's ``__init__`` sets :attr:`_link`, :attr:`_caller`, :attr:`_queue`,
    :attr:`_tasks`, :attr:`_authorizer` and :attr:`_security_events`.
    """

    _link: LinkLoop[CP]
    _caller: SessionCaller[CP]
    _queue: TransactionQueue
    _tasks: TaskSet
    _authorizer: Authorizer
    _security_events: SecurityEvents

    # --- state ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The CSMS endpoint: the base URL with the charge point id as last path segment."""
        return self._link.url

    @property
    def state(self) -> LinkState:
        return self._link.state

    @property
    def timing(self) -> LinkTiming:
        """The link's timing (see :class:`LinkTiming`); a new one reaches the link at its
        next connection, backoff and boot retry. Its ``interval_scale`` must stay."""
        return self._link.timing

    @timing.setter
    def timing(self, timing: LinkTiming) -> None:
        self._link.timing = replaced_timing(self._link.timing, timing)

    @property
    def online(self) -> bool:
        """True while a websocket to the CSMS is open (registered or not)."""
        return self._caller.cp is not None

    @property
    def registered(self) -> bool:
        """True while the current connection's BootNotification is Accepted."""
        return self._caller.registered

    @property
    def queued(self) -> int:
        """Transaction messages waiting to be sent (or being sent)."""
        return len(self._queue)

    async def resync(self) -> None:
        """Write the transaction queue to the database again (it failed and works again)."""
        await self._queue.resync()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the transaction queue to empty (before a reset)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.wait_empty()
        except TimeoutError:
            return False
        return True

    # --- lifecycle --------------------------------------------------------------------------

    async def _run_link(
        self, name: str, background: Mapping[str, Coroutine[Any, Any, None]]
    ) -> None:
        """The link and the version's ``background`` tasks (by task name) until cancelled;
        then the link is stopped, every spawned task cancelled and the pending security
        events stored before the storage closes. ``name`` prefixes the link task's name."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._link.run(), name=f"{name}-link")
                for task_name, work in background.items():
                    group.create_task(work, name=task_name)
        finally:
            self._link.set_state(LinkState.STOPPED)
            await self._tasks.cancel_all()
            await self._security_events.flush()  # stored before the storage closes

    def _serve_common(
        self,
        group: asyncio.TaskGroup,
        cp: CP,
        name: str,
        *,
        transactions: Callable[[CP], Coroutine[Any, Any, None]],
        security_event: Callable[[Mapping[str, str]], Any],
    ) -> None:
        """Add to ``group`` what every version runs while ``cp`` is registered: heartbeats,
        the transaction queue (``transactions(cp)`` drains it) and the security events
        (``security_event(event)`` is the version's notification of one)."""
        group.create_task(self._link.heartbeat(cp), name=f"{name}-heartbeat")
        group.create_task(transactions(cp), name=f"{name}-transactions")
        group.create_task(
            self._security_events.drain(
                lambda event: call_checked(cp, security_event(event)), CALL_FAILURES
            ),
            name=f"{name}-security-events",
        )

    # --- authorization ----------------------------------------------------------------------

    async def _authorize_online(
        self,
        id_tag: str,
        request: Callable[[], Any],
        result: Callable[[Any], AuthResult],
    ) -> AuthResult:
        """The cache (LocalPreAuthorize), else the CSMS (``request()``, its answer read by
        ``result``), else the offline rules."""
        pre = await self._authorizer.pre_authorized(id_tag)
        if pre is not None:
            log.info("%s pre-authorized from the cache", id_tag)
            return pre
        if self._caller.registered:
            try:
                # one response timeout in all, however long other calls hold the link
                async with asyncio.timeout(self._link.timing.response_timeout_s):
                    conf = await self._caller.call(request())
            except CallRefused as exc:
                # The CSMS is there and answered, with a CALLERROR or an answer that fails
                # validation: that is no acceptance, and no reason for the offline rules
                # (they are for a CSMS out of reach, not for one that said something else).
                log.warning("Authorize %s answered unusably (%s): Invalid", id_tag, describe(exc))
                return AuthResult(AuthStatus.INVALID)
            except (CallFailed, TimeoutError) as exc:
                log.warning("Authorize %s unanswered (%s): deciding offline", id_tag, describe(exc))
            else:
                return await self._authorizer.remember(id_tag, result(conf))
        offline = await self._authorizer.offline(id_tag)
        log.info("%s authorized offline: %s", id_tag, offline.status)
        return offline
