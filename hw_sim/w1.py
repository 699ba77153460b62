"""A DS18B20 as the kernel's w1_therm driver shows it: a sysfs-like tree in a directory.

``root`` plays ``/sys/bus/w1/devices``: it gets a ``w1_bus_master1`` entry (as on a Pi) and
``<device_id>/w1_slave``, written the way w1_therm prints it: the 9 scratchpad bytes with
the CRC verdict, then the bytes again with ``t=`` in millidegrees. The temperature is
encoded as the sensor does (12 bits, 1/16 degC steps), the CRC is the real Dallas/Maxim CRC-8,
and the kernel's integer conversion is reproduced, so 23.125 degC reads ``t=23125``.

Each change rewrites the file atomically (write and rename), so a driver reading in another
thread sees the old text or the new one, never half of it.
"""

from __future__ import annotations

from pathlib import Path

#: Scratchpad bytes 2-7 after power-up of a DS18B20 at 12-bit resolution (TH, TL, config, ...).
_SCRATCHPAD_TAIL = bytes([0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim 1-wire CRC-8 (polynomial x^8 + x^5 + x^4 + 1, reflected: 0x8C)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


class SimW1Thermometer:
    """One simulated DS18B20 under ``root``; starts present at 25.0 degC.

    Fault knobs: :meth:`set_crc_error` (the CRC line says NO), :meth:`set_present` (the
    device directory disappears, as when the sensor is unplugged), :meth:`set_no_response`
    (all-zero scratchpad whose CRC "matches": a data line held low), :meth:`set_garbled`
    (a truncated file, as during a bus glitch).
    """

    def __init__(self, root: Path, device_id: str = "28-00000a1b2c3d") -> None:
        self.root = root
        self.device_id = device_id
        self._raw = 25 * 16
        self._crc_error = False
        self._present = True
        self._no_response = False
        self._garbled = False
        (root / "w1_bus_master1").mkdir(parents=True, exist_ok=True)
        self._write()

    @property
    def path(self) -> Path:
        """The ``w1_slave`` file the driver reads."""
        return self.root / self.device_id / "w1_slave"

    def set_c(self, celsius: float) -> None:
        """Set the temperature, rounded to the sensor's 1/16 degC step (any 16-bit value,
        so out-of-range readings can be produced too)."""
        raw = round(celsius * 16)
        if not -0x8000 <= raw <= 0x7FFF:
            raise ValueError(f"{celsius} degC does not fit the 16-bit temperature register")
        self._raw = raw
        self._write()

    def set_crc_error(self, error: bool) -> None:
        self._crc_error = error
        self._write()

    def set_present(self, present: bool) -> None:
        self._present = present
        self._write()

    def set_no_response(self, silent: bool) -> None:
        self._no_response = silent
        self._write()

    def set_garbled(self, garbled: bool) -> None:
        self._garbled = garbled
        self._write()

    def w1_slave_text(self) -> str:
        """What w1_therm prints for the current state."""
        if self._no_response:
            scratchpad = bytes(9)
        else:
            data = self._raw.to_bytes(2, "little", signed=True) + _SCRATCHPAD_TAIL
            scratchpad = data + bytes([crc8_maxim(data)])
        if self._crc_error:  # a bit flipped on the wire, in the CRC byte as read
            scratchpad = scratchpad[:8] + bytes([scratchpad[8] ^ 0x5A])
        computed = crc8_maxim(scratchpad[:8])
        verdict = "YES" if computed == scratchpad[8] else "NO"
        raw = int.from_bytes(scratchpad[:2], "little", signed=True)
        millidegrees = int(raw * 1000 / 16)  # C integer division truncates toward zero
        hex_bytes = " ".join(f"{b:02x}" for b in scratchpad)
        text = f"{hex_bytes} : crc={computed:02x} {verdict}\n{hex_bytes} t={millidegrees}\n"
        return text[:20] if self._garbled else text

    def _write(self) -> None:
        device_dir = self.root / self.device_id
        if not self._present:
            self.path.unlink(missing_ok=True)
            if device_dir.exists():
                device_dir.rmdir()
            return
        device_dir.mkdir(parents=True, exist_ok=True)
        scratch = device_dir / ".w1_slave.tmp"
        scratch.write_text(self.w1_slave_text(), encoding="ascii")
        scratch.replace(self.path)
