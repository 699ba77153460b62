"""RDM6300 125 kHz (EM4100) reader on a UART: 9600 8N1, transmit only (hardware reference 4.1).

Wire format, one 14-byte frame per read::

    0x02 | 10 ASCII hex (5 data bytes) | 2 ASCII hex checksum | 0x03
    STX    version/customer byte + 32-bit tag   XOR of the 5 bytes  ETX

UID choice: all 5 data bytes (the version byte and the 32-bit tag) as 10 uppercase hex
characters, byte 0 first, e.g. ``0A00C3D2E1``. That is what ``picharge sim tap`` sends for an
RDM6300 (5 bytes) and it keeps the version byte, which tells card batches apart. Numbers
printed on fobs (the 32-bit tag in decimal) are not used.

The reader repeats the frame every ~100 ms while a card is in the field; repeats of one UID
are collapsed into one presentation until no frame arrived for ``repeat_gap_s`` or another
UID is read.

Blocking reads: each read runs in ``asyncio.to_thread`` with a 0.1 s serial timeout. Chosen
over ``loop.add_reader`` because it works for every pyserial port (device paths and
``socket://``/``rfc2217://`` URLs alike), the read timeout doubles as the line-silence
detector that ends a truncated frame, and the PN532 driver uses the same bridge. Cancelling
``run`` waits for the in-flight read (at most one read timeout) before closing the port.

The RDM6300 never answers, so a disconnected reader is indistinguishable from no card; only
port errors (adapter unplugged, ``OSError``) are detected and reported as READER_FAILURE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import serial

from drivers.base import DriverEvent, EventSink
from drivers.errors import FaultKind
from drivers.rfid_common import (
    EVENT_DEVICE,
    Backoff,
    SectionReader,
    read_backoff,
    run_blocking,
    serial_errors,
)
from drivers.seams import HardwareSeams

STX: Final = 0x02
ETX: Final = 0x03
FRAME_LEN: Final = 14
DATA_BYTES: Final = 5
_HEX_DIGITS: Final = frozenset(b"0123456789ABCDEFabcdef")
_READ_TIMEOUT_S: Final = 0.1

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CardFrame:
    """A valid frame: ``uid`` is the 5 data bytes as 10 uppercase hex characters."""

    uid: str


@dataclass(frozen=True, slots=True)
class BadFrame:
    """Bytes that were not a valid frame, and why; the parser has already skipped them."""

    detail: str


class FrameError(ValueError):
    """A 14-byte STX..ETX window whose contents are not a valid frame."""


def decode_frame(frame: bytes) -> str:
    """Check one complete frame and return its UID (10 uppercase hex characters).

    Raises :class:`FrameError` naming the first problem found.
    """
    if len(frame) != FRAME_LEN or frame[0] != STX or frame[-1] != ETX:
        raise FrameError(f"not an STX..ETX frame of {FRAME_LEN} bytes: {frame.hex(' ')}")
    body = frame[1:-1]
    if not all(b in _HEX_DIGITS for b in body):
        raise FrameError(f"non-hex characters in frame: {body!r}")
    data = bytes.fromhex(body[: 2 * DATA_BYTES].decode("ascii"))
    checksum = int(body[2 * DATA_BYTES :], 16)
    expected = 0
    for byte in data:
        expected ^= byte
    if checksum != expected:
        raise FrameError(
            f"bad checksum 0x{checksum:02X} (XOR of data is 0x{expected:02X}) for {data.hex()}"
        )
    return data.hex().upper()


class Rdm6300FrameParser:
    """Incremental parser that resynchronises on STX; feed it whatever the UART delivered.

    Each problem is reported once: the bytes of a rejected frame and a run of garbage up to
    the next STX produce one :class:`BadFrame`, not one per byte. Not thread-safe; one owner.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # inside bytes already reported, until the next STX

    def feed(self, data: bytes) -> list[CardFrame | BadFrame]:
        """Add received bytes; return the frames and problems they completed, in order."""
        self._buf += data
        out: list[CardFrame | BadFrame] = []
        while self._buf:
            if self._buf[0] != STX:
                self._skip_to_stx(out)
                continue
            self._skipping = False
            restart = self._buf.find(STX, 1, FRAME_LEN)
            if restart > 0:
                out.append(BadFrame(f"truncated frame: new STX after {restart} bytes"))
                del self._buf[:restart]
                continue
            if len(self._buf) < FRAME_LEN:
                break
            if self._buf[FRAME_LEN - 1] != ETX:
                out.append(BadFrame(f"missing ETX: {bytes(self._buf[:FRAME_LEN]).hex(' ')}"))
                del self._buf[:1]
                self._skipping = True
                continue
            frame = bytes(self._buf[:FRAME_LEN])
            del self._buf[:FRAME_LEN]
            try:
                out.append(CardFrame(decode_frame(frame)))
            except FrameError as exc:
                out.append(BadFrame(str(exc)))
        return out

    def expire(self) -> BadFrame | None:
        """The line went quiet: a partial frame still buffered will never complete."""
        self._skipping = False
        if not self._buf:
            return None
        partial = bytes(self._buf)
        self._buf.clear()
        return BadFrame(f"truncated frame: {len(partial)} bytes then silence: {partial.hex(' ')}")

    def _skip_to_stx(self, out: list[CardFrame | BadFrame]) -> None:
        stx = self._buf.find(STX)
        count = len(self._buf) if stx < 0 else stx
        if not self._skipping:
            shown = bytes(self._buf[: min(count, 16)]).hex(" ")
            out.append(BadFrame(f"garbage outside a frame: {shown}{' ...' if count > 16 else ''}"))
        del self._buf[:count]
        self._skipping = stx < 0


