"""A simulated TI ADS1115 at register level, to attach to :class:`hw_sim.smbus.SimSMBus`.

It behaves as the datasheet (SBAS444) describes, so the real driver runs against it unchanged:
a write sets the pointer register (first byte) and, with two more bytes, the addressed
register (MSB first); a read returns the addressed register MSB first. Writing the config
register with OS=1 starts a conversion that takes one data-rate period (real time, from an
injectable clock): meanwhile OS reads 0 and the conversion register keeps the previous result.
The input is sampled when the conversion starts; results clip at 0x7FFF / 0x8000 beyond the
PGA range. In continuous mode (MODE=0) every conversion-register read returns a fresh sample.

Fault knobs: :meth:`set_stuck` (a fixed raw code, as a latched-up chip or a broken input),
:meth:`hold_input` (one input frozen at a voltage: a front-end path that no longer follows
the line), :meth:`set_nack` (the chip stops answering: ``OSError`` EREMOTEIO, as Linux
reports it).
Thread-safe: the driver's thread and a test or the simulator's loop may touch it at once.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable

from drivers.ads1115 import (
    CONFIG_RESET,
    DATA_RATE_SPS,
    MODE_SINGLE_SHOT,
    OS_BIT,
    PGA_FULL_SCALE_V,
    RAW_MAX,
    RAW_MIN,
    REG_CONFIG,
    REG_CONVERSION,
    REG_HI_THRESH,
    REG_LO_THRESH,
)


class SimAds1115:
    """An ADS1115 whose analogue inputs are ``input_v(channel)`` volts (channel 0-3)."""

    def __init__(
        self,
        input_v: Callable[[int], float],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._input_v = input_v
        self._clock = clock
        self._lock = threading.Lock()
        self._pointer = REG_CONVERSION
        self._registers = {
            REG_CONVERSION: 0,
            REG_CONFIG: CONFIG_RESET,
            REG_LO_THRESH: 0x8000,
            REG_HI_THRESH: 0x7FFF,
        }
        self._ready_at = 0.0
        self._pending = 0
        self._stuck: int | None = None
        self._nack = False
        self._held: dict[int, float] = {}
        self.conversions = 0

    # --- fault knobs -------------------------------------------------------------------------

    def set_stuck(self, raw: int | None) -> None:
        """Make every conversion return the signed code ``raw``; None resumes real readings."""
        if raw is not None and not RAW_MIN <= raw <= RAW_MAX:
            raise ValueError(f"raw code out of 16-bit range: {raw}")
        with self._lock:
            self._stuck = raw

    def hold_input(self, channel: int, volts: float | None) -> None:
        """Freeze input ``channel`` at ``volts`` (what it reads now: :meth:`input_now`);
        None lets it follow its source again."""
        with self._lock:
            if volts is None:
                self._held.pop(channel, None)
            else:
                self._held[channel] = volts

    def input_now(self, channel: int) -> float:
        """The voltage input ``channel`` has now (held, or from its source)."""
        with self._lock:
            return self._input(channel)

    def set_nack(self, nack: bool) -> None:
        """While True the chip does not acknowledge its address: every transfer fails."""
        with self._lock:
            self._nack = nack

    # --- I2CDevice ---------------------------------------------------------------------------

    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            self._check_ack()
            if not data:
                return
            self._pointer = data[0] & 0x03
            if len(data) < 3:
                return  # a pointer write only: the read that follows addresses this register
            value = data[1] << 8 | data[2]
            if self._pointer == REG_CONFIG:
                self._write_config(value)
            elif self._pointer != REG_CONVERSION:  # the conversion register is read-only
                self._registers[self._pointer] = value

    def i2c_read(self, length: int) -> bytes:
        with self._lock:
            self._check_ack()
            self._finish_conversion()
            if self._pointer == REG_CONFIG:
                value = self._registers[REG_CONFIG] & ~OS_BIT
                if not self._converting():
                    value |= OS_BIT
            elif self._pointer == REG_CONVERSION and not self._single_shot():
                value = self._sample()
            else:
                value = self._registers[self._pointer]
            word = bytes([value >> 8 & 0xFF, value & 0xFF])
            # Past the two bytes the master reads an idle (pulled-up) bus.
            return (word + b"\xff" * length)[:length]

    # --- internals (called with the lock held) -----------------------------------------------

    def _check_ack(self) -> None:
        if self._nack:
            raise OSError(errno.EREMOTEIO, "ADS1115 did not acknowledge")

    def _write_config(self, value: int) -> None:
        self._finish_conversion()
        starts = bool(value & OS_BIT) and not self._converting()
        self._registers[REG_CONFIG] = value & ~OS_BIT
        if starts or not value & MODE_SINGLE_SHOT:
            self._pending = self._sample()
            self._ready_at = self._clock() + 1.0 / DATA_RATE_SPS[value >> 5 & 0x7]

    def _single_shot(self) -> bool:
        return bool(self._registers[REG_CONFIG] & MODE_SINGLE_SHOT)

    def _converting(self) -> bool:
        return self._single_shot() and self._clock() < self._ready_at

    def _finish_conversion(self) -> None:
        if self._ready_at and self._clock() >= self._ready_at:
            self._registers[REG_CONVERSION] = self._pending
            self._ready_at = 0.0

    def _sample(self) -> int:
        """The conversion of the current MUX/PGA setting as an unsigned 16-bit word."""
        self.conversions += 1
        config = self._registers[REG_CONFIG]
        if self._stuck is not None:
            raw = self._stuck
        else:
            mux = config >> 12 & 0x7
            volts = self._mux_volts(mux)
            full_scale = PGA_FULL_SCALE_V[config >> 9 & 0x7]
            raw = max(RAW_MIN, min(RAW_MAX, round(volts / full_scale * 32768)))
        return raw & 0xFFFF

    def _mux_volts(self, mux: int) -> float:
        if mux >= 4:  # AINx against GND
            return self._input(mux - 4)
        positive, negative = ((0, 1), (0, 3), (1, 3), (2, 3))[mux]
        return self._input(positive) - self._input(negative)

    def _input(self, channel: int) -> float:
        held = self._held.get(channel)
        return self._input_v(channel) if held is None else held
