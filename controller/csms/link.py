"""The websocket link to the CSMS: URL, subprotocol, timing, backoff and keepalive pings.

OCPP-J runs over one websocket with the version's subprotocol (``ocpp1.6``,
``ocpp2.0.1``). The link may drop at any time (mobile networks, CSMS restarts); the
adapter reconnects forever with a capped, jittered exponential backoff, so that a fleet
of chargers does not reconnect in lockstep after a CSMS outage. A half-open TCP
connection is noticed by websocket pings every WebSocketPingInterval seconds (0 = off): no
pong within the interval and the link is dropped and reopened.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from controller.csms.timers import Retimer

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
#: Frames websockets may hold received but not yet read by us; beyond it, it stops reading
#: the socket and TCP flow control pushes back on the CSMS. Bounded, so that a CSMS sending
#: faster than the charger reads (controller.ocppj.throttle) costs it this many frames of
#: memory (at most ``max_frame_bytes`` each), not a growing buffer. websockets' default,
#: set here so the bound is ours and stays.
RECEIVE_QUEUE_FRAMES = 16


class LinkState(StrEnum):
    """Where the link to the CSMS stands; every change is logged."""

    STOPPED = "stopped"  # run() is not running
    CONNECTING = "connecting"  # opening the websocket
    BOOTING = "booting"  # websocket open, BootNotification sent, no answer yet
    PENDING = "pending"  # the CSMS answered Pending: Boot again after its interval
    REJECTED = "rejected"  # the CSMS answered Rejected: silent until the retry
    REGISTERED = "registered"  # Boot accepted: the CSMS hears everything
    BACKOFF = "backoff"  # the link is down; waiting before the next attempt


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """The link's timing; tests shrink it, production keeps the defaults.

    ``interval_scale`` converts the integer OCPP intervals (HeartbeatInterval,
    MeterValueSampleInterval, ClockAlignedDataInterval, WebSocketPingInterval,
    TransactionMessageRetryInterval, the Boot retry interval) into seconds: 1.0 on a charger.
    ``boot_retry_s`` is used when the CSMS gives a 0 interval or does not answer Boot.
    ``max_frame_bytes`` bounds an incoming frame (websockets closes the link with 1009 and
    we reconnect) so a broken CSMS cannot exhaust the Pi's memory. It must hold the largest
    message the charger advertises it takes: a SendLocalList of SendLocalListMaxLength (500)
    entries with expiry and parent is 78 kB written compactly, 83 kB with the usual spaces
    and 118 kB indented; 256 KiB holds all of them with room to spare and is still nothing to
    a Pi (tests/test_ocpp16_frame_limits.py sends the largest of each kind).
    """

    response_timeout_s: float = 30.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.2
    open_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    boot_retry_s: float = 60.0
    interval_scale: float = 1.0
    max_frame_bytes: int = 256 * 1024


class LinkRefused(Exception):
    """The CSMS completed the handshake without agreeing to the version's subprotocol."""


class LinkDead(Exception):
    """A keepalive ping got no pong in time."""


def endpoint_url(base_url: str, chargepoint_id: str) -> str:
    """The CSMS URL with the charge point id as its last path segment (percent-encoded)."""
    return f"{base_url.rstrip('/')}/{quote(chargepoint_id, safe='')}"


async def open_link(
    url: str,
    timing: LinkTiming,
    *,
    headers: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    subprotocol: str = SUBPROTOCOL,
) -> ClientConnection:
    """Open the websocket; raises OSError, websockets' InvalidHandshake/InvalidURI,
    TimeoutError or :class:`LinkRefused`. Pings are ours (:func:`keepalive`), not websockets'.

    ``headers`` go with the handshake (the security profiles' ``Authorization``);
    ``ssl_context`` is used for a ``wss://`` URL (None: websockets' default, the system CAs).
    ``subprotocol`` is the OCPP version's (default 1.6's); the CSMS must agree to it.
    """
    tls: dict[str, Any] = {}
    if ssl_context is not None and url.startswith("wss://"):
        tls["ssl"] = ssl_context  # websockets refuses ssl=None for wss and any ssl for ws
    ws = await connect(
        url,
        subprotocols=[Subprotocol(subprotocol)],
        ping_interval=None,
        open_timeout=timing.open_timeout_s,
        close_timeout=timing.close_timeout_s,
        max_size=timing.max_frame_bytes,
        max_queue=RECEIVE_QUEUE_FRAMES,
        additional_headers=dict(headers) if headers else None,
        **tls,
    )
    if ws.subprotocol != subprotocol:
        await ws.close()
        raise LinkRefused(f"the CSMS did not agree to {subprotocol} (got {ws.subprotocol!r})")
    return ws


async def keepalive(ws: ClientConnection, timer: Retimer, timeout_s: Callable[[], float]) -> None:
    """Ping every interval of ``timer``; raise :class:`LinkDead` (after aborting the TCP
    connection) when a pong does not come within ``timeout_s()``. Runs until cancelled."""
    while True:
        await timer.wait()
        pong = await ws.ping()
        timeout = timeout_s()
        try:
            async with asyncio.timeout(timeout):
                await pong
        except TimeoutError:
            ws.transport.abort()
            raise LinkDead(f"no pong within {timeout:.1f} s") from None
