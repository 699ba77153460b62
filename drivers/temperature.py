"""A DS18B20 on the Pi's 1-wire bus, read through the kernel's w1_therm sysfs files.

With ``dtoverlay=w1-gpio`` (GPIO4 by default) each sensor appears as
``/sys/bus/w1/devices/28-<serial>/w1_slave``. Reading that file makes the kernel start a
conversion and wait for it (up to 750 ms at 12 bits), then it prints the scratchpad twice::

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

The first line ends in YES when the scratchpad CRC matched; ``t=`` is millidegrees Celsius.
Because the read blocks, it runs in ``asyncio.to_thread``; the file is opened per read, so
the driver holds no OS resource between reads and needs no ``close``.

Everything that can go wrong on a bus reads as :class:`~drivers.errors.TransientError` with
a message saying what: a CRC mismatch, a missing sensor, unparsable text, an all-zero
scratchpad (a data line held low makes the CRC of nine zero bytes "match"), a value outside
the sensor's -55..125 degC range.

Overtemperature (:meth:`W1Thermometer.guard_above`): the worker thread that read a value at
or above the limit trips the contactor's interlock there and then (the coil drops without
waiting for the loop); :meth:`W1Thermometer.read_c` re-arms it as it returns that value to
the supervisor, which feeds it to the connector machine in the same step.

85.000 degC is the DS18B20's power-on reset value: it is what a sensor that browned out and
never converted reports. The first 85000 in a row is treated as suspect (TransientError,
so the caller re-reads); a second one in a row is accepted as a real 85 degC. Accepting a
repeat errs on the safe side: a sensor that keeps resetting reads as hot, which stops
charging, instead of a real overtemperature being hidden forever.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from drivers.errors import ConfigurationError, TransientError
from drivers.gpio_bridge import key_name
from drivers.interlock import Interlock
from drivers.seams import HardwareSeams

#: Family code of the DS18B20 in 1-wire device names; auto-detection looks for these.
DS18B20_FAMILY = "28"
POWER_ON_RESET_MC = 85000
RANGE_C = (-55.0, 125.0)
_DEVICE_ID = re.compile(r"[0-9a-f]{2}-[0-9a-f]{12}")
_T_FIELD = re.compile(r"\bt=(-?\d+)\s*$")


def find_ds18b20(root: Path) -> list[str]:
    """The ids of the DS18B20 sensors listed under ``root`` (blocking: a directory read)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.glob(f"{DS18B20_FAMILY}-*") if _DEVICE_ID.fullmatch(p.name))


def parse_w1_slave(text: str, source: str) -> int:
    """The temperature in millidegrees Celsius from a ``w1_slave`` text, or TransientError.

    ``source`` names the sensor in error messages.
    """
    lines = text.strip().splitlines()
    if len(lines) != 2:
        raise TransientError(f"{source}: unparsable w1_slave text {text[:80]!r}")
    crc_line, t_line = lines[0].strip(), lines[1].strip()
    if crc_line.endswith(" NO"):
        raise TransientError(f"{source}: scratchpad CRC error ({crc_line!r}); re-read")
    if not crc_line.endswith(" YES") or ":" not in crc_line:
        raise TransientError(f"{source}: unparsable w1_slave CRC line {crc_line!r}")
    if all(byte == "00" for byte in crc_line.split(":", 1)[0].split()):
        raise TransientError(f"{source}: all-zero scratchpad: no answer (data line held low?)")
    match = _T_FIELD.search(t_line)
    if match is None:
        raise TransientError(f"{source}: no t= value in w1_slave line {t_line!r}")
    return int(match.group(1))


