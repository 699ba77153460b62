"""The example configurations in deploy/examples/ are valid, complete and mean what they say.

Each example is parsed by ``controller.config.parse_config`` and its drivers are built by
``controller.hardware.build_hardware`` exactly as on a Pi, with only the seams swapped: a
gpiozero MockFactory, the simulated SMBus and sysfs PWM tree, an empty 1-wire directory.
Meter and readers open their ports lazily, so nothing real is touched.

Drivers ignore keys that belong to their neighbours in a shared ``[[connector]]`` table, so
a misspelt key would silently fall back to its default. To prove that every key in an
example is read and validated by someone, each one in turn is given a value no setting
accepts, and the build must fail naming exactly that key. Finally each example runs
``check-hw`` on the simulated charger, where every step must pass.
"""

from __future__ import annotations

import asyncio
import copy
import io
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from controller.check_hw import Outcome, Waits, check_hardware, with_sim_reader_type
from controller.config import Config, ConfigError, parse_config
from controller.hardware import build_hardware
from drivers.base import ignore_events
from drivers.errors import ConfigurationError
from drivers.meter import ModbusMeter
from drivers.rfid_pn532 import Pn532Reader
from drivers.rfid_rdm6300 import Rdm6300Reader
from drivers.seams import HardwareSeams
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus
from tests.support.sim_hardware import simulated_hardware
from tests.support.wait import until

EXAMPLES = Path(__file__).resolve().parent.parent / "deploy" / "examples"
SINGLE = "single-phase-sdm120-rdm6300.toml"
THREE = "three-phase-sdm630-pn532-i2c.toml"
NO_SETTING_ACCEPTS = {"not": "a valid value"}  # an inline table where a value belongs


def load(name: str) -> dict[str, Any]:
    with (EXAMPLES / name).open("rb") as f:
        return tomllib.load(f)


@pytest.fixture
def pwm(tmp_path: Path) -> Iterator[SimPwmSysfs]:
    sysfs = SimPwmSysfs(tmp_path / "pwm", channels=2)
    yield sysfs
    sysfs.close()


def build(doc: dict[str, Any], pwm: SimPwmSysfs, tmp_path: Path) -> Config:
    """Parse and build every driver of ``doc`` against stand-in seams, then release them."""
    config = parse_config(doc)
    factory = MockFactory()
    seams = HardwareSeams(
        pin_factory=factory,
        open_i2c_bus=lambda bus: SimSMBus(),
        pwm_sysfs_root=pwm.root,
        w1_sysfs_root=tmp_path / "w1",
    )
    try:
        hardware = build_hardware(config, seams, ignore_events)
        asyncio.run(hardware.close())
    finally:
        factory.reset()
        factory.close()
    return config


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted([SINGLE, THREE])


def test_single_phase_example_builds_sdm120_rdm6300_16a(pwm: SimPwmSysfs, tmp_path: Path) -> None:
    config = parse_config(load(SINGLE))
    factory = MockFactory()
    seams = HardwareSeams(factory, lambda bus: SimSMBus(), pwm.root, tmp_path / "w1")
    try:
        hardware = build_hardware(config, seams, ignore_events)
        try:
            (connector,) = hardware.connectors
            assert (config.connectors[0].max_current_a, config.connectors[0].phases) == (16.0, 1)
            assert isinstance(connector.meter, ModbusMeter)
            assert connector.meter.register_map.display_name == "Eastron SDM120"
            assert connector.meter.settings.where == "rtu /dev/ttyUSB0 2400 8N1"
            assert isinstance(hardware.reader, Rdm6300Reader)
            assert connector.contactor.config.coil_pin == 17
            assert connector.thermometer is None
        finally:
            asyncio.run(hardware.close())
    finally:
        factory.reset()
        factory.close()
    assert config.ocpp_url == ""  # standalone until a CSMS is configured
    assert config.local_cards == ("0012345678",)


