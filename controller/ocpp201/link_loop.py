"""The 2.0.1 link's life: connect (``ocpp2.0.1``), BootNotification until Accepted,
Heartbeat, reconnect.

As in 1.6 (B01-B03): a Pending or Rejected boot is retried after the interval the CSMS gave
(while Rejected nothing else is sent), an Accepted one sets OCPPCommCtrlr.HeartbeatInterval,
and a reconnect within the same run sends no BootNotification (the station did not boot).
The security profile's credentials and TLS come from :class:`~controller.csms.security.
LinkSecurity`; a raised SecurityProfile or a new BasicAuthPassword closes the link so the
next connection uses it. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ocpp.v201 import call
from ocpp.v201.enums import RegistrationStatusEnumType
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
from controller.ocpp201.charge_point import Ocpp201ChargePoint
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.services import Services
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
HEARTBEAT = "OCPPCommCtrlr.HeartbeatInterval"
PING = "OCPPCommCtrlr.WebSocketPingInterval"
ATTEMPTS = "OCPPCommCtrlr.NetworkProfileConnectionAttempts"
#: Why a connection attempt or a connection ended; anything else is a bug, logged in full.
LINK_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    InvalidHandshake,
    InvalidURI,
    ConnectionClosed,
    LinkDead,
    LinkRefused,
    LinkSecurityError,
)
#: Seconds between a SetVariables answer and closing the link to use new security settings.
RELINK_DELAY_S = 0.2


class LinkLoop:
    """One CSMS endpoint, reconnected forever; ``serve(cp)`` runs while ``cp`` is
    registered, until cancelled."""

    def __init__(
        self,
        *,
        url: str,
        chargepoint_id: str,
        timing: LinkTiming,
        security: LinkSecurity | None,
        boot_request: call.BootNotification,
        model: DeviceModel,
        timers: KeyTimers,
        caller: SessionCaller[Ocpp201ChargePoint],
        services: Services,
        spawn: Spawn,
        serve: Callable[[Ocpp201ChargePoint], Awaitable[None]],
        fallback_url: str | None = None,
    ) -> None:
        self.url = url
        #: Where to go when ``url`` (a network profile's) never registers within
        #: NetworkProfileConnectionAttempts tries (B10): the ``[ocpp]`` URL; None: nowhere.
        self._fallback_url = fallback_url
        self._registered_once = False
        self._chargepoint_id = chargepoint_id
        self._timing = timing
        self._security = security
        self._boot_request = boot_request
        self._model = model
        self._timers = timers
        self._caller = caller
        self._services = services
        self._spawn = spawn
        self._serve = serve
        self.state = LinkState.STOPPED
        self._booted_once = False  # a later connection is a reconnect: no BootNotification
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
        failures = 0
        while True:
            self.set_state(LinkState.CONNECTING)
            try:
                await self._connect_once(backoff)
            except* LINK_ERRORS as group:
                log.warning("CSMS link %s: %s", self.url, "; ".join(map(str, group.exceptions)))
            except* Exception as group:
                log.error("CSMS link failed unexpectedly; reconnecting", exc_info=group)
            failures += 1
            self._fall_back(failures)
            delay = backoff.next_delay()
            self.set_state(LinkState.BACKOFF)
            log.info("reconnecting to %s in %.1f s", self.url, delay)
            await asyncio.sleep(delay)

    def _fall_back(self, failures: int) -> None:
        """After NetworkProfileConnectionAttempts failed tries without ever registering,
        leave the network profile's URL for the ``[ocpp]`` one, for the rest of this run."""
        if self._fallback_url is None or self._registered_once:
            return
        if failures < self._model.get_int(ATTEMPTS):
            return
        log.warning(
            "CSMS link: network profile URL %s unreachable after %d tries; using %s",
            self.url,
            failures,
            self._fallback_url,
        )
        self.url, self._fallback_url = self._fallback_url, None

    async def heartbeat(self, cp: Ocpp201ChargePoint) -> None:
        """Heartbeat every HeartbeatInterval while registered on ``cp``; until cancelled."""
        timer = Retimer(lambda: self._timers.interval(HEARTBEAT))
        with self._timers.following(HEARTBEAT, timer):
            while True:
                await timer.wait()
                try:
                    await call_checked(cp, call.Heartbeat())
                except CALL_FAILURES as exc:
                    log.warning("Heartbeat failed: %s", describe(exc))

    async def _connect_once(self, backoff: Backoff) -> None:
        if self._security is not None:
            ws = await self._security.open(self.url, self._timing, SUBPROTOCOL)
        else:
            ws = await open_link(self.url, self._timing, subprotocol=SUBPROTOCOL)
        try:
            await self._session(ws, backoff)
        finally:
            await ws.close()

    def _relink(self) -> None:
        cp = self._caller.cp
        if cp is not None:
            self._spawn(self._close_after_answer(cp), "ocpp201-relink")

    async def _close_after_answer(self, cp: Ocpp201ChargePoint) -> None:
        await asyncio.sleep(RELINK_DELAY_S)  # the SetVariables answer goes out first
        if self._caller.cp is cp:
            log.info("closing the CSMS link to reconnect with the new security settings")
            await cp._connection.close()

    async def _session(self, ws: ClientConnection, backoff: Backoff) -> None:
        cp = Ocpp201ChargePoint(
            self._chargepoint_id,
            ws,
            services=self._services,
            response_timeout=self._timing.response_timeout_s,
        )
        closed = asyncio.Event()
        self._caller.attach(cp, closed)
        self.set_state(LinkState.BOOTING)
        pings = Retimer(lambda: self._timers.interval(PING))
        try:
            with self._timers.following(PING, pings):
                async with asyncio.TaskGroup() as group:
                    group.create_task(cp.start(), name="ocpp201-receive")
                    group.create_task(
                        keepalive(ws, pings, lambda: self._timers.interval(PING) or 1.0),
                        name="ocpp201-ping",
                    )
                    group.create_task(self._converse(cp, backoff), name="ocpp201-converse")
        finally:
            closed.set()
            self._caller.detach()

    async def _converse(self, cp: Ocpp201ChargePoint, backoff: Backoff) -> None:
        if self._booted_once:
            log.info("reconnected; registered since this run's boot: no BootNotification")
        else:
            await self._boot(cp)
            self._booted_once = True
        backoff.reset()
        self._registered_once = True
        cp.registered = True
        self._caller.registered = True
        self.set_state(LinkState.REGISTERED)
        await self._serve(cp)

    async def _boot(self, cp: Ocpp201ChargePoint) -> None:
        """BootNotification until Accepted (B02, B03: Pending and Rejected retry after the
        interval; nothing else is sent meanwhile)."""
        while True:
            try:
                conf = await call_checked(cp, self._boot_request)
            except CALL_FAILURES as exc:
                delay = self._timing.boot_retry_s
                log.warning("BootNotification failed (%s); again in %.1f s", describe(exc), delay)
            else:
                if conf.status == RegistrationStatusEnumType.accepted:
                    log.info("BootNotification accepted; heartbeat every %s s", conf.interval)
                    if conf.interval > 0 and self._model.get(HEARTBEAT) != str(conf.interval):
                        await self._model.change(HEARTBEAT, str(conf.interval))
                    return
                self.set_state(
                    LinkState.PENDING
                    if conf.status == RegistrationStatusEnumType.pending
                    else LinkState.REJECTED
                )
                delay = (
                    conf.interval * self._timing.interval_scale
                    if conf.interval > 0
                    else self._timing.boot_retry_s
                )
                log.info("BootNotification %s; again in %.1f s", conf.status, delay)
            await asyncio.sleep(delay)
