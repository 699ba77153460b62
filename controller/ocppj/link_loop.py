"""The link's life in every OCPP-J version: connect, BootNotification until Accepted,
Heartbeat, reconnect.

:meth:`LinkLoop.run` connects (with the security profile's credentials and TLS, if any, and
the version's subprotocol), opens a session on the websocket (the version's ChargePoint
serving the CSMS's requests, pings every WebSocketPingInterval), boots, and while registered
runs what the adapter serves (``serve``: heartbeat, statuses, transactions, security
events...); a failure of any of it ends the connection, and the next attempt follows a
capped, jittered backoff (:mod:`controller.backoff`).

The rules are the same in 1.6 (§4.2) and 2.0.1 (B01-B03), so they live here once: a Pending
or Rejected boot is retried after the interval the CSMS gave (nothing else is sent
meanwhile), an Accepted one sets the heartbeat interval, and a reconnect within the same run
sends no BootNotification (the charge point did not boot). A raised security profile or a
new password closes the link so the next connection uses it. What differs between versions
is a :class:`LinkDialect`. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

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
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES
from controller.ocppj.serving import CallServing

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
#: Seconds between the answer that changed the security settings (ChangeConfiguration,
#: SetVariables) and closing the link to use them: the answer goes out first.
RELINK_DELAY_S = 0.2

#: The version's ChargePoint class, so its own attributes stay typed.
CP = TypeVar("CP", bound=CallServing)


class Settings(Protocol):
    """The version's settings (1.6 configuration keys, 2.0.1 device model), as far as the
    link needs them: the heartbeat interval to read and set, a fallback's attempt count."""

    def get(self, key: str) -> str | None: ...

    def get_int(self, key: str) -> int: ...

    async def change(self, key: str, value: str) -> str:
        """The status of the change (OCPP spelling: Accepted, RebootRequired, ...)."""
        ...


@dataclass(frozen=True, slots=True)
class LinkDialect(Generic[CP]):
    """What a version's link does its own way.

    ``name`` prefixes task names (``ocpp16``); ``session(ws, response_timeout_s)`` is the
    version's ChargePoint on a new websocket; ``heartbeat()`` a Heartbeat request;
    ``heartbeat_key`` and ``ping_key`` the settings of the two intervals; ``attempts_key``
    the setting of how many failed tries send the link to its fallback URL (2.0.1 B10;
    None: the version has none).
    """

    name: str
    subprotocol: str
    session: Callable[[ClientConnection, float], CP]
    heartbeat: Callable[[], Any]
    heartbeat_key: str
    ping_key: str
    attempts_key: str | None = None


def replaced_timing(old: LinkTiming, new: LinkTiming) -> LinkTiming:
    """``new``, checked to be one a running link can take: its ``interval_scale`` must be
    ``old``'s, since the timers and queues were built with it (ValueError otherwise)."""
    if new.interval_scale != old.interval_scale:
        raise ValueError(
            f"interval_scale is fixed when the adapter is built ({old.interval_scale}), "
            f"not {new.interval_scale}"
        )
    return new


