"""An I2C bus stand-in with the smbus2 API, for the simulated I2C chips (ADS1115, PN532).

Real I2C is a sequence of write and read transactions addressed to a 7-bit device address;
a register read is a one-byte write (the pointer) followed by a read. :class:`SimSMBus`
reproduces exactly that, so a driver that works here issues the same transactions on a Pi.
An address with no device answers like Linux does: ``OSError`` errno 121 (Remote I/O error).
"""

from __future__ import annotations

import ctypes
import errno
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from smbus2 import i2c_msg


class I2CDevice(Protocol):
    """A simulated chip on the bus. Called from whatever thread the driver uses."""

    def i2c_write(self, data: bytes) -> None:
        """One write transaction (for register chips, the first byte is the register pointer)."""
        ...

    def i2c_read(self, length: int) -> bytes:
        """One read transaction of exactly ``length`` bytes."""
        ...


class SimSMBus:
    """A bus with devices attached by address; thread-safe, like the kernel serialising a bus."""

    def __init__(self) -> None:
        self._devices: dict[int, I2CDevice] = {}
        self._lock = threading.Lock()
        self.closed = False

    def attach(self, address: int, device: I2CDevice) -> None:
        self._devices[address] = device

    def detach(self, address: int) -> None:
        self._devices.pop(address, None)

    def _device(self, address: int) -> I2CDevice:
        if self.closed:
            raise OSError(errno.EBADF, "bus closed")
        try:
            return self._devices[address]
        except KeyError:
            raise OSError(errno.EREMOTEIO, f"no device at 0x{address:02x}") from None

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        with self._lock:
            device = self._device(i2c_addr)
            device.i2c_write(bytes([register]))
            return list(device.i2c_read(length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        with self._lock:
            self._device(i2c_addr).i2c_write(bytes([register, *data]))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        with self._lock:
            for msg in i2c_msgs:
                device = self._device(msg.addr)
                if msg.flags & 0x0001:  # I2C_M_RD
                    data = device.i2c_read(msg.len)
                    ctypes.memmove(msg.buf, data, msg.len)
                else:
                    device.i2c_write(bytes(msg))

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SimSMBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["I2CDevice", "SimSMBus", "i2c_msg"]
