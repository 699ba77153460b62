"""One RS-485 bus, two meters (issue 16): the charger's own meter and the grid meter, each
with its own unit id on the same serial port, share one line (one pymodbus client, one
request on the wire at a time) through the real drivers, against one simulated bus serving
both unit ids on one pseudo-terminal. A silent grid meter costs the charger's meter at most
one reply timeout per request and never faults it; settings that cannot share a bus are
refused at start, naming the key."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import textwrap
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.app import ChargePointApp, RunOptions
from controller.config import ConfigError, parse_config
from controller.connector_types import ConnectorStatus
from controller.energy.grid import GridFeed
from controller.energy.grid_meter import build_meter, parse_role, poll
from drivers import meter as meter_driver
from drivers.errors import ConfigurationError, PermanentFault
from drivers.meter import ModbusMeter
from drivers.seams import HardwareSeams
from hw_sim.meter_bus import SimMeterBus
from hw_sim.meter_server import SimMeter
from tests.support.standalone import running
from tests.support.tasks import in_background
from tests.support.wait import until
from tests.test_meter_mbpoll import compare_with_driver

# The same timeout on both: it is the line's reply timeout (drivers.modbus_line).
LINE: dict[str, Any] = {"parity": "N", "timeout_s": 0.3, "min_request_gap_s": 0.0}
CHARGER = {"model": "sdm630", "unit_id": 1, "retries": 1, "backoff_s": 0.05}
GRID = {"model": "em24", "unit_id": 2, "retries": 3, "backoff_s": 0.05, "backoff_max_s": 0.2}
CAR = ((230.1, 229.8, 230.4), (16.0, 16.1, 15.9), (3681.6, 3699.8, 3663.4))
HOUSE = ((231.0, 229.5, 230.2), (17.25, 12.5, 3.75), (3984.75, -2868.75, 863.25))


@contextlib.asynccontextmanager
async def one_bus(baudrate: int | None = None) -> AsyncIterator[tuple[SimMeterBus, str]]:
    """A simulated SDM630 (unit 1, the charger's) and EM24 (unit 2, the grid's) on one pty."""
    charger, grid = SimMeter("sdm630", unit_id=1, energy_wh=1234.0), SimMeter("em24", unit_id=2)
    charger.set_measurements(*CAR)
    grid.energy_wh = 5_000_000.0
    grid.set_measurements(*HOUSE)
    bus = SimMeterBus([charger, grid])
    path = await bus.start_rtu(baudrate)
    try:
        yield bus, path
    finally:
        await bus.stop()


def both_meters(path: str, seams: HardwareSeams) -> tuple[ModbusMeter, ModbusMeter]:
    """The charger's meter as hardware.py builds it and the grid meter as energy setup does."""
    charger = meter_driver.from_config({**CHARGER, **LINE, "serial_port": path}, seams)
    grid = build_meter({**GRID, **LINE, "serial_port": path}, seams=seams)
    assert isinstance(grid, ModbusMeter)
    return charger, grid


async def test_the_charger_meter_and_the_grid_meter_share_one_line_and_both_read_right() -> None:
    # At 9600 baud on the emulated wire two masters talking at once would garble each other.
    async with one_bus(baudrate=9600) as (bus, path):
        charger, grid = both_meters(path, HardwareSeams())
        try:
            assert charger.line is grid.line and charger.line.shared
            for _ in range(3):  # both poll at once, as the supervisor and the grid poller do
                car, house = await asyncio.gather(charger.read(), grid.read())
                assert car.current_a == pytest.approx(CAR[1], abs=1e-4)
                assert car.energy_import_wh == pytest.approx(1234.0, abs=0.1)
                assert house.current_a == pytest.approx(HOUSE[1], abs=1e-3)
                assert house.power_w == pytest.approx(HOUSE[2], abs=0.1)
            assert charger.online and grid.online
            # Every request reached its own unit, none garbled: no retry was needed.
            assert bus.meters[0].request_count == 3 * charger.requests_per_read
            assert bus.meters[1].request_count == 3 * grid.requests_per_read
        finally:
            await charger.close()
            await grid.close()


