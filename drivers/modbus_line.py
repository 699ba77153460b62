"""One Modbus line (an RS-485 port or a TCP connection) and the meters that share it.

On RS-485 every meter of a bus hangs on the same two wires behind one adapter: the charger's
own meter and, with its own unit id, the grid meter at the house connection. A serial port
can be opened once, and two masters talking over each other garble both requests, so every
meter on a port must go through one owner: :class:`ModbusLine` holds the single pymodbus
client of its port and lets one request at a time onto the wire.

Requests are serialized one by one (not a whole meter read at a time), in arrival order
(``asyncio.Lock`` wakes its waiters first come, first served): a meter waiting for the line
waits for at most the one request in flight, so a slow or silent unit costs another unit no
more than one reply timeout, and its retries and backoff pauses never hold the line.

:class:`ModbusLines` is the registry of one process's lines, keyed by the port's real device
(``/dev/serial/by-id/...`` and ``/dev/ttyUSB0`` are the same line). It is created with the
hardware seams and used by every meter driver built from them. Two meters on one port must
agree on the line's settings (baud rate, parity, stop bits, data bits and the reply timeout)
and differ in unit id: anything else is refused at start with a ConfigurationError naming
the key. A TCP meter gets a line of its own (one connection per meter).

Threading: the registry is used while building drivers (any thread, before the loop runs
them); lines and clients belong to the asyncio loop.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import termios
from dataclasses import dataclass, field

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient, ModbusBaseClient

from drivers.errors import ConfigurationError

CLIENT_NAME = "meter"


@dataclass(frozen=True, slots=True)
class LineSettings:
    """What every user of one line must agree on. Times in seconds.

    ``transport`` is ``"rtu"`` (``port`` is the serial device) or ``"tcp"`` (``host`` and
    ``tcp_port``).
    """

    transport: str
    port: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout_s: float = 1.0
    host: str = ""
    tcp_port: int = 502

    @property
    def where(self) -> str:
        """The link, for messages: ``tcp 10.0.0.5:502`` or ``rtu /dev/ttyUSB0 9600 8N1``."""
        if self.transport == "tcp":
            return f"tcp {self.host}:{self.tcp_port}"
        return f"rtu {self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


#: The settings two meters on one RS-485 port must share, with the key each comes from.
SHARED_KEYS: tuple[tuple[str, str], ...] = (
    ("baudrate", "baudrate"),
    ("parity", "parity"),
    ("stopbits", "stopbits"),
    ("bytesize", "bytesize"),
    ("timeout_s", "timeout_s"),
)


class LineUnavailable(Exception):
    """The line could not be opened or connected; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class ModbusLine:
    """The one client of a port (or TCP connection), and its turn-taking.

    The client is created on first use (it needs the running loop) and closed when the
    last meter that used it closes; a later request opens it again.
    """

    settings: LineSettings
    #: Unit ids of the meters registered on this line (a bus has each id once).
    unit_ids: set[int] = field(default_factory=set)
    #: ``time.monotonic()`` when the last request on the line ended (the quiet gap counts
    #: from any unit's request, not just the same meter's).
    last_request_end: float = -math.inf
    #: True once bytes of a reply arrived for the request in flight (to name CRC errors).
    reply_bytes_seen: bool = False
    requests: int = 0
    _client: ModbusBaseClient | None = None
    _users: set[object] = field(default_factory=set)
    _turn: asyncio.Lock | None = None

    @property
    def shared(self) -> bool:
        """True when more than one meter is registered on this line."""
        return len(self.unit_ids) > 1

    def turn(self) -> asyncio.Lock:
        """The lock a request holds while it is on the wire (loop thread)."""
        if self._turn is None:
            self._turn = asyncio.Lock()
        return self._turn

    async def client(self, user: object) -> ModbusBaseClient:
        """The connected client for ``user`` (a meter); raises LineUnavailable.

        Call with :meth:`turn` held: connecting a serial port is a short synchronous open.
        """
        self._users.add(user)
        if self._client is None:
            self._client = self._make_client()
        if self._client.connected:
            return self._client
        refused = ""
        try:
            connected = await self._client.connect()
        except (OSError, ValueError, termios.error) as exc:
            # pymodbus turns a missing port into False, but a port that refuses a setting
            # (termios.error, e.g. parity on a pty or a USB adapter without 2 stop bits)
            # escapes from pyserial, and its traceback sits in a reference cycle (through
            # asyncio.wait_for's task) with pyserial's half-opened port. Keep only the words
            # and collect the cycle, so the port's fd and exclusive lock are released before
            # the next attempt. This runs only on that misconfiguration.
            refused = str(exc)
            connected = False
        if refused:
            gc.collect()
            raise LineUnavailable(f"cannot open the port ({self.settings.where}): {refused}")
        if not connected:
            raise LineUnavailable(f"cannot connect ({self.settings.where})")
        return self._client

    def drop_connection(self) -> None:
        """After a lost reply on TCP start the next request on a fresh connection.

        A late reply can then never be taken for the next request's, and a half-open
        connection (cable pulled, gateway rebooted) is replaced at once. A serial port stays
        open: there is nothing to reconnect, and other units on the bus still answer.
        """
        if self.settings.transport == "tcp" and self._client is not None:
            self._client.close()

    def release(self, user: object) -> None:
        """``user`` is done; the client closes when nobody uses it. Idempotent."""
        self._users.discard(user)
        if not self._users and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _make_client(self) -> ModbusBaseClient:
        s = self.settings
        # retries=0 and reconnect_delay=0: the meter driver owns retrying and reconnecting,
        # so no pymodbus background task outlives a read and every failure reaches the log.
        if s.transport == "tcp":
            return AsyncModbusTcpClient(
                s.host,
                port=s.tcp_port,
                name=CLIENT_NAME,
                timeout=s.timeout_s,
                retries=0,
                reconnect_delay=0,
                trace_packet=self._trace_packet,
            )
        return AsyncModbusSerialClient(
            s.port,
            name=CLIENT_NAME,
            baudrate=s.baudrate,
            bytesize=s.bytesize,
            parity=s.parity,
            stopbits=s.stopbits,
            timeout=s.timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hook (loop thread): remember that reply bytes arrived."""
        if not sending and data:
            self.reply_bytes_seen = True
        return data


class ModbusLines:
    """Every Modbus line of one process: one :class:`ModbusLine` per serial device."""

    def __init__(self) -> None:
        self._serial: dict[str, ModbusLine] = {}

    def claim(self, settings: LineSettings, unit_id: int, key_prefix: str = "meter") -> ModbusLine:
        """The line a meter with ``unit_id`` uses; ConfigurationError names the key.

        A serial port already claimed is shared when the settings agree and the unit id is
        free on it; a TCP meter always gets a line of its own.
        """
        if settings.transport != "rtu":
            return ModbusLine(settings, {unit_id})
        device = os.path.realpath(settings.port)
        line = self._serial.get(device)
        if line is None:
            line = self._serial[device] = ModbusLine(settings, {unit_id})
            return line
        for attribute, key in SHARED_KEYS:
            theirs, ours = getattr(line.settings, attribute), getattr(settings, attribute)
            if theirs != ours:
                raise ConfigurationError(
                    f"{key_prefix}.{key}",
                    f"is {ours!r}, but another meter on the same RS-485 port {settings.port} "
                    f"uses {theirs!r}: every meter on one bus needs the same {key}",
                )
        if unit_id in line.unit_ids:
            raise ConfigurationError(
                f"{key_prefix}.unit_id",
                f"{unit_id} is already used by another meter on the RS-485 port "
                f"{settings.port}: each meter on one bus needs its own unit id",
            )
        line.unit_ids.add(unit_id)
        return line

    def lines(self) -> list[ModbusLine]:
        """The serial lines claimed so far (for status and tests)."""
        return list(self._serial.values())
