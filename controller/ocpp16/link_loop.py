"""The 1.6 link's life: connect, BootNotification until Accepted, Heartbeat, reconnect.

:meth:`LinkLoop.run` connects (with the security profile's credentials and TLS, if any),
opens a 1.6 session on the websocket (:class:`OcppChargePoint` serving the CSMS's requests,
pings at WebSocketPingInterval), boots, and while registered runs the heartbeat and what the
adapter serves (``serve``: status, transaction and security-event senders); a failure of any
of it ends the connection, and the next attempt follows a capped, jittered backoff. Loop
thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ocpp.v16 import call
from ocpp.v16.enums import RegistrationStatus
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from controller.backoff import Backoff
from controller.csms.calls import Spawn
from controller.csms.key_timers import KeyTimers
from controller.csms.link import (
    LinkDead,
    LinkRefused,
    LinkState,
    LinkTiming,
    keepalive,
    open_link,
)
from controller.csms.security import LinkSecurity, LinkSecurityError
from controller.csms.timers import Retimer
from controller.ocpp16.charge_point import OcppChargePoint
from controller.ocpp16.errors import CALL_FAILURES
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.services import Services
from controller.ocppj.caller import SessionCaller, call_checked, describe

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)

#: Why a connection attempt or a connection ended; anything else is a bug, logged in full.
LINK_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, unreachable, reset; TimeoutError is one too
    InvalidHandshake,
    InvalidURI,
    ConnectionClosed,
    LinkDead,
    LinkRefused,
    LinkSecurityError,  # TLS or credentials refused, or a profile the URL cannot give
)
#: Seconds between a raised SecurityProfile's answer and closing the link to use it.
RELINK_DELAY_S = 0.2


class LinkLoop:
    """One CSMS endpoint, reconnected forever.

    ``serve(cp)`` runs while the connection ``cp`` is registered, until cancelled;
    ``booted()`` hears each accepted BootNotification before it.
    """

    def __init__(
        self,
        *,
        url: str,
        chargepoint_id: str,
        timing: LinkTiming,
        security: LinkSecurity | None,
        boot_request: call.BootNotification,
        config: OcppConfig,
        timers: KeyTimers,
        caller: SessionCaller[OcppChargePoint],
        services: Services,
        spawn: Spawn,
        booted: Callable[[], None],
        serve: Callable[[OcppChargePoint], Awaitable[None]],
    ) -> None:
        self.url = url
        self._chargepoint_id = chargepoint_id
        self._timing = timing
        self._security = security
        self._boot_request = boot_request
        self._config = config
        self._timers = timers
        self._caller = caller
        self._services = services
        self._spawn = spawn
        self._booted = booted
        self._serve = serve
        self.state = LinkState.STOPPED
        #: A BootNotification of this run was Accepted: later connections are reconnects,
        #: not boots, and send none (1.6 §4.2: "each time it boots or reboots").
        self._booted_once = False
        if security is not None:
            security.on_upgrade(self._relink)

    def set_state(self, state: LinkState) -> None:
        if state is not self.state:
            log.info("CSMS link %s: %s -> %s", self.url, self.state, state)
            self.state = state

    async def run(self) -> None:
        """Connect, talk, back off, connect again; until cancelled."""
        timing = self._timing
        backoff = Backoff(timing.backoff_initial_s, timing.backoff_max_s, timing.backoff_jitter)
        while True:
            self.set_state(LinkState.CONNECTING)
            try:
                await self._connect_once(backoff)
            except* LINK_ERRORS as group:
                log.warning("CSMS link %s: %s", self.url, "; ".join(map(str, group.exceptions)))
            except* Exception as group:
                log.error("CSMS link failed unexpectedly; reconnecting", exc_info=group)
            delay = backoff.next_delay()
            self.set_state(LinkState.BACKOFF)
            log.info("reconnecting to %s in %.1f s", self.url, delay)
            await asyncio.sleep(delay)

    async def heartbeat(self, cp: OcppChargePoint) -> None:
        """Heartbeat every HeartbeatInterval while registered on ``cp``; until cancelled."""
        timer = Retimer(lambda: self._timers.interval("HeartbeatInterval"))
        with self._timers.following("HeartbeatInterval", timer):
            while True:
                await timer.wait()
                try:
                    await call_checked(cp, call.Heartbeat())
                except CALL_FAILURES as exc:
                    log.warning("Heartbeat failed: %s", describe(exc))

    async def _connect_once(self, backoff: Backoff) -> None:
        if self._security is not None:
            ws = await self._security.open(self.url, self._timing)
        else:
            ws = await open_link(self.url, self._timing)
        try:
            await self._session(ws, backoff)
        finally:
            await ws.close()  # 1000 normal closure, also on shutdown; at once when already down

    def _relink(self) -> None:
        """SecurityProfile was raised or AuthorizationKey changed: close the link so the next
        connection uses it (a reconnect, not a boot: no BootNotification)."""
        cp = self._caller.cp
        if cp is not None:
            self._spawn(self._close_after_answer(cp), "ocpp16-relink")

    async def _close_after_answer(self, cp: OcppChargePoint) -> None:
        await asyncio.sleep(RELINK_DELAY_S)  # the ChangeConfiguration answer goes out first
        if self._caller.cp is cp:
            log.info("closing the CSMS link to reconnect with the new security settings")
            await cp._connection.close()

    async def _session(self, ws: ClientConnection, backoff: Backoff) -> None:
        cp = OcppChargePoint(
            self._chargepoint_id, ws, self._services, self._timing.response_timeout_s
        )
        closed = asyncio.Event()
        self._caller.attach(cp, closed)
        self.set_state(LinkState.BOOTING)
        pings = Retimer(lambda: self._timers.interval("WebSocketPingInterval"))
        try:
            with self._timers.following("WebSocketPingInterval", pings):
                async with asyncio.TaskGroup() as group:
                    group.create_task(cp.start(), name="ocpp16-receive")
                    group.create_task(
                        keepalive(
                            ws,
                            pings,
                            lambda: self._timers.interval("WebSocketPingInterval") or 1.0,
                        ),
                        name="ocpp16-ping",
                    )
                    group.create_task(self._converse(cp, backoff), name="ocpp16-converse")
        finally:
            closed.set()
            self._caller.detach()

    async def _converse(self, cp: OcppChargePoint, backoff: Backoff) -> None:
        if self._booted_once:
            # A reconnect (network loss, CSMS restart, a new security profile or password):
            # the charge point did not boot, so no BootNotification, and a HeartbeatInterval
            # the CSMS set since the boot stays.
            log.info("reconnected; registered since this run's boot: no BootNotification")
        else:
            await self._boot(cp)
            self._booted_once = True
            self._booted()
        backoff.reset()
        cp.registered = True
        self._caller.registered = True
        self.set_state(LinkState.REGISTERED)
        await self._serve(cp)

    async def _boot(self, cp: OcppChargePoint) -> None:
        """BootNotification until Accepted (1.6 §4.2: Pending and Rejected retry later)."""
        while True:
            try:
                conf = await call_checked(cp, self._boot_request)
            except CALL_FAILURES as exc:
                delay = self._timing.boot_retry_s
                log.warning("BootNotification failed (%s); again in %.1f s", describe(exc), delay)
            else:
                if conf.status == RegistrationStatus.accepted:
                    log.info("BootNotification accepted; heartbeat every %s s", conf.interval)
                    if conf.interval > 0:
                        await self._set_key("HeartbeatInterval", str(conf.interval))
                    return
                self.set_state(
                    LinkState.PENDING
                    if conf.status == RegistrationStatus.pending
                    else LinkState.REJECTED
                )
                delay = (
                    conf.interval * self._timing.interval_scale
                    if conf.interval > 0
                    else self._timing.boot_retry_s
                )
                log.info("BootNotification %s; again in %.1f s", conf.status, delay)
            await asyncio.sleep(delay)

    async def _set_key(self, key: str, value: str) -> None:
        if self._config.get(key) == value:
            return
        status = await self._config.change(key, value)
        if status.value not in ("Accepted", "RebootRequired"):
            log.warning("could not set %s to %s: %s", key, value, status)
