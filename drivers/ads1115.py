"""TI ADS1115 16-bit I2C ADC: blocking single-shot conversions.

Registers (datasheet SBAS444): pointer 0x00 = conversion (16-bit two's complement, MSB
first), 0x01 = config. Config bits: OS[15] (write 1: start a conversion; read: 0 while
converting, 1 when idle), MUX[14:12] (4-7 = AIN0-3 against GND), PGA[11:9] (full scale),
MODE[8] (1 = single-shot), DR[7:5] (data rate), COMP_*[4:0] (0b00011 = comparator off).

smbus2's word calls are little-endian while the chip is MSB first, so every access is a 2-byte
I2C block read/write (reference 6.3). A single-shot conversion is: write config with OS=1,
sleep for one conversion time, read config until OS=1 (bounded), read the conversion register.

Threading: every method blocks on the bus for about 1.5-3 ms (one conversion at 860 SPS plus
three I2C transactions). Call it from a dedicated thread or ``asyncio.to_thread``, never on
the loop. One lock serialises whole conversions, so the CP sampling thread and a PP read in
an executor can share the chip without starting each other's conversions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Final

from drivers.base import SMBusLike
from drivers.errors import TransientError

REG_CONVERSION: Final = 0x00
REG_CONFIG: Final = 0x01
REG_LO_THRESH: Final = 0x02
REG_HI_THRESH: Final = 0x03

OS_BIT: Final = 0x8000
MODE_SINGLE_SHOT: Final = 0x0100
COMP_DISABLED: Final = 0x0003
#: Power-on value of the config register.
CONFIG_RESET: Final = 0x8583

#: PGA code -> full-scale voltage (V). Codes 5-7 all mean +-0.256 V.
PGA_FULL_SCALE_V: Final[Mapping[int, float]] = {
    0: 6.144,
    1: 4.096,
    2: 2.048,
    3: 1.024,
    4: 0.512,
    5: 0.256,
    6: 0.256,
    7: 0.256,
}
#: DR code -> samples per second.
DATA_RATE_SPS: Final[Mapping[int, int]] = {
    0: 8,
    1: 16,
    2: 32,
    3: 64,
    4: 128,
    5: 250,
    6: 475,
    7: 860,
}

RAW_MAX: Final = 0x7FFF
RAW_MIN: Final = -0x8000
ADDRESSES: Final = (0x48, 0x49, 0x4A, 0x4B)
# The data rate has a +-10 % tolerance: a chip may take up to 1 / 0.9 of the nominal time.
_RATE_TOLERANCE: Final = 0.9
_POLL_INTERVAL_S: Final = 0.0002


def full_scale_code(full_scale_v: float) -> int:
    """PGA code for a full-scale voltage; ``ValueError`` when the chip has no such range."""
    for code, volts in PGA_FULL_SCALE_V.items():
        if abs(volts - full_scale_v) < 1e-9:
            return code
    raise ValueError(f"no PGA range of {full_scale_v} V (one of 6.144 ... 0.256)")


def data_rate_code(rate_sps: int) -> int:
    """DR code for a data rate; ``ValueError`` for rates the chip does not have."""
    for code, sps in DATA_RATE_SPS.items():
        if sps == rate_sps:
            return code
    raise ValueError(f"no data rate of {rate_sps} SPS (one of {sorted(DATA_RATE_SPS.values())})")


def single_shot_config(channel: int, pga_code: int, dr_code: int) -> int:
    """The config word that starts one single-ended conversion of AIN``channel``."""
    mux = 0b100 | channel
    return OS_BIT | mux << 12 | pga_code << 9 | MODE_SINGLE_SHOT | dr_code << 5 | COMP_DISABLED


class Ads1115:
    """One ADS1115 on an I2C bus, read channel by channel in single-shot mode.

    ``full_scale_v`` is the PGA range (+-V); inputs beyond it read as the saturated codes
    0x7FFF / 0x8000, which :meth:`saturated` recognises. Bus errors (``OSError``) and a
    conversion that never finishes raise :class:`TransientError`. The bus object belongs
    to the caller: :meth:`close` only stops this driver from using it.
    """

    def __init__(
        self,
        bus: SMBusLike,
        address: int = 0x48,
        *,
        full_scale_v: float = 4.096,
        data_rate_sps: int = 860,
    ) -> None:
        if address not in ADDRESSES:
            raise ValueError(f"ADS1115 address must be one of 0x48-0x4b, not 0x{address:02x}")
        self._bus = bus
        self._address = address
        self._pga_code = full_scale_code(full_scale_v)
        self._dr_code = data_rate_code(data_rate_sps)
        self.full_scale_v = full_scale_v
        self.conversion_s = 1.0 / data_rate_sps
        #: When to look at OS first after starting a conversion (see _wait_until_idle).
        self._first_look_s = self.conversion_s
        self._lock = threading.Lock()
        self._closed = False

    @property
    def address(self) -> int:
        return self._address

    def read_raw(self, channel: int) -> int:
        """One single-shot conversion of AIN``channel`` (0-3) against GND: the signed code.

        Blocks for one conversion time plus the bus traffic. Thread-safe.
        """
        if not 0 <= channel <= 3:
            raise ValueError(f"ADS1115 channel must be 0-3, not {channel}")
        config = single_shot_config(channel, self._pga_code, self._dr_code)
        with self._lock:
            if self._closed:
                raise TransientError(f"ADS1115 0x{self._address:02x} is closed")
            try:
                self._write_register(REG_CONFIG, config)
                started = time.monotonic()
                self._wait_until_idle(started)
                raw = self._read_register(REG_CONVERSION)
            except OSError as exc:
                raise TransientError(f"ADS1115 0x{self._address:02x} AIN{channel}: {exc}") from exc
        return raw - 0x10000 if raw & 0x8000 else raw

    def to_volts(self, raw: int) -> float:
        """Volts at the input for a signed code, per the PGA range."""
        return raw * self.full_scale_v / 32768.0

    def read_volts(self, channel: int) -> float:
        """:meth:`read_raw` converted to volts."""
        return self.to_volts(self.read_raw(channel))

    @staticmethod
    def saturated(raw: int) -> bool:
        """True for the clipped codes: the input was beyond the PGA range."""
        return raw in (RAW_MAX, RAW_MIN)

    def close(self) -> None:
        """Stop using the bus; idempotent. Later reads raise :class:`TransientError`."""
        with self._lock:
            self._closed = True

    def _wait_until_idle(self, started: float) -> None:
        # Sleep through the conversion (no busy wait: the CPU is for the rest of the charger),
        # then poll OS for a bounded time: three conversion times plus 2 ms of bus slack.
        # The first look comes after the time this chip has shown it needs: the nominal one
        # at first, raised to what a conversion took once one was not done by then (a chip
        # may run up to 10 % slow, never more is learnt). So a slow chip costs one extra bus
        # read, once, and a chip on time does not wait for the slowest one's 0.13 ms on
        # every conversion: the CP's reaction to C->B is three conversions (pilot_sensor).
        deadline = started + 3 * self.conversion_s + 0.002
        time.sleep(max(0.0, started + self._first_look_s - time.monotonic()))
        polled = False
        while not self._read_register(REG_CONFIG) & OS_BIT:
            if time.monotonic() > deadline:
                raise TransientError(
                    f"ADS1115 0x{self._address:02x}: conversion not done after "
                    f"{(time.monotonic() - started) * 1000:.1f} ms"
                )
            polled = True
            time.sleep(_POLL_INTERVAL_S)
        if polled:
            took_s = time.monotonic() - started
            slowest_s = self.conversion_s / _RATE_TOLERANCE
            self._first_look_s = min(slowest_s, max(self._first_look_s, took_s))

    def _write_register(self, register: int, value: int) -> None:
        self._bus.write_i2c_block_data(self._address, register, [value >> 8, value & 0xFF])

    def _read_register(self, register: int) -> int:
        data = self._bus.read_i2c_block_data(self._address, register, 2)
        if len(data) != 2:
            raise OSError(f"short read of register 0x{register:02x}: {len(data)} bytes")
        return data[0] << 8 | data[1]
