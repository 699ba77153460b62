"""Build the charger's hardware from configuration: one set of drivers per connector.

The same function builds a Pi's drivers and the simulation's: only the seams (pin factory,
I2C bus opener, sysfs roots) and a few endpoint settings differ, and those come from the
composition root (:mod:`controller.sim_root` for ``--sim``). Drivers are picked by type name
through :mod:`drivers.registry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.config import Config
from drivers.base import (
    CardReader,
    ConnectorLock,
    DriverEvent,
    EnergyMeter,
    EventSink,
    PowerFailInput,
    ResidualCurrentMonitor,
    StatusIndicator,
    TemperatureSensor,
)
from drivers.contactor import ContactorConfig, GpioContactor
from drivers.errors import ConfigurationError, HardwareUnavailable
from drivers.lock import GpioLock, LockConfig
from drivers.pilot import PilotBoard
from drivers.power_fail import GpioPowerFail, PowerFailConfig
from drivers.registry import CONNECTOR_TYPE_KEYS, DEFAULT_TYPES, claiming_pins, create
from drivers.seams import HardwareSeams

log = logging.getLogger(__name__)

_TYPE_KEYS = (*CONNECTOR_TYPE_KEYS.values(), "meter")


@dataclass
class ConnectorHardware:
    """The drivers of one connector."""

    id: int
    contactor: GpioContactor
    pilot: PilotBoard
    rcm: ResidualCurrentMonitor
    meter: EnergyMeter
    thermometer: TemperatureSensor | None = None
    #: The socket's lock actuator (``lock_pin`` in the connector's section); None: a
    #: tethered cable or a socket without one.
    lock: ConnectorLock | None = None
    #: The second contactor that gives the car L2 and L3 (``[phase_switch]``): energized,
    #: three phases; de-energized, one. None: the connector stays on its wired phases.
    phase_contactor: GpioContactor | None = None
    #: The phases it is wired to supply (``phases`` of its ``[[connector]]``).
    wired_phases: int = 3

    @property
    def phases(self) -> int:
        """The phases it supplies now: those wired, or with a phase switch what the phase
        contactor's feedback says (its coil, without feedback): closed three, open one."""
        if self.phase_contactor is None:
            return self.wired_phases
        closed = self.phase_contactor.main_contacts_closed
        return 3 if (self.phase_contactor.energized if closed is None else closed) else 1


@dataclass
class Hardware:
    """Every driver of the charger; :meth:`close` leaves it safe (contactors open, CP in F)."""

    connectors: list[ConnectorHardware] = field(default_factory=list)
    reader: CardReader | None = None
    led: StatusIndicator | None = None
    #: A UPS or supercap HAT's power-fail warning (``[hardware] power_fail_pin``), if wired.
    power_fail: PowerFailInput | None = None
    #: The seams the drivers were built with: other meters (the grid meter) are built with
    #: them too, so that a meter on the charger's RS-485 port shares its line.
    seams: HardwareSeams = field(default_factory=HardwareSeams)

    def connector(self, connector_id: int) -> ConnectorHardware:
        for c in self.connectors:
            if c.id == connector_id:
                return c
        raise LookupError(f"no connector {connector_id}")

    def open_all_contactors(self) -> None:
        """The safety path: de-energize every main contactor's coil now (synchronous).

        A phase contactor is left as it is: it must never move while current may flow (it
        is released by :meth:`close`, once the main contacts had their time to open).
        """
        for c in self.connectors:
            c.contactor.open()

    async def close(self) -> None:
        """Open every contactor first, then release everything; idempotent.

        Never calls ``contactor.close()``: on a contactor that means *energize*.
        """
        self.open_all_contactors()
        phase = [c.phase_contactor for c in self.connectors if c.phase_contactor is not None]
        if any(p.energized for p in phase):  # its contacts move only after the mains opened
            await asyncio.sleep(max(c.contactor.config.open_settle_s for c in self.connectors))
        for p in phase:
            p.release()
        for c in self.connectors:
            c.contactor.release()
            c.pilot.close()
            close_rcm = getattr(c.rcm, "close", None)
            if close_rcm is not None:
                close_rcm()
            await c.meter.close()
            close_lock = getattr(c.lock, "close", None)
            if close_lock is not None:
                close_lock()
        close_reader = getattr(self.reader, "close", None)
        if close_reader is not None:
            close_reader()
        close_led = getattr(self.led, "close", None)
        if close_led is not None:
            close_led()
        close_power_fail = getattr(self.power_fail, "close", None)
        if close_power_fail is not None:
            close_power_fail()


def _type(section: Mapping[str, Any], key: str, default: str | None, prefix: str) -> str | None:
    value = section.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{prefix}.{key}", f"must be a string, got {value!r}")
    return None if value == "none" else value


