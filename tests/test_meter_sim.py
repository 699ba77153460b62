"""The simulated meter as hardware: its pty cable, its line rate, and how it answers a master.

These tests talk to :class:`SimMeter` with a bare pymodbus client or raw pty I/O, not the
driver, so they pin down what the simulator promises the driver and the lead.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from drivers.register_map import parse_register_map
from hw_sim.meter_server import PtyLink, SimMeter, flip_one_bit

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


@pytest.fixture
def link() -> Iterator[PtyLink]:
    link = PtyLink()
    yield link
    link.close()


def open_end(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


def read_exactly(fd: int, count: int, timeout_s: float = 2.0) -> tuple[bytes, list[float]]:
    """Read ``count`` bytes; also return when each chunk arrived (monotonic)."""
    data = b""
    arrivals: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(data) < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, count - len(data))
        arrivals.extend([time.monotonic()] * len(chunk))
        data += chunk
    return data, arrivals


def test_pty_link_carries_every_byte_value_both_ways(link: PtyLink) -> None:
    driver, device = open_end(link.driver_path), open_end(link.device_path)
    try:
        payload = bytes(range(256))  # 0x03, 0x11, 0x13, CR...: raw, no line discipline
        os.write(driver, payload)
        assert read_exactly(device, 256)[0] == payload
        os.write(device, payload[::-1])
        assert read_exactly(driver, 256)[0] == payload[::-1]
    finally:
        os.close(driver)
        os.close(device)


def test_line_rate_emulation_delivers_bytes_as_a_9600_baud_8n1_line_would() -> None:
    link = PtyLink(baudrate=9600)
    driver, device = open_end(link.driver_path), open_end(link.device_path)
    try:
        start = time.monotonic()
        os.write(device, bytes(96))  # 96 bytes x 10 bits / 9600 baud = 100 ms on the wire
        data, arrivals = read_exactly(driver, 96)
        assert len(data) == 96
        assert arrivals[-1] - start >= 0.099
        assert arrivals[-1] - start < 0.2
        assert arrivals[0] - start < 0.03  # bytes trickle in, not all at the end
        assert link.wire_time_s(96) == pytest.approx(0.1)
    finally:
        os.close(driver)
        os.close(device)
        link.close()


def test_a_reply_waits_for_the_rtu_inter_frame_gap_on_the_shared_line() -> None:
    link = PtyLink(baudrate=9600)
    driver, device = open_end(link.driver_path), open_end(link.device_path)
    try:
        start = time.monotonic()
        os.write(driver, bytes(8))  # a request: 8 bytes = 8.3 ms
        assert len(read_exactly(device, 8)[0]) == 8
        os.write(device, bytes(8))  # the reply at once: the line must first be silent 3.65 ms
        data, arrivals = read_exactly(driver, 8)
        assert len(data) == 8
        assert arrivals[-1] - start >= 2 * link.wire_time_s(8) + link.frame_gap_s - 0.0005
        assert link.frame_gap_s == pytest.approx(3.5 * 10 / 9600)
    finally:
        os.close(driver)
        os.close(device)
        link.close()


def test_corruption_hook_sees_each_direction_and_can_rewrite_bytes(link: PtyLink) -> None:
    seen: list[tuple[str, bytes]] = []

    def record_and_flip(direction: str, data: bytes) -> bytes:
        seen.append((direction, data))
        return flip_one_bit(direction, data)  # type: ignore[arg-type]

    link.corrupt = record_and_flip
    driver, device = open_end(link.driver_path), open_end(link.device_path)
    try:
        os.write(driver, b"\x01\x02\x03")
        assert read_exactly(device, 3)[0] == b"\x01\x02\x03"  # requests pass untouched
        os.write(device, b"\x01\x02\x03")
        assert read_exactly(driver, 3)[0] == b"\x01\x12\x03"  # replies get a bit flipped
    finally:
        os.close(driver)
        os.close(device)
    assert [d for d, _ in seen] == ["to_device", "to_driver"]


def test_pty_link_close_is_idempotent_and_stops_its_threads() -> None:
    link = PtyLink(baudrate=1200)
    driver = open_end(link.driver_path)
    os.write(driver, bytes(200))  # the relay is busy pacing these out when we close
    os.close(driver)
    started = time.monotonic()
    link.close()
    link.close()
    assert time.monotonic() - started < 0.5
    assert not [t for t in threading.enumerate() if t.name.startswith("sim-pty-")]


@pytest.fixture
async def tcp_sim() -> AsyncIterator[tuple[SimMeter, AsyncModbusTcpClient]]:
    sim = SimMeter("sdm630", energy_wh=5000.0)
    host, port = await sim.start_tcp()
    client = AsyncModbusTcpClient(host, port=port, timeout=0.3, retries=0, reconnect_delay=0)
    await client.connect()
    yield sim, client
    client.close()
    await sim.stop()
    # one turn for tasks cancelled at teardown to unwind; whatever still runs after it leaked
    await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_sim_refuses_reading_more_registers_than_the_model_allows() -> None:
    # Two blocks of 4 registers side by side: all addresses exist, but like an Eastron meter
    # beyond 80 registers, this model answers exception 03 to a read of more than 4.
    rmap = parse_register_map(
        {
            "name": "small meter",
            "function_code": 4,
            "max_registers_per_request": 4,
            "quantities": [
                {"name": "energy_import_wh", "address": 0, "type": "int64"},
                {"name": "power_total_w", "address": 4, "type": "int64"},
            ],
        },
        model="custom",
        where="test",
    )
    sim = SimMeter(rmap)
    host, port = await sim.start_tcp()
    client = AsyncModbusTcpClient(host, port=port, timeout=0.3, retries=0, reconnect_delay=0)
    try:
        await client.connect()
        assert not (await client.read_input_registers(4, count=4, device_id=1)).isError()
        too_many = await client.read_input_registers(0, count=8, device_id=1)
        assert too_many.isError() and too_many.exception_code == 3
        unmapped = await client.read_input_registers(6, count=4, device_id=1)
        assert unmapped.isError() and unmapped.exception_code == 2
    finally:
        client.close()
        await sim.stop()


async def test_sim_answers_the_wrong_function_code_with_illegal_function(
    tcp_sim: tuple[SimMeter, AsyncModbusTcpClient],
) -> None:
    _, client = tcp_sim
    response = await client.read_holding_registers(0x48, count=2, device_id=1)  # SDM630 is FC04
    assert response.isError() and response.exception_code == 1


async def test_sim_serves_energy_as_the_register_map_encodes_it(
    tcp_sim: tuple[SimMeter, AsyncModbusTcpClient],
) -> None:
    sim, client = tcp_sim
    sim.add_energy_wh(1500.0)
    response = await client.read_input_registers(0x48, count=2, device_id=1)
    value = client.convert_from_registers(response.registers, client.DATATYPE.FLOAT32)
    assert value == pytest.approx(6.5)  # kWh on the wire
    assert sim.energy_wh == 6500.0


async def test_exception_fault_answers_every_read_with_device_failure(
    tcp_sim: tuple[SimMeter, AsyncModbusTcpClient],
) -> None:
    sim, client = tcp_sim
    sim.set_fault("exception")
    response = await client.read_input_registers(0, count=2, device_id=1)
    assert response.isError() and response.exception_code == 4
    sim.set_fault(None)
    assert not (await client.read_input_registers(0, count=2, device_id=1)).isError()


async def test_garbage_fault_over_tcp_turns_every_register_to_all_ones(
    tcp_sim: tuple[SimMeter, AsyncModbusTcpClient],
) -> None:
    sim, client = tcp_sim
    sim.set_fault("garbage")
    response = await client.read_input_registers(0x48, count=4, device_id=1)
    assert response.registers == [0xFFFF] * 4


def test_sim_energy_only_counts_up_and_faults_have_names() -> None:
    sim = SimMeter("sdm630")
    with pytest.raises(ValueError, match="only counts up"):
        sim.add_energy_wh(-1.0)
    with pytest.raises(ValueError):
        sim.energy_wh = float("nan")
    with pytest.raises(ValueError, match="unknown meter fault"):
        sim.set_fault("smoke")  # type: ignore[arg-type]


def test_measurements_that_do_not_fit_leave_the_registers_unchanged() -> None:
    sim = SimMeter("abb_b23")
    sim.set_measurements((230.0, 230.0, 230.0), (10.0, 10.0, 10.0), (2300.0, 2300.0, 2300.0))
    with pytest.raises(ValueError, match="frequency_hz"):
        sim.set_measurements((231.0, 231.0, 231.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 700.0)
    q = sim.register_map.quantity("voltage_l1_v")
    assert q is not None
    assert sim.register_map.decode(q, [sim._image[q.address], sim._image[q.address + 1]]) == 230.0


async def test_energy_survives_a_restart_and_both_transports_serve_the_same_meter() -> None:
    sim = SimMeter("em340", energy_wh=100_000.0)
    host, port = await sim.start_tcp()
    await sim.stop()
    sim.add_energy_wh(200.0)
    host, port = await sim.start_tcp(port=port)
    path = await sim.start_rtu()
    tcp = AsyncModbusTcpClient(host, port=port, timeout=0.3, retries=0, reconnect_delay=0)
    rtu = AsyncModbusSerialClient(path, timeout=0.3, retries=0, reconnect_delay=0)
    try:
        assert await tcp.connect() and await rtu.connect()
        over_tcp = await tcp.read_input_registers(0x34, count=2, device_id=1)
        over_rtu = await rtu.read_input_registers(0x34, count=2, device_id=1)
        assert over_tcp.registers == over_rtu.registers == [1002, 0]  # 100.2 kWh, low word first
    finally:
        tcp.close()
        rtu.close()
        await sim.stop()
        await sim.stop()
    assert sim.request_count == 2
