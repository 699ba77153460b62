"""The Modbus meter driver against the simulated meter: a real pymodbus client and server.

Every bundled model is read over Modbus TCP and over RTU on a pty link; faults on the wire
(silence, garbage, exception responses, implausible counts) become retry events, then one
offline fault, and the driver comes back online when the meter does. Timeouts and backoffs
are shortened so the whole file runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.base import DriverEvent, MeterReading
from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.meter import ModbusMeter, from_config
from drivers.register_map import DataType, Quantity, RegisterMap, available_models
from drivers.seams import HardwareSeams
from hw_sim.meter_server import SimMeter

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

MODELS = available_models()

# Short timeouts and backoffs: a fault test costs a fraction of a second.
FAST: dict[str, Any] = {
    "timeout_s": 0.25,
    "retries": 2,
    "backoff_s": 0.01,
    "backoff_max_s": 0.02,
    "min_request_gap_s": 0.0,
}
FAULTY = {**FAST, "timeout_s": 0.05}

VOLTAGE = (229.7, 231.4, 228.1)
CURRENT = (15.42, 14.87, 16.03)
POWER = (3541.3, 3410.9, 3655.7)
FREQUENCY = 49.97
ENERGY_WH = 1_234_567.0


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
async def no_stray_tasks() -> AsyncIterator[None]:
    """No pymodbus task (reconnect, request handler) outlives the test."""
    yield
    # one turn for tasks cancelled at teardown to unwind; whatever still runs after it leaked
    await asyncio.sleep(0.01)
    stray = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not stray, f"tasks left running: {stray}"


class Events(list[DriverEvent]):
    """An EventSink that keeps what it hears."""

    def kinds(self) -> list[str]:
        return [e.kind for e in self]


@asynccontextmanager
async def tcp_meter(
    model_or_map: str | RegisterMap = "sdm630", sim: SimMeter | None = None, **config: Any
) -> AsyncIterator[tuple[SimMeter, ModbusMeter, Events]]:
    """A SimMeter on TCP and a driver configured to read it; both closed afterwards."""
    sim = sim or SimMeter(model_or_map, energy_wh=ENERGY_WH)
    sim.set_measurements(VOLTAGE, CURRENT, POWER, FREQUENCY)
    host, port = await sim.start_tcp()
    events = Events()
    section = {**FAST, "transport": "tcp", "host": host, "port": port, **config}
    if isinstance(model_or_map, str):
        section["model"] = model_or_map
    meter = from_config(section, HardwareSeams(), events.append)
    try:
        yield sim, meter, events
    finally:
        await meter.close()
        await sim.stop()


@asynccontextmanager
async def rtu_meter(
    model: str = "sdm630", baudrate: int | None = None, **config: Any
) -> AsyncIterator[tuple[SimMeter, ModbusMeter, Events]]:
    """A SimMeter on a pty link and a driver reading the other end of it."""
    sim = SimMeter(model, energy_wh=ENERGY_WH)
    sim.set_measurements(VOLTAGE, CURRENT, POWER, FREQUENCY)
    path = await sim.start_rtu(baudrate=baudrate)
    events = Events()
    # A pty refuses parity settings: the link is 8N1 whatever the model's default.
    meter = from_config(
        {**FAST, "model": model, "transport": "rtu", "serial_port": path, "parity": "N", **config},
        HardwareSeams(),
        events.append,
    )
    try:
        yield sim, meter, events
    finally:
        await meter.close()
        await sim.stop()


def expected(q: Quantity) -> float:
    phase = int(q.name[q.name.index("_l") + 2]) - 1 if "_l" in q.name else 0
    kind = q.name.split("_")[0]
    if q.name == "power_total_w":
        return sum(POWER)
    return {
        "voltage": VOLTAGE[phase],
        "current": CURRENT[phase],
        "power": POWER[phase],
        "frequency": FREQUENCY,
        "energy": ENERGY_WH,
    }[kind]


def within_wire_precision(q: Quantity, got: float | None, want: float) -> bool:
    if got is None:
        return False
    if q.data_type is DataType.FLOAT32:
        return abs(got - want) <= abs(want) * 1e-6 + 1e-6
    if q.name == "energy_import_wh":  # counters round down
        return 0.0 <= want - got < q.resolution * 1.0001
    return abs(got - want) <= q.resolution / 2 * 1.0001


def field_of(reading: MeterReading, name: str) -> float | None:
    phase = {"l1": 0, "l2": 1, "l3": 2}
    for prefix, triple in (
        ("voltage", reading.voltage_v),
        ("current", reading.current_a),
        ("power", reading.power_w),
    ):
        for p, index in phase.items():
            if name.startswith(f"{prefix}_{p}_"):
                return triple[index]
    return {
        "power_total_w": reading.total_power_w,
        "energy_import_wh": reading.energy_import_wh,
        "frequency_hz": reading.frequency_hz,
    }.get(name)


def assert_reading_matches_map(rmap: RegisterMap, reading: MeterReading) -> None:
    for q in rmap.quantities:
        if q.name == "energy_export_wh":
            continue  # not part of MeterReading
        got = field_of(reading, q.name)
        assert within_wire_precision(q, got, expected(q)), (q.name, got, expected(q))
    names = {q.name for q in rmap.quantities}
    for name in ("voltage", "current", "power"):
        for phase in (1, 2, 3):
            unit = {"voltage": "v", "current": "a", "power": "w"}[name]
            key = f"{name}_l{phase}_{unit}"
            if key not in names:
                assert field_of(reading, key) is None, key


# ------------------------------------------------------------------------ happy paths


@pytest.mark.parametrize("model", MODELS)
async def test_driver_reads_what_the_meter_measures_over_tcp_in_the_planned_requests(
    model: str,
) -> None:
    async with tcp_meter(model) as (sim, meter, events):
        reading = await meter.read()
        assert_reading_matches_map(meter.register_map, reading)
        assert sim.request_count == meter.requests_per_read == len(meter.register_map.plan())
        fc = meter.register_map.function_code
        assert list(sim.request_log) == [
            (fc, b.address, b.count) for b in meter.register_map.plan()
        ]
        await meter.read()
        assert sim.request_count == 2 * meter.requests_per_read
        assert events == []
        assert reading.taken_at <= time.monotonic()


@pytest.mark.parametrize("model", MODELS)
async def test_driver_reads_the_same_values_over_rtu_on_a_pty(model: str) -> None:
    async with rtu_meter(model) as (sim, meter, events):
        reading = await meter.read()
        assert_reading_matches_map(meter.register_map, reading)
        assert sim.request_count == meter.requests_per_read
        assert events == []


async def test_single_phase_meter_reports_total_power_from_its_one_phase() -> None:
    async with tcp_meter("sdm120") as (_, meter, _events):
        reading = await meter.read()
        assert reading.total_power_w == pytest.approx(POWER[0], rel=1e-6)
        assert reading.voltage_v[1] is None and reading.current_a[2] is None


async def test_energy_counted_by_the_sim_shows_up_in_the_next_reading() -> None:
    async with tcp_meter("sdm630") as (sim, meter, _events):
        first = await meter.read()
        sim.add_energy_wh(250.0)
        second = await meter.read()
        assert second.energy_import_wh - first.energy_import_wh == pytest.approx(250.0, abs=0.2)


async def test_abb_not_available_phase_reads_as_none_through_the_whole_stack() -> None:
    async with tcp_meter("abb_b23") as (sim, meter, events):
        sim.set_measurements((230.0, None, None), (10.0, None, None), (2300.0, None, None))
        reading = await meter.read()
        assert reading.voltage_v == (230.0, None, None)
        assert reading.power_w == (2300.0, None, None)
        assert events == []


async def test_model_request_gap_is_kept_between_requests() -> None:
    # ABB B23 needs two requests; with a 60 ms gap one read cannot take less than that.
    async with tcp_meter("abb_b23", min_request_gap_s=0.06) as (sim, meter, _events):
        start = time.monotonic()
        await meter.read()
        assert time.monotonic() - start >= 0.06
        assert sim.request_count == 2


def test_eastron_gap_comes_from_the_model_file_unless_configured() -> None:
    meter = from_config({"model": "sdm630"}, HardwareSeams())
    assert meter.settings.min_request_gap_s == 0.1
    meter = from_config({"model": "sdm630", "min_request_gap_s": 0}, HardwareSeams())
    assert meter.settings.min_request_gap_s == 0.0


def test_link_defaults_come_from_the_model_file() -> None:
    orno = from_config({"model": "orno_we516"}, HardwareSeams()).settings
    assert (orno.baudrate, orno.parity, orno.stopbits, orno.unit_id) == (9600, "E", 1, 1)
    sdm120 = from_config({"model": "sdm120", "baudrate": 9600}, HardwareSeams()).settings
    assert sdm120.baudrate == 9600
    assert from_config({"model": "sdm120"}, HardwareSeams()).settings.baudrate == 2400


# ------------------------------------------------------------------------ unhappy paths


async def test_silent_meter_gives_retry_events_then_one_offline_fault_then_comes_back() -> None:
    async with tcp_meter("sdm630", **FAULTY) as (sim, meter, events):
        await meter.read()
        sim.set_fault("offline")
        with pytest.raises(PermanentFault) as caught:
            await meter.read()
        assert caught.value.kind is FaultKind.METER_OFFLINE
        assert events.kinds() == ["retry", "retry", "offline"]
        assert all("no reply" in e.detail for e in events)
        assert events[-1].fault is FaultKind.METER_OFFLINE
        assert all(e.fault is None and e.device == "meter" for e in events[:2])
        assert not meter.online

        # Still offline: one quick attempt, the fault again, no new events.
        with pytest.raises(PermanentFault):
            await meter.read()
        assert len(events) == 3

        sim.set_fault(None)
        reading = await meter.read()
        assert reading.energy_import_wh == pytest.approx(ENERGY_WH, rel=1e-6)
        assert events.kinds()[-1] == "online" and events[-1].fault is None
        assert meter.online


@pytest.mark.parametrize("model", MODELS)
async def test_garbage_over_tcp_is_implausible_and_never_handed_out(model: str) -> None:
    async with tcp_meter(model, **FAULTY) as (sim, meter, events):
        sim.set_fault("garbage")  # every register 0xFFFF: NaN, -1 or "not available"
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds() == ["retry", "retry", "offline"]
        assert all("implausible" in e.detail or "not available" in e.detail for e in events), events
        sim.set_fault(None)
        assert_reading_matches_map(meter.register_map, await meter.read())
        assert events.kinds()[-1] == "online"


async def test_garbled_rtu_replies_are_named_crc_errors_and_retried() -> None:
    async with rtu_meter("sdm630", **FAULTY) as (sim, meter, events):
        await meter.read()
        sim.set_fault("garbage")  # the pty link flips a bit in every reply
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds() == ["retry", "retry", "offline"]
        assert all("bad CRC" in e.detail for e in events)
        sim.set_fault(None)
        await meter.read()
        assert events.kinds()[-1] == "online"


async def test_one_corrupted_reply_costs_a_retry_not_a_fault() -> None:
    async with rtu_meter("sdm630") as (sim, meter, events):
        link = sim.rtu_link
        assert link is not None
        spoiled: list[int] = []

        def spoil_first_reply(direction: str, data: bytes) -> bytes:
            if direction == "to_driver" and not spoiled:
                spoiled.append(len(data))
                return bytes([data[0] ^ 0xFF]) + data[1:]
            return data

        link.corrupt = spoil_first_reply
        reading = await meter.read()
        assert reading.energy_import_wh == pytest.approx(ENERGY_WH, rel=1e-6)
        assert events.kinds() == ["retry"]
        assert meter.online


async def test_modbus_exception_responses_are_retried_then_reported_offline() -> None:
    async with tcp_meter("abb_b23", **FAULTY) as (sim, meter, events):
        sim.set_fault("exception")
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds() == ["retry", "retry", "offline"]
        assert "Modbus exception 4 (device failure)" in events[0].detail
        sim.set_fault(None)
        await meter.read()
        assert events.kinds()[-1] == "online"


async def test_import_energy_going_backwards_is_implausible() -> None:
    async with tcp_meter("sdm630", **FAULTY) as (sim, meter, events):
        await meter.read()
        sim.energy_wh = ENERGY_WH - 1000.0  # a swapped or reset meter
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds() == ["retry", "retry", "offline"]
        assert "went backwards" in events[0].detail
        # Offline forgets the old count: the meter is accepted with its new one.
        reading = await meter.read()
        assert reading.energy_import_wh == pytest.approx(ENERGY_WH - 1000.0, rel=1e-6)
        assert events.kinds()[-1] == "online"


async def test_driver_reconnects_after_the_tcp_server_disappears_and_comes_back() -> None:
    sim = SimMeter("sdm630", energy_wh=ENERGY_WH)
    async with tcp_meter("sdm630", sim=sim, **FAULTY) as (_, meter, events):
        await meter.read()
        port = meter.settings.port
        await sim.stop()
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds()[-1] == "offline"
        assert any("cannot connect" in e.detail for e in events)
        sim.add_energy_wh(10.0)
        assert await sim.start_tcp(port=port) == ("127.0.0.1", port)
        reading = await meter.read()
        assert reading.energy_import_wh == pytest.approx(ENERGY_WH + 10.0, rel=1e-6)
        assert events.kinds()[-1] == "online"


async def test_meter_on_another_unit_id_is_silence_not_an_answer() -> None:
    async with tcp_meter("sdm630", unit_id=2, **FAULTY) as (sim, meter, events):
        with pytest.raises(PermanentFault):
            await meter.read()
        assert sim.request_count == 3  # heard, never answered
        assert events.kinds() == ["retry", "retry", "offline"]


async def test_missing_serial_port_is_an_offline_meter_not_a_crash(tmp_path: Any) -> None:
    events = Events()
    meter = from_config(
        {**FAULTY, "transport": "rtu", "serial_port": str(tmp_path / "ttyUSB9")},
        HardwareSeams(),
        events.append,
    )
    with pytest.raises(PermanentFault):
        await meter.read()
    await meter.close()
    assert events.kinds() == ["retry", "retry", "offline"]
    assert "cannot connect" in events[-1].detail


async def test_port_that_refuses_its_settings_is_an_offline_meter_not_a_crash() -> None:
    # Linux refuses parity on a pty (tcsetattr EINVAL) and pyserial lets termios.error out.
    async with rtu_meter("orno_we516", **{**FAULTY, "parity": "E"}) as (_, meter, events):
        with pytest.raises(PermanentFault):
            await meter.read()
        assert events.kinds() == ["retry", "retry", "offline"]
        assert "cannot open the port" in events[-1].detail


async def test_concurrent_reads_take_turns_on_the_line() -> None:
    # ABB B23 needs two requests per read; two callers must not interleave them.
    async with tcp_meter("abb_b23", min_request_gap_s=0.01) as (sim, meter, events):
        first, second = await asyncio.gather(meter.read(), meter.read())
        plan = [(3, b.address, b.count) for b in meter.register_map.plan()]
        assert list(sim.request_log) == plan + plan
        assert first.taken_at < second.taken_at
        assert events == []


async def test_the_loop_keeps_running_while_the_meter_times_out() -> None:
    # Timeouts of 0.2 s: anything blocking the loop for one would show as a 0.2 s gap.
    async with tcp_meter("sdm630", **{**FAULTY, "timeout_s": 0.2}) as (sim, meter, _events):
        sim.set_fault("offline")
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.monotonic()
            while True:
                # a 5 ms ticker: its gaps measure how long the loop was blocked
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        with pytest.raises(PermanentFault):
            await meter.read()
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)
        assert len(gaps) > 50
        assert max(gaps) < 0.1


async def test_close_is_idempotent_and_a_later_read_connects_again() -> None:
    async with tcp_meter("sdm630") as (_, meter, events):
        await meter.read()
        await meter.close()
        await meter.close()
        await meter.read()
        assert events == []


# ---------------------------------------------------------------------- configuration


async def test_custom_map_from_config_reads_a_meter_serving_that_map() -> None:
    section = {
        "model": "custom",
        "map": {
            "name": "Workshop meter",
            "function_code": 3,
            "max_registers_per_request": 16,
            "link": {"unit_id": 5},
            "quantities": [
                {"name": "power_total_w", "address": 100, "type": "int32", "scale": 0.1},
                {"name": "voltage_l1_v", "address": 102, "type": "uint16", "scale": 0.1},
                {
                    "name": "energy_import_wh",
                    "address": 130,
                    "type": "uint32",
                    "word_order": "little",
                    "unit": "kWh",
                    "scale": 0.01,
                },
            ],
        },
    }
    rmap = from_config(section, HardwareSeams()).register_map
    assert rmap.model == "custom" and len(rmap.plan()) == 2
    sim = SimMeter(rmap, energy_wh=ENERGY_WH)
    assert sim.unit_id == 5
    async with tcp_meter(rmap, sim=sim, **section) as (_, meter, events):
        reading = await meter.read()
        assert reading.total_power_w == pytest.approx(sum(POWER), abs=0.05)
        assert reading.voltage_v == (pytest.approx(VOLTAGE[0], abs=0.05), None, None)
        assert reading.energy_import_wh == pytest.approx(ENERGY_WH, abs=10.0)
        assert sim.request_count == 2
        assert events == []


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"model": "sdm999"}, "meter.model"),
        ({"model": 630}, "meter.model"),
        ({"model": "custom"}, "meter.map"),
        ({"model": "sdm630", "map": {}}, "meter.map"),
        ({"model": "custom", "map": {"name": "x", "function_code": 4}}, "meter.map.quantities"),
        ({"transport": "usb"}, "meter.transport"),
        ({"transport": "tcp"}, "meter.host"),
        ({"transport": "tcp", "host": "10.0.0.5", "port": 0}, "meter.port"),
        ({"transport": "tcp", "host": "10.0.0.5", "port": "502"}, "meter.port"),
        ({"serial_port": ""}, "meter.serial_port"),
        ({"baudrate": 12}, "meter.baudrate"),
        ({"baudrate": 9600.0}, "meter.baudrate"),
        ({"parity": "even"}, "meter.parity"),
        ({"stopbits": 0}, "meter.stopbits"),
        ({"bytesize": 9}, "meter.bytesize"),
        ({"unit_id": 248}, "meter.unit_id"),
        ({"unit_id": True}, "meter.unit_id"),
        ({"timeout_s": 0}, "meter.timeout_s"),
        ({"timeout_s": "1s"}, "meter.timeout_s"),
        ({"retries": -1}, "meter.retries"),
        ({"backoff_s": -0.1}, "meter.backoff_s"),
        ({"backoff_s": 1.0, "backoff_max_s": 0.5}, "meter.backoff_max_s"),
        ({"min_request_gap_s": -0.1}, "meter.min_request_gap_s"),
        ({"baud_rate": 9600}, "meter.baud_rate"),
    ],
)
def test_bad_configuration_is_refused_naming_the_key(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config(section, HardwareSeams())
    assert caught.value.key == key


def test_defaults_are_an_sdm630_on_the_pi_uart() -> None:
    settings = from_config({}, HardwareSeams()).settings
    assert settings.transport == "rtu" and settings.serial_port == "/dev/serial0"
    assert (settings.baudrate, settings.parity, settings.stopbits, settings.bytesize) == (
        9600,
        "N",
        1,
        8,
    )
    assert settings.timeout_s == 1.0 and settings.retries == 3


async def test_a_read_cancelled_as_its_reply_arrives_is_still_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside pymodbus) can return the reply and drop a
    cancellation that lands in the same loop iteration; the meter's polling task must end
    anyway, or the supervisor's shutdown (which opens the contactors) waits for ever."""
    in_window = asyncio.Event()
    read = AsyncModbusTcpClient.read_input_registers

    async def read_then_swallow(self: AsyncModbusTcpClient, *args: Any, **kwargs: Any) -> Any:
        response = await read(self, *args, **kwargs)
        in_window.set()
        # what wait_for does on 3.11 when the reply and the cancellation arrive together
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        return response

    async with tcp_meter() as (_, meter, _):
        await meter.read()  # connected, so the next read's first request is the one caught
        monkeypatch.setattr(AsyncModbusTcpClient, "read_input_registers", read_then_swallow)
        task = asyncio.create_task(meter.read())
        await in_window.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