class RepeatCollapser:
    """Turns the reader's repeated frames into presentations (time in seconds, monotonic)."""

    def __init__(self, repeat_gap_s: float) -> None:
        self._repeat_gap_s = repeat_gap_s
        self._last_uid: str | None = None
        self._last_at = 0.0

    def is_new_presentation(self, uid: str, now: float) -> bool:
        new = uid != self._last_uid or now - self._last_at >= self._repeat_gap_s
        self._last_uid = uid
        self._last_at = now
        return new


class Rdm6300Reader:
    """:class:`drivers.base.CardReader` for an RDM6300 on ``port`` (a device path or URL).

    ``run`` owns the port: it opens it, reads until cancelled, reopens it with exponential
    backoff (``retry_backoff_s`` doubling up to ``retry_backoff_max_s``) after a port error,
    and closes it on the way out. Callbacks run on the loop thread.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        repeat_gap_s: float = 1.0,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._port = port
        self._baudrate = baudrate
        self._repeat_gap_s = repeat_gap_s
        self._retry_backoff_s = retry_backoff_s
        self._retry_backoff_max_s = retry_backoff_max_s
        self._clock = clock
        self._serial: Any = None  # serial.SerialBase while open
        self._running = False

    @property
    def port(self) -> str:
        return self._port

    @property
    def baudrate(self) -> int:
        return self._baudrate

    @property
    def repeat_gap_s(self) -> float:
        return self._repeat_gap_s

    async def run(self, on_card: Callable[[str], None], on_event: EventSink) -> None:
        """Read until cancelled; ``on_card`` gets each presentation's UID once."""
        if self._running:
            raise RuntimeError("Rdm6300Reader.run is already running")
        self._running = True
        backoff = Backoff(self._retry_backoff_s, self._retry_backoff_max_s)
        collapser = RepeatCollapser(self._repeat_gap_s)
        failed = False
        try:
            while True:
                try:
                    await run_blocking(self._open)
                    if failed:
                        failed = False
                        backoff.reset()
                        on_event(DriverEvent(EVENT_DEVICE, "recovered", f"{self._port} reopened"))
                    await self._read_until_error(collapser, on_card, on_event)
                except OSError as exc:  # serial.SerialException is an OSError
                    self._close_port()
                    if not failed:
                        failed = True
                        on_event(
                            DriverEvent(
                                EVENT_DEVICE,
                                "reader_failure",
                                f"RDM6300 port {self._port}: {exc}",
                                FaultKind.READER_FAILURE,
                            )
                        )
                    delay = backoff.next_delay_s()
                    _log.info("RDM6300 port %s: %s; retrying in %.1f s", self._port, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            self._close_port()
            self._running = False

    def close(self) -> None:
        """Close the port if open; idempotent. ``run`` closes it too when cancelled."""
        self._close_port()

    async def _read_until_error(
        self, collapser: RepeatCollapser, on_card: Callable[[str], None], on_event: EventSink
    ) -> None:
        parser = Rdm6300FrameParser()
        while True:
            data = await run_blocking(self._read_chunk)
            now = self._clock()
            if not data:
                expired = parser.expire()
                if expired is not None:
                    on_event(DriverEvent(EVENT_DEVICE, "bad_frame", expired.detail))
                continue
            for item in parser.feed(data):
                if isinstance(item, BadFrame):
                    on_event(DriverEvent(EVENT_DEVICE, "bad_frame", item.detail))
                elif collapser.is_new_presentation(item.uid, now):
                    on_card(item.uid)

    def _open(self) -> None:
        """Worker thread: open the port (9600 8N1, 0.1 s read timeout)."""
        if self._serial is not None:
            return
        with serial_errors():
            self._serial = serial.serial_for_url(
                self._port,
                baudrate=self._baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=_READ_TIMEOUT_S,
            )

    def _read_chunk(self) -> bytes:
        """Worker thread: wait up to one read timeout for bytes, then take all that arrived."""
        port = self._serial
        if port is None:
            raise OSError("port closed")
        with serial_errors():
            data: bytes = port.read(1)
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
        return data

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except OSError as exc:  # the device may already be gone; nothing left to release
                _log.warning("closing RDM6300 port %s: %s", self._port, exc)


CONFIG_KEYS: Final = (
    "type",
    "serial_port",
    "baudrate",
    "repeat_gap_s",
    "retry_backoff_s",
    "retry_backoff_max_s",
)


def from_config(
    section: Mapping[str, Any], seams: HardwareSeams, *, key_prefix: str = "rfid"
) -> Rdm6300Reader:
    """Build a reader from the ``[rfid]`` table (``type = "rdm6300"``).

    Keys and defaults: ``serial_port = "/dev/serial0"``, ``baudrate = 9600``,
    ``repeat_gap_s = 1.0``, ``retry_backoff_s = 0.5``, ``retry_backoff_max_s = 10.0``.
    ``seams`` is unused (the port path is configuration) but kept for the registry's uniform
    signature. Raises :class:`drivers.errors.ConfigurationError` naming the key.
    """
    del seams
    cfg = SectionReader(section, key_prefix)
    cfg.choice("type", ("rdm6300",), default="rdm6300")
    cfg.reject_unknown(CONFIG_KEYS, 'type "rdm6300"')
    backoff_s, backoff_max_s = read_backoff(cfg)
    return Rdm6300Reader(
        cfg.string("serial_port", "/dev/serial0"),
        baudrate=cfg.integer("baudrate", 9600, minimum=300, maximum=4_000_000),
        repeat_gap_s=cfg.number("repeat_gap_s", 1.0, above=0.0, maximum=60.0),
        retry_backoff_s=backoff_s,
        retry_backoff_max_s=backoff_max_s,
    )