class W1Thermometer:
    """A :class:`drivers.base.TemperatureSensor` for one DS18B20.

    ``device_id`` None picks the single ``28-*`` sensor under ``root`` at the first read that
    finds exactly one, and keeps it: if that sensor disappears later, reads fail as missing
    instead of switching silently to another sensor.
    """

    def __init__(
        self,
        root: Path = Path("/sys/bus/w1/devices"),
        device_id: str | None = None,
        *,
        name: str = "temperature",
    ) -> None:
        self._root = root
        self._device_id = device_id
        self._name = name
        self._suspect_reset = False  # the previous read was an unconfirmed 85.000 degC
        self._guard: tuple[Interlock, float] | None = None

    @property
    def device_id(self) -> str | None:
        """The sensor read; None until auto-detection found it."""
        return self._device_id

    def guard_above(self, interlock: Interlock, limit_c: float) -> None:
        """Trip ``interlock`` on the reading thread at each reading of ``limit_c`` or more
        (module docstring). Call on the loop thread, between reads."""
        self._guard = (interlock, limit_c)

    async def read_c(self) -> float:
        """The temperature in degrees Celsius; ``TransientError`` when it cannot be trusted.

        Call on the loop thread; the blocking sysfs read runs in a worker thread. A trip of
        the guarded interlock is re-armed as this returns: the caller must hand the value to
        the connector machine before its next await.
        """
        tokens: list[int] = []
        try:
            return await asyncio.to_thread(self._read_blocking, tokens)
        finally:
            if self._guard is not None:
                for token in tokens:
                    self._guard[0].rearm(token)

    def _read_blocking(self, tokens: list[int]) -> float:
        """Worker thread: read, check, and trip the guard when too hot (its token appended)."""
        celsius = self._checked_c(*self._read_text())
        guard = self._guard
        if guard is not None and celsius >= guard[1]:
            tokens.append(guard[0].trip(f"overtemperature {celsius:.1f} degC"))
        return celsius

    def _checked_c(self, text: str, source: str) -> float:
        millidegrees = parse_w1_slave(text, source)
        if millidegrees == POWER_ON_RESET_MC and not self._suspect_reset:
            self._suspect_reset = True
            raise TransientError(
                f"{source}: 85.000 degC is the DS18B20 power-on reset value; re-read to confirm"
            )
        self._suspect_reset = millidegrees == POWER_ON_RESET_MC
        celsius = millidegrees / 1000
        if not RANGE_C[0] <= celsius <= RANGE_C[1]:
            raise TransientError(f"{source}: {celsius:.3f} degC is outside the DS18B20's range")
        return celsius

    def _read_text(self) -> tuple[str, str]:
        """Worker thread: find the sensor and read its w1_slave file."""
        device_id = self._device_id or self._detect()
        path = self._root / device_id / "w1_slave"
        source = f"{self._name} {device_id}"
        try:
            return path.read_text(encoding="ascii", errors="replace"), source
        except FileNotFoundError:
            raise TransientError(f"{source}: sensor not found ({path} missing)") from None
        except OSError as exc:
            raise TransientError(f"{source}: reading {path} failed: {exc}") from exc

    def _detect(self) -> str:
        found = find_ds18b20(self._root)
        if len(found) != 1:
            problem = "no DS18B20 (28-*)" if not found else f"several DS18B20 ({', '.join(found)})"
            raise TransientError(
                f"{self._name}: {problem} under {self._root}; check the w1-gpio overlay and "
                "wiring, or set temperature_sensor"
            )
        self._device_id = found[0]
        return found[0]


#: Every key :func:`from_config` reads from its section.
CONFIG_KEYS: Final = ("temperature_sensor",)


def from_config(
    section: Mapping[str, Any], seams: HardwareSeams, *, key_prefix: str = "hardware"
) -> W1Thermometer:
    """Key ``temperature_sensor``: a 1-wire id like ``"28-00000a1b2c3d"``, or ``"auto"``
    (default) for the single DS18B20 under ``seams.w1_sysfs_root``. With "auto", several
    sensors already present is a configuration error (which one guards the socket?); none
    present is left to the reads, which fail transiently until the sensor appears.
    """
    key = key_name(key_prefix, "temperature_sensor")
    value = section.get("temperature_sensor", "auto")
    if not isinstance(value, str) or (value != "auto" and not _DEVICE_ID.fullmatch(value)):
        raise ConfigurationError(
            key, f'must be "auto" or a 1-wire id like "28-00000a1b2c3d", got {value!r}'
        )
    if value != "auto":
        return W1Thermometer(seams.w1_sysfs_root, value)
    found = find_ds18b20(seams.w1_sysfs_root)
    if len(found) > 1:
        raise ConfigurationError(key, f"several DS18B20 found ({', '.join(found)}); name one")
    return W1Thermometer(seams.w1_sysfs_root, found[0] if found else None)