def test_three_phase_example_builds_sdm630_pn532_i2c_32a(pwm: SimPwmSysfs, tmp_path: Path) -> None:
    config = parse_config(load(THREE))
    factory = MockFactory()
    seams = HardwareSeams(factory, lambda bus: SimSMBus(), pwm.root, tmp_path / "w1")
    try:
        hardware = build_hardware(config, seams, ignore_events)
        try:
            (connector,) = hardware.connectors
            assert (config.connectors[0].max_current_a, config.connectors[0].phases) == (32.0, 3)
            assert isinstance(connector.meter, ModbusMeter)
            assert connector.meter.register_map.display_name == "Eastron SDM630 (v2)"
            assert connector.meter.settings.where == "rtu /dev/serial0 9600 8N1"
            assert isinstance(hardware.reader, Pn532Reader)
            assert connector.thermometer is not None
        finally:
            asyncio.run(hardware.close())
    finally:
        factory.reset()
        factory.close()
    assert config.ocpp_url.startswith("ws://")


def leaf_keys(doc: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every setting as (path into the document, the key name an error should carry)."""
    for table, body in doc.items():
        if isinstance(body, list):
            for index, entry in enumerate(body):
                for key in entry:
                    yield (table, index, key), f"{table}.{index + 1}.{key}"
        else:
            for key in body:
                yield (table, key), f"{table}.{key}"


def with_value(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize("name", [SINGLE, THREE])
def test_every_key_of_the_example_is_read_and_validated(
    name: str, pwm: SimPwmSysfs, tmp_path: Path
) -> None:
    doc = load(name)
    build(doc, pwm, tmp_path)
    checked = []
    for path, key in leaf_keys(doc):
        with pytest.raises((ConfigError, ConfigurationError)) as caught:
            build(with_value(doc, path, NO_SETTING_ACCEPTS), pwm, tmp_path)
        error = caught.value
        assert isinstance(error, ConfigError | ConfigurationError)
        assert error.key == key, f"{key}: the error named {error.key!r}"
        checked.append(key)
    assert len(checked) >= 25


@pytest.mark.parametrize(("name", "uid"), [(SINGLE, "0012345678"), (THREE, "04A1B2C3D4E5F6")])
async def test_the_example_passes_check_hw_on_the_simulated_charger(
    name: str, uid: str, tmp_path: Path
) -> None:
    doc = load(name)
    # The simulated DS18B20 has its own id: let the simulation name it.
    for connector in doc.get("connector", []):
        connector.pop("temperature_sensor", None)
    config = parse_config(doc)
    out = io.StringIO()
    async with simulated_hardware(config, tmp_path) as (sim, hardware, config):

        async def person() -> None:
            """Plugs the EV tester in and out, then taps the card, each when asked."""
            await until(lambda: "plug in the EV tester" in out.getvalue(), what="the tester")
            sim.connector(1).ev.plug()
            await until(lambda: "unplug the EV tester" in out.getvalue(), what="unplug")
            sim.connector(1).ev.unplug()
            await until(lambda: "hold a card" in out.getvalue(), what="check-hw to ask for a card")
            sim.tap(uid)

        playing = asyncio.create_task(person())
        waits = Waits(card_s=3.0, click_hold_s=0.01, tester_s=5.0, led_hold_s=0.0)
        try:
            results = await check_hardware(hardware, with_sim_reader_type(config), out, waits)
        finally:
            playing.cancel()
    assert {r.step: r.outcome for r in results} == {
        "meter": Outcome.PASS,
        "cp": Outcome.PASS,
        "contactor": Outcome.PASS,
        "pwm": Outcome.PASS,
        "rcm": Outcome.PASS,
        "temperature": Outcome.PASS,
        # A tethered cable has no PP to read: its rating is configured.
        "pp": Outcome.SKIP if "tethered_cable_a" in doc["connector"][0] else Outcome.PASS,
        "diode": Outcome.PASS,
        "led": Outcome.LOOK,
        "card": Outcome.PASS,
    }, out.getvalue()
    assert f"UID {uid}" in out.getvalue()