@pytest.mark.timing
async def test_a_silent_grid_meter_does_not_fault_the_charger_meter_or_break_its_cadence() -> None:
    cadence_s = 0.25
    async with one_bus() as (bus, path):
        charger, grid = both_meters(path, HardwareSeams())
        feed = GridFeed()
        read_at: list[float] = []
        try:
            async with in_background(poll(grid, feed, interval_s=0.2)):
                await until(lambda: feed.samples >= 2, what="grid samples while it answers")
                bus.meters[1].set_fault("offline")  # the grid meter's unit falls silent
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline:  # the supervisor's loop: read, then wait
                    await charger.read()  # raises PermanentFault if the charger's meter faulted
                    read_at.append(time.monotonic())
                    await asyncio.sleep(cadence_s)
                assert not grid.online  # the grid meter did go offline meanwhile
                samples = feed.samples
                assert charger.online
                # Waiting for the line costs at most the one grid request in flight (its
                # 0.3 s reply timeout); 0.25 s of slack is for a loaded machine.
                gaps = [b - a for a, b in itertools.pairwise(read_at)]
                assert max(gaps) <= cadence_s + LINE["timeout_s"] + 0.25, gaps
                bus.meters[1].set_fault(None)
                await until(lambda: feed.samples > samples, what="the grid meter back")
        finally:
            await charger.close()


async def test_the_charger_meter_still_fails_when_its_own_unit_is_silent() -> None:
    async with one_bus() as (bus, path):
        charger, grid = both_meters(path, HardwareSeams())
        try:
            bus.meters[0].set_fault("offline")
            with pytest.raises(PermanentFault):
                await charger.read()
            house = await grid.read()  # the other unit on the bus still answers
            assert house.current_a == pytest.approx(HOUSE[1], abs=1e-3)
        finally:
            await charger.close()
            await grid.close()


@pytest.mark.parametrize(
    ("grid_keys", "key"),
    [
        ({"baudrate": 19200}, "grid_meter.baudrate"),
        ({"parity": "E"}, "grid_meter.parity"),
        ({"stopbits": 2}, "grid_meter.stopbits"),
        ({"timeout_s": 0.5}, "grid_meter.timeout_s"),
        ({"unit_id": 1}, "grid_meter.unit_id"),
    ],
)
def test_settings_that_cannot_share_one_bus_are_refused_naming_the_key(
    grid_keys: dict[str, Any], key: str
) -> None:
    seams = HardwareSeams()
    meter_driver.from_config({**CHARGER, **LINE, "serial_port": "/dev/ttyUSB0"}, seams)
    with pytest.raises(ConfigurationError) as refused:
        build_meter({**GRID, **LINE, "serial_port": "/dev/ttyUSB0", **grid_keys}, seams=seams)
    assert refused.value.key == key
    assert "/dev/ttyUSB0" in refused.value.problem


def test_meters_on_different_ports_or_over_tcp_get_lines_of_their_own() -> None:
    seams = HardwareSeams()
    charger = meter_driver.from_config({**CHARGER, "serial_port": "/dev/ttyUSB0"}, seams)
    other_port = build_meter(
        {**GRID, "serial_port": "/dev/ttyUSB1", "baudrate": 19200}, seams=seams
    )
    tcp = build_meter({**GRID, "transport": "tcp", "host": "192.0.2.7", "unit_id": 1}, seams=seams)
    assert isinstance(other_port, ModbusMeter) and isinstance(tcp, ModbusMeter)
    assert len({id(charger.line), id(other_port.line), id(tcp.line)}) == 3
    assert not charger.line.shared


