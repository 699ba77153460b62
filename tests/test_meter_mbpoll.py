"""An independent Modbus master (Debian's ``mbpoll``, built on libmodbus) reads the simulated
meter, and agrees with what the driver reads.

mbpoll decodes the wire format itself (its own float / 32-bit integer / word order handling),
so a word-order or addressing mistake shared by the driver and the simulator (both read the
same register map) would show up here. Its ``-r`` references are 1-based: wire address + 1.
64-bit values (ABB energy) are beyond mbpoll and are left to the driver tests.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator

import pytest

from drivers.base import MeterReading
from drivers.meter import from_config
from drivers.register_map import DataType, Quantity, available_models
from drivers.seams import HardwareSeams
from hw_sim.meter_server import SimMeter

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"
# A 16-bit register prints unsigned with its signed reading after it: "65533 (-3)".
VALUE_LINE = re.compile(
    r"^\[(\d+)\]:\s+(-?[0-9.eE+-]+|nan|-?inf)(?:\s+\((-?\d+)\))?\s*$", re.MULTILINE
)

VOLTAGE = (229.7, 231.4, 228.1)
CURRENT = (15.42, 14.87, 16.03)
POWER = (3541.3, 3410.9, 3655.7)
ENERGY_WH = 987_654.0


@pytest.fixture
async def stray_task_check() -> AsyncIterator[None]:
    yield
    # one turn for tasks cancelled at teardown to unwind; whatever still runs after it leaked
    await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def mbpoll_type(q: Quantity, function_code: int) -> list[str]:
    """mbpoll's -t (table and type) and -B (high word first) for one quantity."""
    table = "3" if function_code == 4 else "4"
    if q.data_type is DataType.FLOAT32:
        kind = f"{table}:float"
    elif q.data_type in (DataType.INT32, DataType.UINT32):
        kind = f"{table}:int"
    else:
        kind = table
    big = q.word_order == "big" and q.register_count == 2
    return ["-t", kind, *(["-B"] if big else [])]


async def mbpoll(link: list[str], q: Quantity, function_code: int, unit_id: int) -> float:
    """Run mbpoll once for ``q`` and return the raw value it printed (wire unit, unscaled)."""
    args = [
        *link[:-1],
        "-a",
        str(unit_id),
        *mbpoll_type(q, function_code),
        "-r",
        str(q.address + 1),
        "-c",
        "1",
        "-o",
        "2",
        "-1",
        link[-1],
    ]
    process = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    text = out.decode()
    assert process.returncode == 0, f"mbpoll {' '.join(args)} failed: {err.decode()}{text}"
    found = VALUE_LINE.findall(text)
    assert [ref for ref, _, _ in found] == [str(q.address + 1)], text
    _, unsigned, signed = found[0]
    return float(signed if signed and q.data_type.is_signed else unsigned)


def driver_value(reading: MeterReading, name: str) -> float | None:
    phases = {"voltage": reading.voltage_v, "current": reading.current_a, "power": reading.power_w}
    prefix = name.split("_")[0]
    if prefix in phases and "_l" in name:
        return phases[prefix][int(name.split("_")[1][1]) - 1]
    return {
        "power_total_w": reading.total_power_w,
        "energy_import_wh": reading.energy_import_wh,
        "frequency_hz": reading.frequency_hz,
    }.get(name)


async def compare_with_driver(sim: SimMeter, link: list[str], reading: MeterReading) -> int:
    """Check every quantity mbpoll can decode against the driver's reading; returns how many."""
    rmap = sim.register_map
    checked = 0
    for q in rmap.quantities:
        if q.register_count > 2 or q.name == "energy_export_wh":
            continue
        raw = await mbpoll(link, q, rmap.function_code, sim.unit_id)
        theirs = raw * q.factor
        if q.scale_register is not None:  # SunSpec: x 10^(the int16 in the scale register)
            sunssf = Quantity("frequency_hz", q.scale_register, DataType.INT16, "big", 1.0, "Hz")
            theirs *= 10.0 ** await mbpoll(link, sunssf, rmap.function_code, sim.unit_id)
        ours = driver_value(reading, q.name)
        assert ours is not None, q.name
        # mbpoll prints floats with 6 significant digits.
        tolerance = abs(ours) * 1e-5 if q.data_type is DataType.FLOAT32 else 1e-9
        assert theirs == pytest.approx(ours, abs=tolerance + 1e-9), (q.name, theirs, ours)
        checked += 1
    return checked


@pytest.mark.parametrize("model", available_models())
async def test_mbpoll_reads_the_same_values_as_the_driver_over_tcp(
    model: str, stray_task_check: None
) -> None:
    sim = SimMeter(model, energy_wh=ENERGY_WH)
    sim.set_measurements(VOLTAGE, CURRENT, POWER, 50.02)
    host, port = await sim.start_tcp()
    meter = from_config(
        {"model": model, "transport": "tcp", "host": host, "port": port, "min_request_gap_s": 0},
        HardwareSeams(),
    )
    try:
        reading = await meter.read()
        checked = await compare_with_driver(sim, ["-m", "tcp", "-p", str(port), host], reading)
    finally:
        await meter.close()
        await sim.stop()
    # Everything but export energy and 64-bit values: 2 on an SDM72D v1, 5 on an SDM120, ...
    assert checked >= 2
    assert checked == sum(
        q.register_count <= 2 and q.name != "energy_export_wh" for q in sim.register_map.quantities
    )


@pytest.mark.parametrize("model", ["sdm630", "em340"])
async def test_mbpoll_reads_the_same_values_as_the_driver_over_the_rtu_pty_link(
    model: str, stray_task_check: None
) -> None:
    sim = SimMeter(model, energy_wh=ENERGY_WH)
    sim.set_measurements(VOLTAGE, CURRENT, POWER, 50.02)
    path = await sim.start_rtu()
    meter = from_config(
        {"model": model, "transport": "rtu", "serial_port": path, "min_request_gap_s": 0},
        HardwareSeams(),
    )
    try:
        reading = await meter.read()
        await meter.close()  # one master on the line at a time
        link = ["-m", "rtu", "-b", "9600", "-P", "none", path]
        assert await compare_with_driver(sim, link, reading) == 12  # all but export
    finally:
        await meter.close()
        await sim.stop()


async def test_mbpoll_gets_no_answer_from_a_meter_with_another_unit_id(
    stray_task_check: None,
) -> None:
    sim = SimMeter("sdm630", unit_id=7)
    host, port = await sim.start_tcp()
    try:
        process = await asyncio.create_subprocess_exec(
            MBPOLL,
            *("-m", "tcp", "-p", str(port), "-a", "1", "-t", "3", "-o", "0.2", "-1", host),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    finally:
        await sim.stop()
    assert process.returncode != 0
    assert "timed out" in (out + err).decode()
