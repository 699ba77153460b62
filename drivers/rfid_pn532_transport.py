"""How command frames reach a PN532 and answers come back: HSU (UART) or I2C.

Both transports do the same exchange (hardware reference 4.2): send a command frame, wait
for the chip, read the 6-byte ACK, wait again, read the response frame. They differ in how
"wait for the chip" works: on HSU the bytes simply arrive; on I2C every read starts with a
status byte (0x01 = ready) and the host polls it.

Threading: every method blocks (bounded by ``timeout_s``); call them from a worker thread
(the reader's polling thread), never on the loop. One owner at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import serial
from smbus2 import i2c_msg

from drivers.base import SMBusLike
from drivers.rfid_common import serial_errors
from drivers.rfid_pn532_frame import (
    Frame,
    FrameKind,
    FrameParser,
    Pn532FrameError,
    Pn532Timeout,
    encode_command,
    response_params,
)

I2C_ADDRESS: Final = 0x24
I2C_STATUS_READY: Final = 0x01
#: HSU wake-up: 0x55 0x55 then zeros (hardware reference 4.2; Adafruit sends 15 zeros).
HSU_WAKEUP: Final = b"\x55\x55" + bytes(15)
#: Bytes read after the status byte for a response; the longest answer we need
#: (InListPassiveTarget with a 10-byte UID and an ATS) is well under this.
_I2C_RESPONSE_READ_LEN: Final = 64
_I2C_POLL_INTERVAL_S: Final = 0.005
_UART_READ_SLICE_S: Final = 0.02

_log = logging.getLogger(__name__)


class Pn532Transport(Protocol):
    """A link to one PN532; blocking, for one worker thread at a time."""

    @property
    def description(self) -> str:
        """Where the chip is, for event details: ``"uart /dev/serial0"``, ``"i2c-1 0x24"``."""
        ...

    def wake(self) -> None:
        """Open the link if needed and do the transport's wake-up."""
        ...

    def call(self, command: int, params: bytes, timeout_s: float) -> bytes:
        """Send ``command``, expect ACK then the response; return the response parameters.

        Raises Pn532Timeout, Pn532FrameError, or OSError (port or bus failure).
        """
        ...

    def drop_link(self) -> None:
        """After an I/O error: release what may be stale so the next ``wake`` reopens it."""
        ...

    def close(self) -> None:
        """Release the port or bus; idempotent."""
        ...


class Pn532UartTransport:
    """HSU: 115200 8N1 by default on ``port`` (a device path or a pyserial URL)."""

    def __init__(self, port: str, *, baudrate: int = 115200) -> None:
        self._port = port
        self._baudrate = baudrate
        self._serial: Any = None  # serial.SerialBase while open

    @property
    def description(self) -> str:
        return f"uart {self._port}"

    @property
    def port(self) -> str:
        return self._port

    @property
    def baudrate(self) -> int:
        return self._baudrate

    def wake(self) -> None:
        with serial_errors():
            if self._serial is None:
                self._serial = serial.serial_for_url(
                    self._port,
                    baudrate=self._baudrate,
                    bytesize=serial.EIGHTBITS,
                    parity=serial.PARITY_NONE,
                    stopbits=serial.STOPBITS_ONE,
                    timeout=_UART_READ_SLICE_S,
                )
            self._serial.write(HSU_WAKEUP)

    def call(self, command: int, params: bytes, timeout_s: float) -> bytes:
        port = self._require_open()
        deadline = time.monotonic() + timeout_s
        with serial_errors():
            port.reset_input_buffer()  # a late answer to an abandoned command must not match
            port.write(encode_command(command, params))
            parser = FrameParser()
            ack = self._read_frame(port, parser, deadline, f"ACK for 0x{command:02X}")
            if ack.kind is not FrameKind.ACK:
                raise Pn532FrameError(f"expected ACK for 0x{command:02X}, got {ack.kind}")
            frame = self._read_frame(port, parser, deadline, f"response to 0x{command:02X}")
        return response_params(frame, command)

    def drop_link(self) -> None:
        self.close()

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except OSError as exc:  # the adapter may be gone already; nothing left to release
                _log.warning("closing PN532 port %s: %s", self._port, exc)

    def _require_open(self) -> Any:
        if self._serial is None:
            raise OSError(f"PN532 port {self._port} is not open")
        return self._serial

    @staticmethod
    def _read_frame(port: Any, parser: FrameParser, deadline: float, what: str) -> Frame:
        while True:
            frame = parser.next_frame()
            if frame is not None:
                return frame
            if time.monotonic() >= deadline:
                if parser.bad_headers:
                    raise Pn532FrameError(f"no {what}: garbled frame header (bad LEN/LCS)")
                raise Pn532Timeout(f"no {what}")
            parser.feed(port.read(max(1, port.in_waiting)))


