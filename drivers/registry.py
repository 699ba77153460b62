"""Drivers by type name: configuration picks the implementation, never an ``if`` in the core.

Each device kind maps type names to a factory with one signature, ``(section, seams,
key_prefix, on_event)``. Adding a driver is adding one entry here (and its module); the
controller asks for ``create("rfid", "pn532_uart", ...)`` and gets something that satisfies
the kind's Protocol in :mod:`drivers.base`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from drivers.base import EventSink
from drivers.errors import ConfigurationError
from drivers.seams import HardwareSeams

Factory = Callable[[Mapping[str, Any], HardwareSeams, str, EventSink], Any]


def _meter(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import meter

    return meter.from_config(section, seams, sink)


def _rfid(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import rfid_reader

    return rfid_reader.from_config(section, seams, key_prefix=prefix)


def _contactor(
    section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink
) -> Any:
    from drivers import contactor

    return contactor.from_config(section, seams, key_prefix=prefix)


def _rcm(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import rcm

    return rcm.from_config(section, seams, key_prefix=prefix)


def _pilot(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import pilot

    return pilot.from_config(section, seams, on_event=sink, key_prefix=prefix)


def _ds18b20(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import temperature

    return temperature.from_config(section, seams, key_prefix=prefix)


def _led(section: Mapping[str, Any], seams: HardwareSeams, prefix: str, sink: EventSink) -> Any:
    from drivers import led

    return led.from_config(section, seams, key_prefix=prefix)


# Imports are deferred so that configuring one reader does not import every library.
REGISTRY: dict[str, dict[str, Factory]] = {
    "meter": {"modbus": _meter},
    "rfid": {"rdm6300": _rfid, "pn532_uart": _rfid, "pn532_i2c": _rfid},
    "contactor": {"gpio": _contactor},
    "rcm": {"gpio": _rcm},
    "pilot": {"ads1115_sysfs_pwm": _pilot},
    "temperature": {"ds18b20": _ds18b20},
    "led": {"gpio": _led},
}

DEFAULT_TYPES = {
    "meter": "modbus",
    "contactor": "gpio",
    "rcm": "gpio",
    "pilot": "ads1115_sysfs_pwm",
    "led": "gpio",
}


def create(
    kind: str,
    type_name: str,
    section: Mapping[str, Any],
    seams: HardwareSeams,
    *,
    key_prefix: str,
    on_event: EventSink,
    type_key: str = "type",
) -> Any:
    """Build the driver ``type_name`` of ``kind``; ConfigurationError names ``type_key``."""
    types = REGISTRY[kind]
    factory = types.get(type_name)
    if factory is None:
        raise ConfigurationError(
            f"{key_prefix}.{type_key}",
            f"unknown {kind} type {type_name!r}; expected one of {', '.join(sorted(types))}",
        )
    return factory(section, seams, key_prefix, on_event)
