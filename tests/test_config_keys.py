"""The key lists the configuration is checked against are the keys the drivers read.

``controller.config_keys`` refuses every key no configured driver lists (``CONFIG_KEYS`` next
to each driver's code, found through ``drivers.registry.KEYS``). A key in a list that its
driver no longer reads would be accepted and ignored, the very thing strictness is for. So
each listed key in turn is given a value no setting accepts: the configuration must pass it
as known, and building the drivers must fail naming exactly that key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from controller.config import ConfigError, parse_config
from controller.hardware import build_hardware
from drivers import registry
from drivers.base import ignore_events
from drivers.errors import ConfigurationError
from drivers.seams import HardwareSeams
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus

NO_SETTING_ACCEPTS = {"not": "a valid value"}


def cases() -> Iterator[Any]:
    """(document with one key broken, the key the error must name) per listed key."""
    for kind, type_key in registry.CONNECTOR_TYPE_KEYS.items():
        for type_name in registry.types(kind):
            for key in sorted(registry.config_keys(kind, type_name)):
                doc = {"connector": [{type_key: type_name, key: NO_SETTING_ACCEPTS}]}
                yield pytest.param(doc, f"connector.1.{key}", id=f"{kind}-{type_name}-{key}")
    for key in sorted(registry.config_keys("led", "gpio")):
        doc = {"hardware": {"led_type": "gpio", key: NO_SETTING_ACCEPTS}}
        yield pytest.param(doc, f"hardware.{key}", id=f"led-{key}")
    for key in sorted(registry.config_keys("meter", "modbus")):
        doc = {"meter": {key: NO_SETTING_ACCEPTS}}
        yield pytest.param(doc, f"meter.{key}", id=f"meter-{key}")
    for type_name in registry.types("rfid"):
        for key in sorted(registry.config_keys("rfid", type_name) - {"type"}):
            doc = {"rfid": {"type": type_name, key: NO_SETTING_ACCEPTS}}
            yield pytest.param(doc, f"rfid.{key}", id=f"rfid-{type_name}-{key}")


@pytest.fixture
def seams(tmp_path: Path) -> Iterator[HardwareSeams]:
    pwm = SimPwmSysfs(tmp_path / "pwm", channels=1)
    factory = MockFactory()
    try:
        yield HardwareSeams(
            pin_factory=factory,
            open_i2c_bus=lambda bus: SimSMBus(),
            pwm_sysfs_root=pwm.root,
            w1_sysfs_root=tmp_path / "w1",
        )
    finally:
        factory.reset()
        factory.close()
        pwm.close()


@pytest.mark.parametrize(("doc", "key"), list(cases()))
def test_every_listed_key_is_read_by_its_driver(
    seams: HardwareSeams, doc: dict[str, Any], key: str
) -> None:
    config = parse_config(doc)  # known: no ConfigError
    with pytest.raises((ConfigError, ConfigurationError)) as caught:
        hardware = build_hardware(config, seams, ignore_events)
        asyncio.run(hardware.close())
    error = caught.value
    assert isinstance(error, ConfigError | ConfigurationError)
    assert error.key == key, f"{key} is listed, but the build named {error.key!r}: {error}"