class Pn532I2cTransport:
    """I2C at ``address`` (7-bit, default 0x24) with raw ``i2c_rdwr`` transfers.

    ``open_bus`` opens the bus (e.g. ``lambda: seams.open_i2c_bus(1)``); it is called on the
    first ``wake`` from the worker thread, and the bus stays open until :meth:`close`.
    """

    def __init__(
        self, open_bus: Callable[[], SMBusLike], *, address: int = I2C_ADDRESS, label: str = "i2c"
    ) -> None:
        self._open_bus = open_bus
        self._address = address
        self._label = label
        self._bus: SMBusLike | None = None

    @property
    def description(self) -> str:
        return f"{self._label} 0x{self._address:02X}"

    @property
    def address(self) -> int:
        return self._address

    def wake(self) -> None:
        """Open the bus; then one status read, which wakes a sleeping chip on address match.

        A sleeping PN532 may not acknowledge that first transfer: its OSError is the expected
        answer of a waking chip, so it is logged and the first command follows after 10 ms.
        """
        if self._bus is None:
            self._bus = self._open_bus()
        try:
            self._bus.i2c_rdwr(i2c_msg.read(self._address, 1))
        except OSError as exc:
            _log.debug("PN532 %s wake-up transfer: %s", self.description, exc)
            time.sleep(0.01)

    def call(self, command: int, params: bytes, timeout_s: float) -> bytes:
        bus = self._require_open()
        deadline = time.monotonic() + timeout_s
        bus.i2c_rdwr(i2c_msg.write(self._address, encode_command(command, params)))
        ack = self._read_frame(bus, 6, deadline, f"ACK for 0x{command:02X}")
        if ack.kind is not FrameKind.ACK:
            raise Pn532FrameError(f"expected ACK for 0x{command:02X}, got {ack.kind}")
        frame = self._read_frame(
            bus, _I2C_RESPONSE_READ_LEN, deadline, f"response to 0x{command:02X}"
        )
        return response_params(frame, command)

    def drop_link(self) -> None:
        """Nothing to drop: an I2C NACK does not make the bus handle stale."""

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()

    def _require_open(self) -> SMBusLike:
        if self._bus is None:
            raise OSError(f"PN532 {self.description}: bus not open")
        return self._bus

    def _read_frame(self, bus: SMBusLike, length: int, deadline: float, what: str) -> Frame:
        """Poll the status byte until ready, then read status + ``length`` bytes and decode."""
        while True:
            status = i2c_msg.read(self._address, 1)
            bus.i2c_rdwr(status)
            if next(iter(status)) & I2C_STATUS_READY:
                msg = i2c_msg.read(self._address, 1 + length)
                bus.i2c_rdwr(msg)
                raw = bytes(msg)
                if raw[0] & I2C_STATUS_READY:
                    parser = FrameParser()
                    parser.feed(raw[1:])
                    frame = parser.next_frame()
                    if frame is None:
                        raise Pn532FrameError(f"no valid {what} in {raw[1:].hex(' ')}")
                    return frame
            if time.monotonic() >= deadline:
                raise Pn532Timeout(f"no {what} (status never ready)")
            time.sleep(_I2C_POLL_INTERVAL_S)
