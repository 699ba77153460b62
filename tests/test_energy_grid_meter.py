"""The grid meter role (issue 16): a supported meter at the house connection, read over
Modbus TCP or RTU by the real driver from the simulated meter server, or readings pushed by
another edge; signed currents (export negative) and readings that stop are noticed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.energy.fuse import GridSample, Site, is_fresh
from controller.energy.grid import GridFeed
from controller.energy.grid_meter import build_meter, parse_role, poll
from drivers.errors import ConfigurationError
from hw_sim.meter_server import SimMeter
from tests.support.tasks import in_background
from tests.support.wait import until

GRID_MODELS = ["sdm630", "sdm72d_v2", "em24", "sunspec_203"]
FAST: dict[str, Any] = {"timeout_s": 0.2, "retries": 0, "backoff_s": 0.01, "backoff_max_s": 0.02}
VOLTAGE = (231.0, 229.5, 230.2)
# The house imports on L1 and L3; PV exports 12.5 A on L2 (the meter shows a magnitude).
CURRENT = (17.25, 12.5, 3.75)
POWER = (3984.75, -2868.75, 863.25)


@contextlib.asynccontextmanager
async def polled(sim: SimMeter, section: dict[str, Any]) -> AsyncIterator[GridFeed]:
    """The grid meter driver polling ``sim`` every 0.2 s into a feed."""
    role = parse_role(section)
    assert role.meter is not None
    feed = GridFeed()
    try:
        async with in_background(poll(build_meter(role.meter), feed, role.interval_s)):
            yield feed
    finally:
        await sim.stop()


@pytest.mark.parametrize("model", GRID_MODELS)
async def test_a_grid_meter_over_modbus_tcp_gives_signed_currents_per_phase(model: str) -> None:
    sim = SimMeter(model, unit_id=2, energy_wh=5_000_000.0)
    sim.set_measurements(VOLTAGE, CURRENT, POWER)
    host, port = await sim.start_tcp()
    section = {"model": model, "transport": "tcp", "host": host, "port": port, "unit_id": 2}
    async with polled(sim, {**section, **FAST, "interval_s": 0.2}) as feed:
        await until(lambda: feed.latest is not None, what="a grid sample")
        sample = feed.latest
        assert sample is not None
        assert sample.current_a == pytest.approx((17.25, -12.5, 3.75), abs=0.001)


async def test_a_grid_meter_on_rtu_with_its_own_unit_id_is_read() -> None:
    sim = SimMeter("sdm72d_v2", unit_id=3, energy_wh=1000.0)
    sim.set_measurements(VOLTAGE, CURRENT, POWER)
    path = await sim.start_rtu()
    section = {"model": "sdm72d_v2", "serial_port": path, "unit_id": 3, "interval_s": 0.2}
    async with polled(sim, {**section, **FAST}) as feed:
        await until(lambda: feed.samples >= 2, what="two grid samples")
        assert feed.latest is not None
        assert feed.latest.current_a == pytest.approx((17.25, -12.5, 3.75))


async def test_a_silent_grid_meter_stops_the_samples_and_they_go_stale_then_recover() -> None:
    site = Site(fuse_a=25.0, max_age_s=1.0)
    sim = SimMeter("sdm630", energy_wh=1000.0)
    sim.set_measurements(VOLTAGE, CURRENT, POWER)
    host, port = await sim.start_tcp()
    section = {"model": "sdm630", "transport": "tcp", "host": host, "port": port}
    async with polled(sim, {**section, **FAST, "interval_s": 0.2}) as feed:
        await until(lambda: feed.latest is not None, what="a grid sample")
        sim.set_fault("offline")
        await until(
            lambda: not is_fresh(site, feed.latest, time.monotonic()),
            timeout_s=5.0,
            what="the grid sample to go stale",
        )
        sim.set_fault("garbage")  # garbled replies are no readings either
        await asyncio.sleep(0.5)
        assert not is_fresh(site, feed.latest, time.monotonic())
        sim.set_fault(None)
        await until(
            lambda: is_fresh(site, feed.latest, time.monotonic()),
            timeout_s=5.0,
            what="fresh grid samples again",
        )


def test_pushed_readings_are_checked_and_timed_by_the_feed() -> None:
    now = [10.0]
    feed = GridFeed(clock=lambda: now[0])
    sample = feed.push([12.0, -3.5, None])
    assert sample.current_a == (12.0, -3.5, None) and sample.taken_at == 10.0
    for bad in ([1.0, 2.0], [1.0, float("nan"), 2.0], [1.0, float("inf"), 2.0]):
        with pytest.raises(ValueError):
            feed.push(bad)
    assert feed.latest is sample  # a refused push changed nothing


def test_an_older_sample_never_replaces_a_newer_one() -> None:
    now = [10.0]
    feed = GridFeed(clock=lambda: now[0])
    newer = feed.push([5.0, 5.0, 5.0])
    feed.push_sample(GridSample((30.0, 30.0, 30.0), 9.0))
    assert feed.latest is newer


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"source": "modbus-tcp"}, "grid_meter.source"),
        ({"interval_s": 0.01}, "grid_meter.interval_s"),
        ({"interval_s": "1"}, "grid_meter.interval_s"),
        ({"source": "push", "model": "sdm630"}, "grid_meter.model"),
        ({"model": "nope"}, "grid_meter.model"),
        ({"transport": "tcp"}, "grid_meter.host"),
        ({"unit_id": 300}, "grid_meter.unit_id"),
        ({"typo": 1}, "grid_meter.typo"),
    ],
)
def test_a_bad_grid_meter_table_is_refused_naming_the_key(
    section: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_role(section)
    assert caught.value.key == key


def test_a_pushed_grid_meter_needs_no_modbus_keys() -> None:
    role = parse_role({"source": "push"})
    assert role.source == "push" and role.meter is None