async def test_mbpoll_as_an_independent_master_reads_both_units_on_the_bus() -> None:
    async with one_bus() as (bus, path):
        charger, grid = both_meters(path, HardwareSeams())
        try:
            car, house = await asyncio.gather(charger.read(), grid.read())
        finally:
            await charger.close()  # one master on the line at a time
            await grid.close()
        link = ["-m", "rtu", "-b", "9600", "-P", "none", path]
        assert await compare_with_driver(bus.meters[0], link, car) == 12
        assert await compare_with_driver(bus.meters[1], link, house) == 12


# --- the whole controller: [meter] and [grid_meter] naming the same port ---------------------

BUS_PORT = "/dev/ttyUSB0"  # the simulation serves both unit ids on one pty in its place
E2E_LINE = {"transport": "rtu", "serial_port": BUS_PORT, "timeout_s": 0.3}
E2E_SITE = {"fuse_a": 25.0, "margin_a": 1.0, "fallback_current_a": 6.0, "grid_max_age_s": 2.0}
E2E_GRID = {**E2E_LINE, "model": "em24", "unit_id": 2, "interval_s": 0.2, "retries": 0}
PHASE_W = 230.0


async def test_the_controller_reads_both_meters_on_one_bus_and_survives_a_silent_grid_meter(
    tmp_path: Path,
) -> None:
    async with running(
        tmp_path, meter={**E2E_LINE, "unit_id": 1}, site=E2E_SITE, grid_meter=E2E_GRID
    ) as charger:
        line = charger.app.hardware.connectors[0].meter.line
        assert line.unit_ids == {1, 2} and line.settings.port == charger.hw("meter_modbus")
        await charger.charging()  # the charger's meter reads through the shared line
        # The grid meter's unit steers the offer: the house's 15 A per phase leaves 9 A.
        await charger.act("house", load_w=3 * 15 * PHASE_W, pv_w=0.0)
        await until(lambda: 8.5 < charger.hw("offered_current_a") <= 9.0, what="9 A offered")

        # The grid meter's unit falls silent: the fuse falls back to 6 A, while the charger's
        # meter on the same wires goes on being read (its energy keeps coming) unfaulted.
        await charger.act("house", meter_fault="offline")
        await until(lambda: charger.hw("offered_current_a") == 6.0, what="the 6 A fallback")
        reading = charger.supervisor.connectors[1].reading
        await until(
            lambda: charger.supervisor.connectors[1].reading.taken_at > reading.taken_at + 1.0,
            what="the charger's meter still read",
        )
        assert charger.fault() is None
        assert charger.status() is ConnectorStatus.CHARGING
        await charger.act("house", meter_fault="none")
        await until(lambda: 8.5 < charger.hw("offered_current_a") <= 9.0, what="9 A again")


async def test_a_grid_meter_with_the_charger_meters_unit_id_on_its_bus_is_refused(
    tmp_path: Path,
) -> None:
    doc = {
        "meter": {**E2E_LINE, "unit_id": 1},
        "site": E2E_SITE,
        "grid_meter": {**E2E_GRID, "unit_id": 1},
    }
    config = dataclasses.replace(parse_config(doc), state_dir=tmp_path)
    app = ChargePointApp(config, RunOptions(sim=True))
    try:
        with pytest.raises(ConfigError) as refused:
            await app.start()
    finally:
        await app.close()
    assert refused.value.key == "grid_meter.unit_id"
    assert BUS_PORT in refused.value.problem


def test_the_install_guides_example_puts_both_meters_on_one_line() -> None:
    guide = (Path(__file__).parent.parent / "docs" / "install.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", guide, flags=re.DOTALL)
    example = next(b for b in blocks if "on the same two wires" in b)
    doc = tomllib.loads(textwrap.dedent(example))
    seams = HardwareSeams()
    charger = meter_driver.from_config(doc["meter"], seams)
    role = parse_role(doc["grid_meter"])
    assert role.meter is not None
    grid = build_meter(role.meter, seams=seams)
    assert isinstance(grid, ModbusMeter)
    assert charger.line is grid.line and charger.line.unit_ids == {1, 2}
