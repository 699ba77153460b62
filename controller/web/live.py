"""The live stream: every event of the core's broadcast, with the status after it, to each
open WebSocket (``GET /api/v1/live``).

One listener of :mod:`controller.events` (its own bounded queue, drained by its own task)
serializes each event once and offers the text to every client's queue. Each client has a
sender task of its own and a queue of :data:`CLIENT_QUEUE` messages: a phone on a bad
line, or a client that stopped reading, fills only its queue, and is then disconnected
(it reconnects and starts from a fresh status). Nothing here can hold the loop or the
supervisor. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from aiohttp import web

from controller.events import SupervisorEvent

log = logging.getLogger(__name__)

CLIENT_QUEUE = 32
#: A send that takes longer than this means the client is gone or stuck.
SEND_TIMEOUT_S = 10.0
MAX_CLIENTS = 16


def _plain(value: Any) -> Any:
    """An event's fields as JSON values (enums as text, times ISO 8601, sets as lists)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def event_json(event: SupervisorEvent) -> dict[str, Any]:
    """``{"event": name, "data": fields}``; a transaction's meter samples are left out."""
    data = _plain(event)
    if isinstance(data, dict):
        for key in ("transaction",):
            if isinstance(data.get(key), dict):
                data[key].pop("samples", None)
        limits = data.get("limits")
        if isinstance(limits, dict) and "_by_source" in limits:
            data["limits"] = {source: a for source, a in limits["_by_source"]}
    return {"event": type(event).__name__, "data": data}


class _Client:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.queue: asyncio.Queue[str] = asyncio.Queue(CLIENT_QUEUE)


class Hub:
    """The open live streams. :meth:`publish` is the broadcast listener."""

    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status
        self._clients: set[_Client] = set()
        self.dropped_clients = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def publish(self, event: SupervisorEvent) -> None:
        """Serialize ``event`` and the status once and offer them to every client."""
        if not self._clients:
            return
        text = json.dumps({**event_json(event), "status": self._status()})
        self._offer(text)

    def _offer(self, text: str) -> None:
        for client in list(self._clients):
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("live client stopped reading: disconnected")
                self.dropped_clients += 1
                self._drop(client)

    def _drop(self, client: _Client) -> None:
        self._clients.discard(client)
        transport = client.request.transport
        if transport is not None:
            transport.abort()  # a stuck peer never reads a close frame: cut the line

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        """Handle one ``GET /api/v1/live`` until the client leaves or is dropped."""
        if len(self._clients) >= MAX_CLIENTS:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "too many live clients"}),
                content_type="application/json",
            )
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws, request)
        client.queue.put_nowait(
            json.dumps({"event": "Hello", "data": {}, "status": self._status()})
        )
        self._clients.add(client)
        sender = asyncio.create_task(self._send(client), name="web-live-sender")
        try:
            async for _ in ws:  # the client says nothing we need; this notices it leaving
                pass
        finally:
            self._clients.discard(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    async def _send(self, client: _Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await client.ws.send_str(text)
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.info("live client gone: %s", exc or type(exc).__name__)
            self._drop(client)

    async def close(self) -> None:
        for client in list(self._clients):
            self._clients.discard(client)
            with contextlib.suppress(Exception):
                await client.ws.close()
