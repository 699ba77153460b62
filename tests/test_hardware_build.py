"""Building the hardware from configuration: all or nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from controller.config import parse_config
from controller.hardware import build_hardware
from controller.sim_root import start_simulation
from drivers.base import ignore_events
from drivers.errors import ConfigurationError
from drivers.seams import HardwareSeams
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus


def test_a_bad_key_late_in_the_config_releases_what_was_already_built(
    tmp_path: Path, factory: MockFactory
) -> None:
    pwm = SimPwmSysfs(tmp_path / "pwm")
    bus = SimSMBus()
    seams = HardwareSeams(pin_factory=factory, open_i2c_bus=lambda n: bus, pwm_sysfs_root=pwm.root)
    bad = parse_config(
        {"connector": [{"rcm_test_pin": 99}], "meter": {"transport": "tcp", "host": "127.0.0.1"}}
    )
    try:
        with pytest.raises(ConfigurationError) as caught:
            build_hardware(bad, seams, ignore_events)
        assert caught.value.key == "connector.1.rcm_test_pin"
        # the contactor's and the pilot's pins were released: building again works
        good = parse_config({"meter": {"transport": "tcp", "host": "127.0.0.1"}})
        hardware = build_hardware(good, seams, ignore_events)
        assert hardware.connectors[0].contactor.energized is False
        hardware.connectors[0].contactor.release()
        hardware.connectors[0].pilot.close()
        hardware.connectors[0].rcm.close()  # type: ignore[attr-defined]
        assert hardware.led is not None
        hardware.led.close()  # type: ignore[attr-defined]
    finally:
        pwm.close()


async def test_sim_refuses_an_unknown_reader_type(tmp_path: Path) -> None:
    # parse_config refuses it first; the simulation checks on its own all the same
    config = dataclasses.replace(parse_config({}), rfid={"type": "wiegand"})
    with pytest.raises(ConfigurationError) as caught:
        await start_simulation(config, tmp_path, connectors=1, speed=1.0, on_event=ignore_events)
    assert caught.value.key == "rfid.type"


async def test_sim_stops_its_devices_when_a_driver_cannot_be_built(tmp_path: Path) -> None:
    config = parse_config({"connector": [{"contactor_pin": 99}]})
    with pytest.raises((ConfigurationError, ValueError)):
        await start_simulation(config, tmp_path, connectors=1, speed=1.0, on_event=ignore_events)
    # the autouse leak check fails this test if a simulator thread or pty was left behind
