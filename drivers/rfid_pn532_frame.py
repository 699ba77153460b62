"""PN532 host-link frames (hardware reference 4.2), shared by the driver and the simulated chip.

Normal information frame::

    00 | 00 FF | LEN | LCS | TFI | CMD params... | DCS | 00
    preamble  start  LEN counts TFI + CMD + params   postamble

``(LEN + LCS) & 0xFF == 0`` and ``(TFI + CMD + params + DCS) & 0xFF == 0``. TFI is 0xD4 from
host to chip and 0xD5 back; a response's command code is the request's plus one. ACK is
``00 00 FF 00 FF 00``; NACK ``00 00 FF FF 00 00``; the chip's error frame is an information
frame whose only byte is 0x7F. Extended frames (LEN = FF FF) are never needed for reading a
UID and are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from drivers.errors import TransientError

TFI_HOST_TO_PN532: Final = 0xD4
TFI_PN532_TO_HOST: Final = 0xD5
TFI_ERROR: Final = 0x7F
START_CODE: Final = b"\x00\xff"
ACK_FRAME: Final = bytes.fromhex("0000ff00ff00")
NACK_FRAME: Final = bytes.fromhex("0000ffff0000")
ERROR_FRAME: Final = bytes.fromhex("0000ff01ff7f8100")
MAX_DATA_LEN: Final = 254  # LEN counts TFI too; LEN 0xFF announces an extended frame

CMD_GET_FIRMWARE_VERSION: Final = 0x02
CMD_SAM_CONFIGURATION: Final = 0x14
CMD_RF_CONFIGURATION: Final = 0x32
CMD_IN_LIST_PASSIVE_TARGET: Final = 0x4A


class Pn532FrameError(TransientError):
    """Bytes from the chip that are not a valid frame (checksum, length, unexpected frame)."""


class Pn532Timeout(TransientError):
    """The chip did not answer (ACK or response) before the deadline."""


class _NotAHeader(Exception):
    """A start code followed by a length that fails its checksum: noise, keep scanning."""


class FrameKind(StrEnum):
    ACK = "ack"
    NACK = "nack"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; for INFO frames ``tfi`` and ``data`` (command code + parameters)."""

    kind: FrameKind
    tfi: int = 0
    data: bytes = b""


def encode_frame(tfi: int, data: bytes) -> bytes:
    """A normal information frame carrying ``tfi`` followed by ``data`` (CMD + params)."""
    body = bytes([tfi]) + data
    if len(body) > MAX_DATA_LEN:
        raise ValueError(f"frame body of {len(body)} bytes needs an extended frame")
    length = len(body)
    return b"\x00" + START_CODE + bytes([length, -length & 0xFF, *body, -sum(body) & 0xFF, 0])


def encode_command(command: int, params: bytes = b"") -> bytes:
    """A host-to-chip command frame (TFI 0xD4)."""
    return encode_frame(TFI_HOST_TO_PN532, bytes([command]) + params)


def encode_response(command: int, params: bytes = b"") -> bytes:
    """A chip-to-host response to ``command`` (TFI 0xD5, code ``command + 1``)."""
    return encode_frame(TFI_PN532_TO_HOST, bytes([command + 1]) + params)


class FrameParser:
    """Incremental frame finder. Not thread-safe; one owner.

    Anything before a start code (preamble, wake-up bytes, line noise) is skipped. A start
    code whose LEN/LCS do not match is taken for noise (a postamble followed by 0xFF looks
    like one) and skipped too, counted in :attr:`bad_headers` so a caller that then times
    out can say the line was garbled. A frame with a valid header but a wrong data checksum
    raises after being dropped, so the next call resumes behind it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad_headers = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, None if more bytes are needed; raises Pn532FrameError."""
        while True:
            try:
                return self._next_frame()
            except _NotAHeader:
                self.bad_headers += 1

    def _next_frame(self) -> Frame | None:
        start = self._buf.find(START_CODE)
        if start < 0:
            # Keep a trailing 0x00: it may be the first half of a start code.
            keep = 1 if self._buf.endswith(b"\x00") else 0
            del self._buf[: len(self._buf) - keep]
            return None
        del self._buf[:start]
        if len(self._buf) < 4:
            return None
        length, lcs = self._buf[2], self._buf[3]
        if (length, lcs) == (0x00, 0xFF):
            del self._buf[:4]
            return Frame(FrameKind.ACK)
        if (length, lcs) == (0xFF, 0x00):
            del self._buf[:4]
            return Frame(FrameKind.NACK)
        if (length, lcs) == (0xFF, 0xFF):
            del self._buf[:2]
            raise Pn532FrameError("extended frame (LEN FF FF) not supported")
        if length == 0 or (length + lcs) & 0xFF:
            del self._buf[:2]
            raise _NotAHeader
        end = 4 + length + 1  # through DCS; the postamble is not needed to decide
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[4 : 4 + length])
        dcs = self._buf[4 + length]
        del self._buf[:end]
        if (sum(body) + dcs) & 0xFF:
            raise Pn532FrameError(f"bad data checksum 0x{dcs:02X} for {body.hex(' ')}")
        return Frame(FrameKind.INFO, tfi=body[0], data=body[1:])


def response_params(frame: Frame, command: int) -> bytes:
    """Check that ``frame`` answers ``command`` and return its parameters (after the code)."""
    if frame.kind is not FrameKind.INFO:
        raise Pn532FrameError(f"expected the response to 0x{command:02X}, got {frame.kind}")
    if frame.tfi == TFI_ERROR:
        raise Pn532FrameError(f"chip answered 0x{command:02X} with an error frame")
    if frame.tfi != TFI_PN532_TO_HOST or not frame.data or frame.data[0] != command + 1:
        raise Pn532FrameError(
            f"expected D5 {command + 1:02X}, got {bytes([frame.tfi, *frame.data[:1]]).hex(' ')}"
        )
    return frame.data[1:]
