"""``picharge check-hw --calibrate``: measure the CP levels and write the board's calibration.

With nothing plugged in, the EVSE drives a steady +12 V (x1, state A), read on the positive
peak detector (AIN0), then a steady -12 V (state F), read on the negative one (AIN1). Both
detectors sit behind the same divider on the reference board (drivers/pilot_reference.py),
so the two ADC voltages give one straight line ``v_cp = v_adc * gain + offset`` through
(AIN0, +12 V) and (AIN1, -12 V): ``cp_adc_gain`` and ``cp_adc_offset_v`` of the connector's
``[[connector]]`` table, written into the configuration file with its comments and every
other key kept (:mod:`controller.config_edit`). The fit absorbs the detectors' diode drops
and the resistors' tolerances.

Refused, with nothing written, when the levels are implausible: a gain more than 10 % or an
offset more than 1.5 V from the reference circuit's (a car or tester plugged in reads 9 V as
"+12 V" and gives a gain 14 % off; a shorted CP or a dead supply much more), or when the
table sets ``cp_low_adc_*`` keys of its own (they would override half of the result).
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from controller.check_hw import HardwareUnavailable, _unavailable, open_hardware
from controller.check_hw_pilot import DETECTOR_SETTLE_S, HIGH_CHANNEL, LOW_CHANNEL, SAMPLES
from controller.config import Config
from controller.config_edit import ConfigEditError, set_array_table_keys, write_atomically
from controller.hardware import ConnectorHardware, Hardware
from drivers.pilot_reference import REFERENCE

LINE_HIGH_V = REFERENCE.supply_v.nominal  # x1: the EVSE's +12 V
LINE_LOW_V = -REFERENCE.supply_v.nominal  # state F: its -12 V
MAX_GAIN_DEVIATION = 0.10
MAX_OFFSET_DEVIATION_V = 1.5
_OWN_LOW_KEYS = ("cp_low_adc_gain", "cp_low_adc_offset_v")


@dataclass(frozen=True, slots=True)
class Calibration:
    """What one connector's board measured (ADC volts) and the line through it."""

    adc_high_v: float  # AIN0 at +12 V
    adc_low_v: float  # AIN1 at -12 V

    @property
    def gain(self) -> float:
        return (LINE_HIGH_V - LINE_LOW_V) / (self.adc_high_v - self.adc_low_v)

    @property
    def offset_v(self) -> float:
        return LINE_HIGH_V - self.gain * self.adc_high_v

    def implausible(self) -> str | None:
        """Why these levels cannot be the reference board's +-12 V, or None."""
        if self.adc_high_v <= self.adc_low_v:
            return "the +12 V level does not read above the -12 V level"
        gain_off = abs(self.gain / REFERENCE.cp_gain - 1.0)
        if gain_off > MAX_GAIN_DEVIATION:
            return (
                f"gain {self.gain:.3f} is {gain_off:.0%} from the reference board's "
                f"{REFERENCE.cp_gain:.3f} (at most {MAX_GAIN_DEVIATION:.0%})"
            )
        offset_off = abs(self.offset_v - REFERENCE.cp_offset_v)
        if offset_off > MAX_OFFSET_DEVIATION_V:
            return (
                f"offset {self.offset_v:+.2f} V is {offset_off:.2f} V from the reference "
                f"board's {REFERENCE.cp_offset_v:+.2f} V (at most {MAX_OFFSET_DEVIATION_V} V)"
            )
        return None


async def _median_volts(c: ConnectorHardware, channel: int) -> float:
    await asyncio.sleep(DETECTOR_SETTLE_S)
    adc = c.pilot.adc
    return await asyncio.to_thread(
        lambda: statistics.median(adc.read_volts(channel) for _ in range(SAMPLES))
    )


async def measure(c: ConnectorHardware) -> Calibration:
    """+12 V (x1) on AIN0, then -12 V (F) on AIN1; leaves the CP in state F."""
    c.contactor.open()  # never anything but open here
    generator = c.pilot.generator
    try:
        generator.offer_current(0.0)
        high = await _median_volts(c, HIGH_CHANNEL)
    finally:
        generator.set_state_f()
    low = await _median_volts(c, LOW_CHANNEL)
    return Calibration(high, low)


async def calibrate(hardware: Hardware, config: Config, path: Path, out: TextIO) -> int:
    """Measure every connector, then write all results or none; the exit code."""
    results: list[tuple[int, Calibration]] = []
    for index, c in enumerate(hardware.connectors):
        own = [key for key in _OWN_LOW_KEYS if key in config.connectors[index].drivers]
        if own:
            print(
                f"connector {c.id}: REFUSED: [[connector]] sets {', '.join(own)}, which would "
                "override the calibration of AIN1: remove them, then calibrate again",
                file=out,
            )
            return 1
        calibration = await measure(c)
        print(
            f"connector {c.id}: +12 V reads {calibration.adc_high_v:.4f} V on AIN0, -12 V reads "
            f"{calibration.adc_low_v:.4f} V on AIN1",
            file=out,
            flush=True,
        )
        why = calibration.implausible()
        if why is not None:
            print(
                f"connector {c.id}: REFUSED, nothing written: {why}. Unplug any car or tester, "
                "check the +-12 V supply and the CP wiring (run picharge check-hw), then "
                "calibrate again",
                file=out,
            )
            return 1
        print(
            f"connector {c.id}: gain {calibration.gain:.4f}, offset {calibration.offset_v:+.4f} V",
            file=out,
        )
        results.append((index, calibration))
    try:
        await asyncio.to_thread(write_calibrations, path, results)
    except ConfigEditError as exc:
        print(f"REFUSED, nothing written: {exc}", file=out)
        return 1
    print(f"wrote cp_adc_gain and cp_adc_offset_v into {path}", file=out)
    return 0


def write_calibrations(path: Path, results: list[tuple[int, Calibration]]) -> None:
    """Set each connector's gain and offset in ``path`` (all or nothing). Blocking."""
    text = path.read_text(encoding="utf-8")
    for index, calibration in results:
        values = {
            "cp_adc_gain": round(calibration.gain, 4),
            "cp_adc_offset_v": round(calibration.offset_v, 4),
        }
        text = set_array_table_keys(
            text, "connector", index, values, "measured by picharge check-hw --calibrate"
        )
    write_atomically(path, text)


async def run_calibration(config: Config, path: Path, out: TextIO, *, sim: bool = False) -> int:
    """``check-hw --calibrate``: build the drivers, calibrate, release them."""
    print(
        f"picharge check-hw --calibrate: {len(config.connectors)} connector(s); unplug every "
        "car and tester: the CP must show +12 V (state A) and -12 V (state F)",
        file=out,
        flush=True,
    )
    try:
        async with open_hardware(config, out, sim=sim) as (hardware, config):
            return await calibrate(hardware, config, path, out)
    except HardwareUnavailable as exc:
        return _unavailable(exc, out)
