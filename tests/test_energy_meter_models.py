"""Grid meter models at the house connection (issue 16), each read by the real driver from
the simulated house's meter speaking that model's wire format: the Eastron SDM630 v2 and
SDM72D-M v2 (and the EM24 and SunSpec maps) over Modbus, with per-phase currents and power
signed by direction and import and export energy counted apart; and a Shelly Pro 3EM over
its local HTTP API (Gen2 RPC ``EM.GetStatus``), polled with a timeout, its silence or
nonsense leaving the samples to go stale, and recovering."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.config import ConfigError, parse_config
from controller.energy.fuse import Site, is_fresh
from controller.energy.grid import GridFeed, sample_from_meter
from controller.energy.grid_meter import build_meter, parse_role
from controller.energy.shelly import poll_shelly
from drivers.errors import ConfigurationError
from hw_sim.house import NOMINAL_VOLTAGE_V, SimHouse
from hw_sim.shelly import SimShellyPro3EM
from tests.support.tasks import in_background
from tests.support.wait import until

FAST: dict[str, Any] = {"timeout_s": 0.3, "retries": 0, "backoff_s": 0.01, "backoff_max_s": 0.02}
# A sunny noon: the house takes 1.5 kW, the PV gives 9 kW, the car draws 16 A on L1 only.
LOAD_W, PV_W, CAR_A = 1500.0, 9000.0, (16.0, 0.0, 0.0)
HOUR_S = 3600.0


def expected_phase_w() -> tuple[float, float, float]:
    """What the grid meter sees per phase: the house evenly, the car on L1."""
    share = (LOAD_W - PV_W) / 3
    return (share + CAR_A[0] * NOMINAL_VOLTAGE_V, share, share)


@contextlib.asynccontextmanager
async def house_with(section: dict[str, Any]) -> AsyncIterator[tuple[SimHouse, dict[str, Any]]]:
    house = SimHouse(section, phases=3)
    house.set(LOAD_W, PV_W)
    settings = await house.start()
    try:
        yield house, settings
    finally:
        await house.stop()


@pytest.mark.parametrize("model", ["sdm630", "sdm72d_v2", "em24", "sunspec_203"])
async def test_a_grid_meter_model_gives_signed_phase_power_and_counts_import_and_export(
    model: str,
) -> None:
    async with house_with({"model": model, "transport": "tcp"}) as (house, settings):
        house.step([CAR_A], HOUR_S)  # one simulated hour at noon
        meter = build_meter({"model": model, **settings, **FAST})
        try:
            reading = await meter.read()
        finally:
            await meter.close()
    phase_w = expected_phase_w()  # L1 imports 1180 W, L2 and L3 export 2500 W each
    assert reading.power_w == pytest.approx(phase_w, abs=0.5)
    assert reading.current_a == pytest.approx(
        [abs(w) / NOMINAL_VOLTAGE_V for w in phase_w], abs=0.01
    )
    sample = sample_from_meter(reading)
    assert sample.current_a == pytest.approx([w / NOMINAL_VOLTAGE_V for w in phase_w], abs=0.01)
    assert sample.current_a[1] < 0 < sample.current_a[0]
    # An hour: 1180 Wh imported on L1, 5000 Wh exported on L2 and L3 (to the meter's resolution:
    # 0.1 kWh on the EM24, float32 kWh on the Eastrons).
    assert reading.energy_import_wh == pytest.approx(phase_w[0], abs=100.0)
    assert reading.energy_export_wh == pytest.approx(-phase_w[1] - phase_w[2], abs=100.0)


@contextlib.asynccontextmanager
async def shelly_polled(
    house: SimHouse, settings: dict[str, Any], **keys: Any
) -> AsyncIterator[GridFeed]:
    role = parse_role({"source": "shelly", **settings, "interval_s": 0.2, **keys})
    assert role.shelly is not None
    feed = GridFeed()
    async with in_background(poll_shelly(role.shelly, feed, role.interval_s)):
        yield feed


async def test_a_shelly_pro_3em_is_polled_over_http_with_currents_signed_by_its_power() -> None:
    async with house_with({"source": "shelly"}) as (house, settings):
        house.step([CAR_A], 1.0)
        async with shelly_polled(house, settings, timeout_s=0.3) as feed:
            await until(lambda: feed.samples >= 2, what="two samples from the Shelly")
            assert feed.latest is not None
            want = [w / NOMINAL_VOLTAGE_V for w in expected_phase_w()]
            assert feed.latest.current_a == pytest.approx(want, abs=0.01)
            assert house.grid_current_a == pytest.approx(want, abs=0.001)


async def test_the_simulated_shelly_answers_like_the_device_documents() -> None:
    shelly = SimShellyPro3EM()
    shelly.set_measurements((230.0, 231.0, 229.0), (10.0, 5.0, 2.0), (2300.0, -1155.0, 458.0))
    shelly.add_energy_wh(1234.5)
    shelly.add_export_wh(678.9)
    host, port = await shelly.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/rpc/EM.GetStatus?id=0") as r:
                em = await r.json()
            async with session.get(f"http://{host}:{port}/rpc/EMData.GetStatus?id=0") as r:
                data = await r.json()
            async with session.get(f"http://{host}:{port}/rpc/EM.GetStatus?id=1") as r:
                assert r.status == 404  # a Pro 3EM has one EM component
    finally:
        await shelly.stop()
    assert (em["a_current"], em["b_act_power"], em["c_voltage"]) == (10.0, -1155.0, 229.0)
    assert em["total_act_power"] == pytest.approx(1603.0)
    assert (data["total_act"], data["total_act_ret"]) == (1234.5, 678.9)


@pytest.mark.parametrize("fault", ["offline", "garbage", "exception"])
async def test_a_shelly_that_stops_answering_sensibly_goes_stale_and_recovers(fault: str) -> None:
    site = Site(fuse_a=25.0, max_age_s=0.8)
    async with house_with({"source": "shelly"}) as (house, settings):
        house.step([CAR_A], 1.0)
        async with shelly_polled(house, settings, timeout_s=0.3) as feed:
            await until(lambda: feed.latest is not None, what="a first sample")
            house.meter.set_fault(fault)  # type: ignore[arg-type]
            await until(
                lambda: not is_fresh(site, feed.latest, time.monotonic()),
                what="the Shelly's samples going stale",
            )
            stale = feed.samples
            house.meter.set_fault(None)
            await until(lambda: feed.samples > stale, what="samples again")
            assert is_fresh(site, feed.latest, time.monotonic())


@pytest.mark.parametrize(
    ("grid_meter", "key"),
    [
        ({"source": "shelly"}, "grid_meter.host"),
        ({"source": "shelly", "host": "192.0.2.9", "port": 0}, "grid_meter.port"),
        ({"source": "shelly", "host": "192.0.2.9", "em_id": -1}, "grid_meter.em_id"),
        ({"source": "shelly", "host": "192.0.2.9", "timeout_s": 60}, "grid_meter.timeout_s"),
        ({"source": "shelly", "host": "192.0.2.9", "unit_id": 2}, "grid_meter.unit_id"),
        ({"source": "shelly", "host": "192.0.2.9", "hots": "x"}, "grid_meter.hots"),
    ],
)
def test_a_bad_shelly_key_is_refused_naming_it(grid_meter: dict[str, Any], key: str) -> None:
    doc = {"site": {"fuse_a": 35}, "grid_meter": grid_meter}
    with pytest.raises((ConfigError, ConfigurationError)) as caught:
        parse_role(parse_config(doc).grid_meter)
    assert caught.value.key == key
