"""The IEC 61851 control pilot on a Pi: PWM generator, CP sensor, PP sensor, from configuration.

Pieces (each its own module):

- :class:`PwmPilot` (here): :class:`drivers.base.PilotGenerator` over :class:`SysfsPwm`
  (GPIO18 = pwmchip0 channel 0 by default, 1 kHz, +-12 V after the board's driver stage).
- :class:`drivers.pilot_sensor.AdcPilotSensor`: :class:`drivers.base.PilotSensor` over an
  ADS1115 behind two peak detectors (the module docstring says why).
- :class:`drivers.pilot_pp.AdcProximitySensor` / :class:`drivers.pilot_pp.TetheredCable`.
- :mod:`drivers.pilot_levels`: the pure numbers (duty formula, cut points, calibration).
- :mod:`drivers.cp_window`: an optional window comparator on the positive peak, into a
  GPIO, that drops the coil on its edge when the CP leaves C/D (the sensor arms it).

:func:`from_config` builds all of them for one connector as a :class:`PilotBoard`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from drivers import cp_window, realtime
from drivers.ads1115 import ADDRESSES, DATA_RATE_SPS, PGA_FULL_SCALE_V, Ads1115
from drivers.base import EventSink, ProximitySensor, SMBusLike, ignore_events
from drivers.errors import ConfigurationError
from drivers.pilot_levels import (
    DEFAULT_CP_GAIN,
    DEFAULT_CP_OFFSET_V,
    DEFAULT_PP_PULLUP_OHM,
    DEFAULT_PP_SUPPLY_V,
    DUTY_STATE_F_PCT,
    FrontEndCalibration,
    duty_for_current,
)
from drivers.pilot_pp import AdcProximitySensor, TetheredCable
from drivers.pilot_sensor import AdcPilotSensor
from drivers.pwm_sysfs import SysfsPwm
from drivers.seams import HardwareSeams

__all__ = ["PilotBoard", "PwmPilot", "duty_for_current", "from_config"]

#: C->B must be reported within this (the contactor then has the rest of the 100 ms).
_SAFETY_REPORT_BUDGET_S = 0.05


class PwmPilot:
    """:class:`drivers.base.PilotGenerator` on a sysfs PWM channel.

    Starts in state F (steady -12 V, "EVSE not available": the PWM's safe level) until the
    controller offers something; call :meth:`offer_current` with 0 for x1 (+12 V, nothing
    offered) once the connector is available. All methods run on the loop thread (one sysfs
    write each, see :mod:`drivers.pwm_sysfs`); :attr:`duty_pct` may be read from any thread.
    """

    def __init__(self, pwm: SysfsPwm) -> None:
        self._pwm = pwm
        self._listeners: list[Callable[[], None]] = []
        pwm.set_duty_pct(DUTY_STATE_F_PCT)

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every duty change (on the caller's thread): the CP sensor
        samples at once, at the rate the new waveform calls for."""
        self._listeners.append(listener)

    @property
    def duty_pct(self) -> float:
        """The duty generated now: % of the positive phase (100 = steady +12 V, 0 = F)."""
        return self._pwm.duty_pct

    def offer_current(self, current_a: float) -> None:
        """Offer ``current_a`` by the IEC 61851 formula; below 6 A nothing (100 %, x1)."""
        self._set(duty_for_current(current_a))

    def set_duty_pct(self, duty_pct: float) -> None:
        """Generate a raw duty, e.g. 5 % (digital communication required)."""
        self._set(duty_pct)

    def set_state_f(self) -> None:
        """Steady -12 V: 0 % positive phase (state F, EVSE not available)."""
        self._set(DUTY_STATE_F_PCT)

    def _set(self, duty_pct: float) -> None:
        before = self._pwm.duty_pct
        self._pwm.set_duty_pct(duty_pct)
        if self._pwm.duty_pct != before:
            for listener in self._listeners:
                listener()

    def close(self) -> None:
        """Leave the CP in state F and release the channel; idempotent."""
        self._pwm.close()


@dataclass
class PilotBoard:
    """CP generator, CP sensor and PP sensor of one connector, sharing one ADS1115.

    Cancel the sensor's ``run()`` before :meth:`close`, which puts the CP into state F, stops
    the ADC driver and closes the I2C bus handle that :func:`from_config` opened.
    """

    generator: PwmPilot
    sensor: AdcPilotSensor
    proximity: ProximitySensor
    adc: Ads1115
    bus: SMBusLike
    #: The window comparator's input, when ``cp_window_pin`` is configured.
    window: cp_window.GpioCpWindow | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Idempotent; the CP is in state F afterwards even if closing the bus fails."""
        if self._closed:
            return
        self._closed = True
        try:
            self.generator.close()
        finally:
            if self.window is not None:
                self.window.close()
            self.adc.close()
            self.bus.close()


#: Every key :func:`from_config` reads from a ``[[connector]]`` table.
CONFIG_KEYS: Final = (
    "pwm_chip",
    "pwm_channel",
    "pwm_inverted",
    "adc_bus",
    "adc_address",
    "adc_full_scale_v",
    "adc_data_rate_sps",
    "cp_adc_gain",
    "cp_adc_offset_v",
    "cp_low_adc_gain",
    "cp_low_adc_offset_v",
    "pp_pullup_ohm",
    "pp_supply_v",
    "sample_period_s",
    "waiting_sample_period_s",
    "idle_sample_period_s",
    "diode_check_period_s",
    "debounce_fast_samples",
    "debounce_slow_samples",
    "debounce_diode_samples",
    "duty_settle_s",
    "tethered_cable_a",
    "sampler_realtime_priority",
    *cp_window.CONFIG_KEYS,
)


def from_config(
    section: Mapping[str, Any],
    seams: HardwareSeams,
    *,
    on_event: EventSink = ignore_events,
    key_prefix: str = "pilot",
) -> PilotBoard:
    """Build the pilot hardware of one connector from its configuration section.

    Keys (defaults): ``pwm_chip`` (found under ``seams.pwm_sysfs_root`` when there is one
    chip), ``pwm_channel`` (0 = GPIO18 on a Pi 1-4), ``pwm_inverted`` (false), ``adc_bus`` (1),
    ``adc_address`` (0x48), ``adc_full_scale_v`` (4.096), ``adc_data_rate_sps`` (860),
    ``cp_adc_gain`` (9.11), ``cp_adc_offset_v`` (-15.0: both computed from the reference
    front-end, drivers/pilot_reference.py), ``cp_low_adc_gain`` and
    ``cp_low_adc_offset_v`` (same as the high ones), ``sample_period_s`` (0.0012: PWM on,
    car in C/D: conversions back to back), ``waiting_sample_period_s`` (0.01: PWM on, car
    not in C/D), ``idle_sample_period_s`` (0.2: no PWM), ``diode_check_period_s`` (0.5),
    ``debounce_fast_samples`` (2), ``debounce_slow_samples`` (10), ``debounce_diode_samples``
    (5), ``duty_settle_s`` (0.02), ``pp_pullup_ohm`` (1000), ``pp_supply_v`` (3.3),
    ``tethered_cable_a`` (unset: read PP), ``sampler_realtime_priority`` (10: ``SCHED_FIFO``
    for the ``cp-sampler`` thread where permitted, 0 = normal scheduling, at most 49; see
    :mod:`drivers.realtime`), ``cp_window_pin`` (unset: no window comparator) and
    ``cp_window_active_high`` (false: open collectors with a pull-up; :mod:`drivers.cp_window`).
    Other keys are left to other parts of the section.
    :mod:`drivers.pilot_sensor` says why the sampling rates differ.

    Bad values raise :class:`ConfigurationError` naming ``<key_prefix>.<key>``. Blocks
    briefly on first export of the PWM channel: call at start-up. ``on_event`` receives PP
    events (the CP sensor gets its sink in ``run``).
    """
    cfg = _Section(section, key_prefix)
    chip = cfg.optional_int("pwm_chip", minimum=0)
    channel = cfg.integer("pwm_channel", 0, minimum=0)
    inverted = cfg.boolean("pwm_inverted", False)
    bus_number = cfg.integer("adc_bus", 1, minimum=0)
    address = cfg.integer("adc_address", 0x48, minimum=0)
    if address not in ADDRESSES:
        raise cfg.error("adc_address", "must be 0x48, 0x49, 0x4a or 0x4b (ADDR pin)")
    full_scale_v = cfg.number("adc_full_scale_v", 4.096)
    if full_scale_v not in set(PGA_FULL_SCALE_V.values()):
        raise cfg.error("adc_full_scale_v", "must be one of 6.144, 4.096, 2.048, 1.024, ...")
    rate_sps = cfg.integer("adc_data_rate_sps", 860, minimum=1)
    if rate_sps not in DATA_RATE_SPS.values():
        raise cfg.error("adc_data_rate_sps", f"must be one of {sorted(DATA_RATE_SPS.values())}")
    calibration = _calibration(cfg, full_scale_v)
    period_s = cfg.number("sample_period_s", 0.0012, minimum=0.001, maximum=0.05)
    waiting_s = cfg.number("waiting_sample_period_s", 0.01, minimum=period_s, maximum=0.05)
    idle_s = cfg.number("idle_sample_period_s", 0.2, minimum=period_s, maximum=0.5)
    diode_check_s = cfg.number("diode_check_period_s", 0.5, minimum=0.0, maximum=5.0)
    fast = cfg.integer("debounce_fast_samples", 2, minimum=1)
    slow = cfg.integer("debounce_slow_samples", 10, minimum=1)
    diode = cfg.integer("debounce_diode_samples", 5, minimum=1)
    settle_s = cfg.number("duty_settle_s", 0.02, minimum=0.0, maximum=0.05)
    # Worst case per sample: two conversions (+10 % rate tolerance) and ~1 ms of bus traffic.
    sample_s = max(period_s, 2 * 1.1 / rate_sps + 0.001)
    if fast * sample_s > _SAFETY_REPORT_BUDGET_S:
        raise cfg.error(
            "debounce_fast_samples",
            f"{fast} samples of {sample_s * 1000:.1f} ms (sample_period_s, adc_data_rate_sps) "
            f"take longer than {_SAFETY_REPORT_BUDGET_S * 1000:.0f} ms to see C->B; the "
            "contactor must open within 100 ms",
        )
    tethered_a = cfg.optional_int("tethered_cable_a", minimum=6, maximum=80)
    realtime_priority = cfg.integer(
        "sampler_realtime_priority",
        realtime.DEFAULT_PRIORITY,
        minimum=0,
        maximum=realtime.MAX_PRIORITY,
    )

    window_config = cp_window.from_section(section, key_prefix)

    pwm = _open_pwm(cfg, seams, chip, channel, inverted)
    try:
        bus = seams.open_i2c_bus(bus_number)
    except OSError as exc:
        pwm.close()
        raise cfg.error("adc_bus", f"cannot open /dev/i2c-{bus_number}: {exc}") from exc
    window = None
    if window_config is not None:
        try:
            window = cp_window.GpioCpWindow(window_config, pin_factory=seams.pin_factory)
        except BaseException:
            bus.close()
            pwm.close()
            raise
    generator = PwmPilot(pwm)
    adc = Ads1115(bus, address, full_scale_v=full_scale_v, data_rate_sps=rate_sps)
    sensor = AdcPilotSensor(
        adc,
        lambda: generator.duty_pct,
        calibration=calibration,
        sample_period_s=period_s,
        waiting_sample_period_s=waiting_s,
        idle_sample_period_s=idle_s,
        diode_check_period_s=diode_check_s,
        debounce_fast_samples=fast,
        debounce_slow_samples=slow,
        debounce_diode_samples=diode,
        duty_settle_s=settle_s,
        realtime_priority=realtime_priority,
        window=window,
    )
    generator.add_listener(sensor.wake)
    proximity: ProximitySensor
    if tethered_a is not None:
        proximity = TetheredCable(tethered_a)
    else:
        proximity = AdcProximitySensor(adc, calibration=calibration, on_event=on_event)
    return PilotBoard(generator, sensor, proximity, adc, bus, window)


def _open_pwm(
    cfg: _Section, seams: HardwareSeams, chip: int | None, channel: int, inverted: bool
) -> SysfsPwm:
    try:
        return SysfsPwm(seams.pwm_sysfs_root, chip, channel, inverted=inverted)
    except ConfigurationError as exc:  # SysfsPwm names bare keys; add the section's prefix
        raise cfg.error(exc.key, exc.problem) from exc


def _calibration(cfg: _Section, full_scale_v: float) -> FrontEndCalibration:
    gain = cfg.number("cp_adc_gain", DEFAULT_CP_GAIN)
    offset = cfg.number("cp_adc_offset_v", DEFAULT_CP_OFFSET_V)
    calibration = FrontEndCalibration(
        high_gain=gain,
        high_offset_v=offset,
        low_gain=cfg.number("cp_low_adc_gain", gain),
        low_offset_v=cfg.number("cp_low_adc_offset_v", offset),
        pp_pullup_ohm=cfg.number("pp_pullup_ohm", DEFAULT_PP_PULLUP_OHM, minimum=1.0),
        pp_supply_v=cfg.number("pp_supply_v", DEFAULT_PP_SUPPLY_V, minimum=0.1, maximum=5.5),
    )
    # +-12 V must land inside the ADC's range on both channels, or states cannot be told apart.
    checks = (
        ("cp_adc_gain", calibration.high_gain, calibration.adc_for_high),
        ("cp_low_adc_gain", calibration.low_gain, calibration.adc_for_low),
    )
    for key, gain, to_adc in checks:
        if gain == 0.0:
            raise cfg.error(key, "must not be 0")
        for cp_v in (-12.0, 12.0):
            adc_v = to_adc(cp_v)
            if not 0.0 <= adc_v < full_scale_v:
                raise cfg.error(
                    key,
                    f"maps {cp_v:+.0f} V on the CP to {adc_v:.3f} V at the ADC, outside "
                    f"0..{full_scale_v} V (check gain, offset and adc_full_scale_v)",
                )
    return calibration


class _Section:
    """Typed, validated access to one configuration table; errors name ``prefix.key``."""

    def __init__(self, section: Mapping[str, Any], prefix: str) -> None:
        self._section = section
        self._prefix = prefix

    def error(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"{self._prefix}.{key}" if self._prefix else key, problem)

    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {value!r}")
        self._check_range(key, value, minimum, maximum)
        return value

    def optional_int(
        self, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        if self._section.get(key) is None:
            return None
        return self.integer(key, 0, minimum=minimum, maximum=maximum)

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        value = self._section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {value!r}")
        if not math.isfinite(value):
            raise self.error(key, f"must be finite, not {value!r}")
        self._check_range(key, value, minimum, maximum)
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._section.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {value!r}")
        return value

    def _check_range(
        self, key: str, value: float, minimum: float | None, maximum: float | None
    ) -> None:
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum}, not {value}")
