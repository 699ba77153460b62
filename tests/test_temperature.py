"""The DS18B20 driver against a simulated w1_therm sysfs tree."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.base import TemperatureSensor
from drivers.errors import ConfigurationError, TransientError
from drivers.seams import HardwareSeams
from drivers.temperature import W1Thermometer, from_config, parse_w1_slave
from hw_sim.w1 import SimW1Thermometer, crc8_maxim


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=1.0)
    leaked = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def sensor(tmp_path: Path) -> SimW1Thermometer:
    return SimW1Thermometer(tmp_path)


@pytest.fixture
def thermometer(sensor: SimW1Thermometer) -> W1Thermometer:
    return W1Thermometer(sensor.root, sensor.device_id)


def test_w1_thermometer_is_a_temperature_sensor(thermometer: W1Thermometer) -> None:
    _check: TemperatureSensor = thermometer
    assert _check is thermometer


def test_sim_prints_what_the_kernel_prints_for_the_datasheet_example() -> None:
    # Maxim's CRC-8 check value, and the w1_therm line from the module docstring.
    assert crc8_maxim(b"123456789") == 0xA1
    assert parse_w1_slave("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n"
                          "72 01 4b 46 7f ff 0e 10 57 t=23125\n", "t") == 23125  # fmt: skip


async def test_normal_reading_in_degrees_celsius(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_c(23.125)
    assert "t=23125" in sensor.path.read_text()
    assert await thermometer.read_c() == 23.125


async def test_negative_temperature_keeps_the_kernels_truncation(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_c(-10.0625)
    assert await thermometer.read_c() == -10.062


async def test_overtemperature_value_is_reported_as_read(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_c(95.5)  # the controller decides what is too hot; the driver does not clamp
    assert await thermometer.read_c() == 95.5


async def test_crc_error_is_transient_and_the_next_good_read_works(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_crc_error(True)
    assert sensor.path.read_text().splitlines()[0].endswith("NO")
    with pytest.raises(TransientError, match="CRC error"):
        await thermometer.read_c()
    sensor.set_crc_error(False)
    assert await thermometer.read_c() == 25.0


async def test_missing_sensor_is_transient_and_named(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_present(False)
    with pytest.raises(TransientError, match=r"28-00000a1b2c3d: sensor not found"):
        await thermometer.read_c()
    sensor.set_present(True)
    assert await thermometer.read_c() == 25.0


@pytest.mark.parametrize(
    ("fault", "message"),
    [("garbled", "unparsable"), ("no_response", "all-zero scratchpad")],
)
async def test_unusable_text_is_transient_with_a_clear_message(
    sensor: SimW1Thermometer, thermometer: W1Thermometer, fault: str, message: str
) -> None:
    getattr(sensor, f"set_{fault}")(True)
    with pytest.raises(TransientError, match=message):
        await thermometer.read_c()


@pytest.mark.parametrize("celsius", [-60.0, 126.0, 200.0])
async def test_value_outside_the_sensor_range_is_not_believed(
    sensor: SimW1Thermometer, thermometer: W1Thermometer, celsius: float
) -> None:
    sensor.set_c(celsius)
    with pytest.raises(TransientError, match="outside"):
        await thermometer.read_c()


async def test_85_degrees_is_suspect_once_and_believed_when_repeated(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    sensor.set_c(85.0)
    with pytest.raises(TransientError, match="power-on reset"):
        await thermometer.read_c()
    assert await thermometer.read_c() == 85.0
    assert await thermometer.read_c() == 85.0
    sensor.set_c(40.0)
    assert await thermometer.read_c() == 40.0
    sensor.set_c(85.0)  # a fresh 85 after a normal value is suspect again
    with pytest.raises(TransientError, match="power-on reset"):
        await thermometer.read_c()


async def test_auto_detection_finds_the_single_ds18b20_and_sticks_to_it(tmp_path: Path) -> None:
    thermometer = W1Thermometer(tmp_path)
    with pytest.raises(TransientError, match="no DS18B20"):
        await thermometer.read_c()
    sensor = SimW1Thermometer(tmp_path, "28-000005e2fdc3")
    sensor.set_c(31.5)
    assert await thermometer.read_c() == 31.5
    assert thermometer.device_id == "28-000005e2fdc3"
    sensor.set_present(False)
    SimW1Thermometer(tmp_path, "28-0000071c0ffe")  # another sensor must not be picked up
    with pytest.raises(TransientError, match="000005e2fdc3: sensor not found"):
        await thermometer.read_c()


async def test_the_read_blocks_a_worker_thread_not_the_loop(
    sensor: SimW1Thermometer, thermometer: W1Thermometer
) -> None:
    # A FIFO blocks the reader like the kernel does during a 750 ms conversion.
    text = sensor.w1_slave_text()
    sensor.path.unlink()
    os.mkfifo(sensor.path)
    reading = asyncio.create_task(thermometer.read_c())
    ticks = 0
    for _ in range(10):
        # a 5 ms ticker: the loop runs while the read blocks
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 10 and not reading.done()
    await asyncio.to_thread(sensor.path.write_text, text)
    assert await reading == 25.0


def test_from_config_auto_picks_the_single_sensor(sensor: SimW1Thermometer) -> None:
    thermometer = from_config({}, HardwareSeams(w1_sysfs_root=sensor.root))
    assert thermometer.device_id == sensor.device_id


def test_from_config_auto_with_several_sensors_names_the_key(tmp_path: Path) -> None:
    SimW1Thermometer(tmp_path, "28-000000000001")
    SimW1Thermometer(tmp_path, "28-000000000002")
    with pytest.raises(ConfigurationError) as caught:
        from_config({}, HardwareSeams(w1_sysfs_root=tmp_path), key_prefix="hardware")
    assert caught.value.key == "hardware.temperature_sensor"
    assert "28-000000000001" in caught.value.problem
    named = from_config(
        {"temperature_sensor": "28-000000000002"}, HardwareSeams(w1_sysfs_root=tmp_path)
    )
    assert named.device_id == "28-000000000002"


@pytest.mark.parametrize("value", ["28-xyz", "/sys/bus/w1/devices/28-00000a1b2c3d", 28, ""])
def test_from_config_with_a_bad_sensor_id_names_the_key(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config(
            {"temperature_sensor": value},
            HardwareSeams(w1_sysfs_root=tmp_path),
            key_prefix="connector.1",
        )
    assert caught.value.key == "connector.1.temperature_sensor"
