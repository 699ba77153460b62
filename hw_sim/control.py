"""The control endpoint of a running simulation: `picharge sim` talks to this.

One JSON object per line over TCP. A request is ``{"action": "plug", "connector": 1, ...}``;
the answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. A line protocol
keeps the client trivial (``nc`` works too) and lets tests and CI pipelines drive a charger
from any language.

Every request line gets exactly one answer line, and the connection stays open: a line that
is not UTF-8 JSON, a request the simulation cannot carry out (a connector that is a list, a
number that overflows) and a line longer than :data:`MAX_LINE_BYTES` (skipped to its end)
each get ``ok: false`` with the reason. Whoever reaches this endpoint can plug cars in, tap
cards and inject faults, so it listens on loopback only unless the caller explicitly allows
another address (``picharge run --sim-control-allow-remote``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE_BYTES = 64 * 1024


class RemoteControlRefused(ValueError):
    """The control endpoint was asked to listen beyond loopback without being allowed to."""


class _LineTooLong(Exception):
    """A request line over :data:`MAX_LINE_BYTES`; it has been read and discarded."""


async def loopback_only(host: str) -> None:
    """Raise :class:`RemoteControlRefused` unless every address ``host`` names is loopback."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RemoteControlRefused(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # an IPv6 zone id is not part of it
        if not ipaddress.ip_address(address).is_loopback:
            raise RemoteControlRefused(
                f"{host} ({address}) is not a loopback address: anyone who reaches it could "
                "plug cars in, tap cards and inject faults; allow it explicitly with "
                "--sim-control-allow-remote"
            )


class ControlServer:
    """Serves one handler on HOST:PORT; each request line gets one answer line."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, allow_remote: bool = False) -> tuple[str, int]:
        """Listen; a host beyond loopback raises :class:`RemoteControlRefused` unless
        ``allow_remote``."""
        if not allow_remote:
            await loopback_only(host)
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
            while True:
                try:
                    line = await _read_line(reader)
                except _LineTooLong:
                    answer = {"ok": False, "error": f"request longer than {MAX_LINE_BYTES} bytes"}
                else:
                    if line is None:
                        break
                    answer = await self._answer(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except ConnectionError as exc:
            log.warning("sim control connection dropped: %s", exc)
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:  # not UTF-8 (UnicodeDecodeError) or not JSON
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            return {"ok": False, "error": 'expected an object with a string "action"'}
        try:
            return {"ok": True, **await self._handler(request)}
        except (ValueError, LookupError, TypeError, ArithmeticError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:  # the simulation's bug: logged in full, the client hears it
            log.exception("sim control request %.200r failed", request)
            return {"ok": False, "error": f"the simulation failed: {type(exc).__name__}: {exc}"}


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next request line (a last one without newline included); None at the end.

    Raises :class:`_LineTooLong` once a line over the limit has been read to its end, so
    the next request starts on a line of its own.
    """
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial or None
    except asyncio.LimitOverrunError as exc:
        await reader.readexactly(exc.consumed)  # left in the buffer by readuntil
    while True:  # discard the rest of the long line
        try:
            await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            break
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
            continue
        break
    raise _LineTooLong