class LinkLoop(Generic[CP]):
    """One CSMS endpoint, reconnected forever.

    ``serve(cp)`` runs while the connection ``cp`` is registered, until cancelled;
    ``booted()`` hears each accepted BootNotification before it. :attr:`timing` may be
    replaced at any time: the next connection, backoff and boot retry use the new one.
    ``fallback_url`` is where to go when ``url`` (a network profile's) never registers
    within the dialect's attempts (2.0.1 B10): the ``[ocpp]`` URL; None: nowhere.
    """

    def __init__(
        self,
        *,
        dialect: LinkDialect[CP],
        url: str,
        timing: LinkTiming,
        security: LinkSecurity | None,
        boot_request: Any,
        settings: Settings,
        timers: KeyTimers,
        caller: SessionCaller[CP],
        spawn: Spawn,
        serve: Callable[[CP], Awaitable[None]],
        booted: Callable[[], None] = lambda: None,
        fallback_url: str | None = None,
    ) -> None:
        self.url = url
        self.timing = timing
        self._dialect = dialect
        self._fallback_url = fallback_url
        self._registered_once = False
        self._security = security
        self._boot_request = boot_request
        self._settings = settings
        self._timers = timers
        self._caller = caller
        self._spawn = spawn
        self._booted = booted
        self._serve = serve
        self.state = LinkState.STOPPED
        #: A BootNotification of this run was Accepted: later connections are reconnects,
        #: not boots, and send none (1.6 §4.2: "each time it boots or reboots"; 2.0.1 B01).
        self._booted_once = False
        if security is not None:
            security.on_upgrade(self._relink)

    def set_state(self, state: LinkState) -> None:
        if state is not self.state:
            log.info("CSMS link %s: %s -> %s", self.url, self.state, state)
            self.state = state

    async def run(self) -> None:
        """Connect, talk, back off, connect again; until cancelled."""
        backoff = _TimedBackoff(self)
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

    async def heartbeat(self, cp: CP) -> None:
        """Heartbeat every heartbeat interval while registered on ``cp``; until cancelled."""
        key = self._dialect.heartbeat_key
        timer = Retimer(lambda: self._timers.interval(key))
        with self._timers.following(key, timer):
            while True:
                await timer.wait()
                try:
                    await call_checked(cp, self._dialect.heartbeat())
                except CALL_FAILURES as exc:
                    log.warning("Heartbeat failed: %s", describe(exc))

    def _fall_back(self, failures: int) -> None:
        """After the dialect's attempts failed without ever registering, leave the network
        profile's URL for the ``[ocpp]`` one, for the rest of this run."""
        attempts_key = self._dialect.attempts_key
        if self._fallback_url is None or self._registered_once or attempts_key is None:
            return
        if failures < self._settings.get_int(attempts_key):
            return
        log.warning(
            "CSMS link: network profile URL %s unreachable after %d tries; using %s",
            self.url,
            failures,
            self._fallback_url,
        )
        self.url, self._fallback_url = self._fallback_url, None

    async def _connect_once(self, backoff: _TimedBackoff) -> None:
        timing, subprotocol = self.timing, self._dialect.subprotocol
        if self._security is not None:
            ws = await self._security.open(self.url, timing, subprotocol)
        else:
            ws = await open_link(self.url, timing, subprotocol=subprotocol)
        try:
            await self._session(ws, backoff)
        finally:
            await ws.close()  # 1000 normal closure, also on shutdown; at once when already down

    def _relink(self) -> None:
        """The security profile was raised or the password changed: close the link so the
        next connection uses it (a reconnect, not a boot: no BootNotification)."""
        cp = self._caller.cp
        if cp is not None:
            self._spawn(self._close_after_answer(cp), f"{self._dialect.name}-relink")

    async def _close_after_answer(self, cp: CP) -> None:
        await asyncio.sleep(RELINK_DELAY_S)  # the answer that changed the settings goes first
        if self._caller.cp is cp:
            log.info("closing the CSMS link to reconnect with the new security settings")
            await cp._connection.close()

    async def _session(self, ws: ClientConnection, backoff: _TimedBackoff) -> None:
        name, ping_key = self._dialect.name, self._dialect.ping_key
        cp = self._dialect.session(ws, self.timing.response_timeout_s)
        closed = asyncio.Event()
        self._caller.attach(cp, closed)
        self.set_state(LinkState.BOOTING)
        pings = Retimer(lambda: self._timers.interval(ping_key))
        try:
            with self._timers.following(ping_key, pings):
                async with asyncio.TaskGroup() as group:
                    group.create_task(cp.start(), name=f"{name}-receive")
                    group.create_task(
                        keepalive(ws, pings, lambda: self._timers.interval(ping_key) or 1.0),
                        name=f"{name}-ping",
                    )
                    group.create_task(self._converse(cp, backoff), name=f"{name}-converse")
        finally:
            closed.set()
            self._caller.detach()

    async def _converse(self, cp: CP, backoff: _TimedBackoff) -> None:
        if self._booted_once:
            # A reconnect (network loss, CSMS restart, a new security profile or password):
            # the charge point did not boot, so no BootNotification, and a heartbeat interval
            # the CSMS set since the boot stays.
            log.info("reconnected; registered since this run's boot: no BootNotification")
        else:
            await self._boot(cp)
            self._booted_once = True
            self._booted()
        backoff.reset()
        self._registered_once = True
        cp.registered = True
        self._caller.registered = True
        self.set_state(LinkState.REGISTERED)
        await self._serve(cp)

    async def _boot(self, cp: CP) -> None:
        """BootNotification until Accepted (1.6 §4.2, 2.0.1 B02/B03: Pending and Rejected
        retry after the interval; nothing else is sent meanwhile)."""
        while True:
            timing = self.timing
            try:
                conf = await call_checked(cp, self._boot_request)
            except CALL_FAILURES as exc:
                delay = timing.boot_retry_s
                log.warning("BootNotification failed (%s); again in %.1f s", describe(exc), delay)
            else:
                if conf.status == "Accepted":
                    log.info("BootNotification accepted; heartbeat every %s s", conf.interval)
                    if conf.interval > 0:
                        await self._set(self._dialect.heartbeat_key, str(conf.interval))
                    return
                self.set_state(
                    LinkState.PENDING if conf.status == "Pending" else LinkState.REJECTED
                )
                delay = (
                    conf.interval * timing.interval_scale
                    if conf.interval > 0
                    else timing.boot_retry_s
                )
                log.info("BootNotification %s; again in %.1f s", conf.status, delay)
            await asyncio.sleep(delay)

    async def _set(self, key: str, value: str) -> None:
        if self._settings.get(key) == value:
            return
        status = await self._settings.change(key, value)
        if status not in ("Accepted", "RebootRequired"):
            log.warning("could not set %s to %s: %s", key, value, status)


class _TimedBackoff:
    """The loop's backoff, following its :attr:`LinkLoop.timing`: a new timing starts a new
    backoff from its own initial delay."""

    def __init__(self, loop: LinkLoop[Any]) -> None:
        self._loop = loop
        self._timing = loop.timing
        self._backoff = self._new(self._timing)

    @staticmethod
    def _new(timing: LinkTiming) -> Backoff:
        return Backoff(timing.backoff_initial_s, timing.backoff_max_s, timing.backoff_jitter)

    def next_delay(self) -> float:
        if self._loop.timing is not self._timing:
            self._timing = self._loop.timing
            self._backoff = self._new(self._timing)
        return self._backoff.next_delay()

    def reset(self) -> None:
        self._backoff.reset()
