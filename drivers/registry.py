"""Drivers by type name: configuration picks the implementation, never an ``if`` in the core.

Each device kind maps type names to a factory with one signature, ``(section, seams,
key_prefix, on_event)``. Adding a driver is adding one entry here (and its module); the
controller asks for ``create("rfid", "pn532_uart", ...)`` and gets something that satisfies
the kind's Protocol in :mod:`drivers.base`.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from gpiozero.exc import BadPinFactory, GPIOPinInUse

from drivers.base import EventSink
from drivers.errors import ConfigurationError, HardwareUnavailable
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

#: Where each driver lists the keys it reads from its section (``module:attribute``): data
#: kept next to the code that reads them, looked up only for the types configured, so that
#: the configuration can refuse every key no configured driver reads (a misspelt
#: ``contactor_active_hi`` would otherwise leave the coil's polarity at its default).
KEYS: dict[str, dict[str, str]] = {
    "meter": {"modbus": "drivers.meter:CONFIG_KEYS"},
    "rfid": {
        "rdm6300": "drivers.rfid_rdm6300:CONFIG_KEYS",
        "pn532_uart": "drivers.rfid_pn532:UART_KEYS",
        "pn532_i2c": "drivers.rfid_pn532:I2C_KEYS",
    },
    "contactor": {"gpio": "drivers.contactor:CONFIG_KEYS"},
    "rcm": {"gpio": "drivers.rcm:CONFIG_KEYS"},
    "pilot": {"ads1115_sysfs_pwm": "drivers.pilot:CONFIG_KEYS"},
    "temperature": {"ds18b20": "drivers.temperature:CONFIG_KEYS"},
    "led": {"gpio": "drivers.led:CONFIG_KEYS"},
}

#: The kinds a ``[[connector]]`` table configures, each with the key naming its type.
CONNECTOR_TYPE_KEYS = {
    "contactor": "contactor_type",
    "pilot": "pilot_type",
    "rcm": "rcm_type",
    "temperature": "temperature_type",
}

DEFAULT_TYPES = {
    "meter": "modbus",
    "contactor": "gpio",
    "rcm": "gpio",
    "pilot": "ads1115_sysfs_pwm",
    "led": "gpio",
}


def types(kind: str) -> tuple[str, ...]:
    """The type names of ``kind``, sorted."""
    return tuple(sorted(REGISTRY[kind]))


def config_keys(kind: str, type_name: str) -> frozenset[str]:
    """The keys the driver ``type_name`` of ``kind`` reads from its section."""
    module, _, attribute = KEYS[kind][type_name].partition(":")
    return frozenset(getattr(importlib.import_module(module), attribute))


@contextlib.contextmanager
def claiming_pins(key_prefix: str) -> Iterator[None]:
    """Around building a device that claims GPIOs: two configured devices on one GPIO (a
    connector's pin on the LED's default, a lock on a contactor's, two connectors on the same
    pins) are a configuration error naming ``key_prefix`` in one line, not gpiozero's
    GPIOPinInUse traceback."""
    try:
        yield
    except GPIOPinInUse as exc:
        raise ConfigurationError(
            key_prefix, f"{exc}; two configured devices share a GPIO: check the *_pin keys"
        ) from exc


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
    factory = REGISTRY[kind].get(type_name)
    if factory is None:
        raise ConfigurationError(
            f"{key_prefix}.{type_key}",
            f"unknown {kind} type {type_name!r}; expected one of {', '.join(types(kind))}",
        )
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always")
        try:
            with claiming_pins(key_prefix):
                driver = factory(section, seams, key_prefix, on_event)
        except BadPinFactory as exc:
            tried = "; ".join(str(w.message).removeprefix("Falling back from ") for w in fallbacks)
            raise HardwareUnavailable(
                f"no usable GPIO library: gpiozero found no pin factory ({tried or exc}); on a "
                "Raspberry Pi install python3-lgpio (deploy/install.sh does), elsewhere use --sim"
            ) from exc
    for warning in fallbacks:  # a working fallback still says why it fell back
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return driver
