"""The control endpoint of a running simulation: `picharge sim ACTION` talks to this.

One JSON object per line over TCP on loopback. A request is ``{"action": "plug",
"connector": 1, ...}``; the answer is ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``. A line protocol keeps the client trivial (``nc`` works too) and lets tests and CI
pipelines drive a charger from any language.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE_BYTES = 64 * 1024


class ControlServer:
    """Serves one handler on HOST:PORT; each request line gets one answer line."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_LINE_BYTES, reuse_address=True
        )
        sock = self._server.sockets[0].getsockname()
        return str(sock[0]), int(sock[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("sim control connection dropped: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            return {"ok": False, "error": 'expected an object with a string "action"'}
        try:
            return {"ok": True, **await self._handler(request)}
        except (ValueError, KeyError, LookupError) as exc:
            return {"ok": False, "error": str(exc)}