def build_hardware(
    config: Config,
    seams: HardwareSeams,
    on_event: EventSink,
    *,
    meter_overrides: Mapping[int, Mapping[str, Any]] | None = None,
    rfid_overrides: Mapping[str, Any] | None = None,
    connector_overrides: Mapping[int, Mapping[str, Any]] | None = None,
) -> Hardware:
    """Create every driver; on a configuration error, release what was already created.

    A machine where the Pi's hardware libraries do not work (no GPIO pin factory) is a
    ConfigurationError of ``hardware.backend``: restarting cannot fix it, the configuration
    (``backend = "sim"``, ``--sim``) or the installation can.
    """
    hardware = Hardware(seams=seams)
    created: list[Any] = []

    def make(kind: str, type_name: str, section: Mapping[str, Any], **kw: Any) -> Any:
        driver = create(kind, type_name, section, seams, on_event=on_event, **kw)
        created.append(driver)
        return driver

    try:
        for cc in config.connectors:
            prefix = f"connector.{cc.id}"
            section = {**cc.drivers, **(connector_overrides or {}).get(cc.id, {})}
            keys = {k: v for k, v in section.items() if k not in _TYPE_KEYS}

            def typed(
                kind: str,
                default: str | None,
                section: Mapping[str, Any] = section,
                prefix: str = prefix,
            ) -> str | None:
                return _type(section, f"{kind}_type", default, prefix)

            contactor = make(
                "contactor",
                typed("contactor", DEFAULT_TYPES["contactor"]) or "",
                keys,
                key_prefix=prefix,
                type_key="contactor_type",
            )
            pilot = make(
                "pilot",
                typed("pilot", DEFAULT_TYPES["pilot"]) or "",
                keys,
                key_prefix=prefix,
                type_key="pilot_type",
            )
            rcm = make(
                "rcm",
                typed("rcm", DEFAULT_TYPES["rcm"]) or "",
                keys,
                key_prefix=prefix,
                type_key="rcm_type",
            )
            temp_type = typed("temperature", None)
            thermometer = (
                None
                if temp_type is None
                else make(
                    "temperature", temp_type, keys, key_prefix=prefix, type_key="temperature_type"
                )
            )
            meter_section = _meter_section(config, section, prefix)
            meter_section.update((meter_overrides or {}).get(cc.id, {}))
            meter_type = str(meter_section.pop("type", DEFAULT_TYPES["meter"]))
            meter = make("meter", meter_type, meter_section, key_prefix="meter")
            lock = None
            if "lock_pin" in keys:
                with claiming_pins(prefix):
                    lock = GpioLock(
                        LockConfig.from_section(keys, prefix),
                        pin_factory=seams.pin_factory,
                        name=f"lock-{cc.id}",
                    )
                created.append(lock)
            hardware.connectors.append(
                ConnectorHardware(
                    cc.id, contactor, pilot, rcm, meter, thermometer, lock, wired_phases=cc.phases
                )
            )
        if config.phase_switch is not None:
            with claiming_pins("phase_switch"):
                phase_contactor = GpioContactor(
                    ContactorConfig.from_section(config.phase_switch.drivers, "phase_switch"),
                    pin_factory=seams.pin_factory,
                    name="phase-contactor",
                )
            created.append(phase_contactor)
            hardware.connector(config.phase_switch.connector).phase_contactor = phase_contactor
        rfid_section = {**config.rfid, **(rfid_overrides or {})}
        rfid_type = _type(rfid_section, "type", None, "rfid")
        if rfid_type is not None:
            hardware.reader = make("rfid", rfid_type, rfid_section, key_prefix="rfid")
        hw_section = config.raw.get("hardware", {})
        led_type = _type(hw_section, "led_type", DEFAULT_TYPES["led"], "hardware")
        if led_type is not None:
            led_keys = {k: v for k, v in hw_section.items() if k.startswith("led_")}
            led_keys.pop("led_type", None)
            hardware.led = make(
                "led", led_type, led_keys, key_prefix="hardware", type_key="led_type"
            )
        if "power_fail_pin" in hw_section:  # only where a UPS or supercap HAT is wired
            with claiming_pins("hardware"):
                power_fail = GpioPowerFail(
                    PowerFailConfig.from_section(hw_section, "hardware"),
                    pin_factory=seams.pin_factory,
                )
            created.append(power_fail)
            hardware.power_fail = power_fail
    except HardwareUnavailable as exc:
        _release_partial(hardware, created)
        raise ConfigurationError("hardware.backend", f'"{config.backend}": {exc}') from exc
    except BaseException:
        _release_partial(hardware, created)
        raise
    return hardware


def _release_partial(hardware: Hardware, created: list[Any]) -> None:
    """Undo a half-built :func:`build_hardware`: contactors open first, then every pin,
    bus and port that was claimed, so a configuration error leaks nothing."""
    with contextlib.suppress(Exception):
        hardware.open_all_contactors()
    for driver in reversed(created):
        if isinstance(driver, GpioContactor):
            driver.open()
            driver.release()  # never close(): on a contactor that means energize
            continue
        close = getattr(driver, "close", None)
        if close is not None and not inspect.iscoroutinefunction(close):
            with contextlib.suppress(Exception):
                close()


def _meter_section(config: Config, section: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The global ``[meter]`` table with the connector's own ``meter`` subtable on top."""
    own = section.get("meter", {})
    if not isinstance(own, Mapping):
        raise ConfigurationError(f"{prefix}.meter", "must be a table ([connector.meter])")
    return {**config.meter, **own}


def log_event(event: DriverEvent) -> None:
    """The default event sink: faults as warnings, the rest at info level."""
    level = logging.WARNING if event.fault else logging.INFO
    log.log(level, "%s %s: %s", event.device, event.kind, event.detail)
