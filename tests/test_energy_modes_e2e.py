"""Charging modes end to end (issue 16): the whole controller on the simulated house, the
grid meter read over Modbus by the real driver from the simulated meter server, the mode's
limit reaching the PWM the car reads, changed from the page's API and kept across a
restart. The delays are seconds here (the simulation runs x30): the rules are the same."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from controller.connector_types import ConnectorStatus
from controller.energy.modes import Mode
from controller.limits import LimitSource
from tests.support.energy import QUICK_SOLAR
from tests.support.mqtt_broker import Broker, watching
from tests.support.standalone import CARD, running
from tests.support.wait import until
from tests.support.web import WebRig, web_charger

SITE = {"fuse_a": 40.0, "margin_a": 1.0, "grid_max_age_s": 2.0}
GRID_METER = {"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0}
ENERGY = QUICK_SOLAR
PHASE_W = 230.0  # one ampere on one phase


async def session_in_the_dark(rig: WebRig) -> None:
    """Logged in to the page, no load and no PV in the house, a car plugged in and the
    card tapped: a session opens, and what it gets is the mode's affair."""
    await rig.login()
    await rig.charger.act("house", load_w=0.0, pv_w=0.0)
    await rig.charger.act("plug")
    await rig.charger.act("tap", uid=CARD)


async def test_solar_charges_from_the_surplus_only_and_pauses_when_it_goes(
    tmp_path: Path,
) -> None:
    sections = {"site": SITE, "grid_meter": GRID_METER, "energy": ENERGY}
    async with web_charger(tmp_path, **sections) as rig:
        charger = rig.charger
        await session_in_the_dark(rig)
        # No sun: the session is open, the car held paused by the mode, the contactor open.
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="paused")
        assert charger.hw("offered_current_a") == 0.0
        assert not charger.hw("contactor_closed")

        # The sun: 10 A exported on every phase. The car starts after the start delay and
        # takes the surplus, no more: the house then draws next to nothing from the grid.
        sunny = time.monotonic()
        await charger.act("house", pv_w=3 * 10 * PHASE_W)
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
        assert time.monotonic() - sunny >= ENERGY["start_delay_s"]
        await until(lambda: 9.5 <= charger.hw("offered_current_a") <= 10.0, what="10 A offered")
        await until(lambda: charger.hw("ev_current_a") >= 9.5, what="the car taking 10 A")
        house = (await charger.act("status"))["house"]
        assert max(house["grid_current_a"]) < 0.6, house  # no import for the car

        status, body = await rig.call("GET", "/api/v1/status")
        assert status == 200
        connector = body["connectors"][0]
        assert "mode" in connector["limited_by"]
        assert connector["state_text"] == "Charging, limited by the charging mode"
        energy = body["energy"]
        assert energy["grid_fresh"] and energy["connectors"][0]["mode"] == "solar"
        assert 9.0 <= energy["connectors"][0]["surplus_a"] <= 10.6

        # A cloud: no surplus. The car goes on at 6 A through the stop delay (and the
        # minimum run), then is paused and the contactor opens.
        cloudy = time.monotonic()
        await charger.act("house", pv_w=0.0)
        await until(lambda: charger.hw("offered_current_a") == 6.0, what="down to 6 A")
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="paused")
        assert time.monotonic() - cloudy >= ENERGY["stop_delay_s"]
        await until(lambda: not charger.hw("contactor_closed"), what="the contactor open")

        # The owner wants the car full now: fast, from the page's API.
        status, body = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "fast"})
        assert status == 200 and body["connectors"][0]["mode"] == "fast"
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging fast")
        await until(lambda: charger.hw("offered_current_a") == 32.0, what="the connector's 32 A")

        status, body = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "schedule"})
        assert status == 409  # no [energy] off_peak or departure configured
        status, body = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "eco"})
        assert status == 400 and body["field"] == "mode"

    # A restart keeps the owner's choice, not the configuration's.
    async with web_charger(tmp_path, **sections) as rig:
        energy = rig.charger.app.energy
        assert energy is not None and energy.modes is not None
        assert energy.modes.modes[1] is Mode.FAST


async def test_min_solar_charges_at_6_a_without_sun_and_follows_the_surplus(
    tmp_path: Path,
) -> None:
    sections = {
        "site": SITE,
        "grid_meter": GRID_METER,
        "energy": {**ENERGY, "mode": "min_solar"},
    }
    async with web_charger(tmp_path, **sections) as rig:
        charger = rig.charger
        await charger.act("house", load_w=0.0, pv_w=0.0)
        await charger.act("plug")
        await charger.act("tap", uid=CARD)
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
        await until(lambda: charger.hw("offered_current_a") == 6.0, what="6 A without sun")
        await charger.act("house", pv_w=3 * 14 * PHASE_W)  # 14 A a phase with the car's 6
        await until(lambda: charger.hw("offered_current_a") >= 13.0, what="the surplus")
        assert charger.hw("offered_current_a") <= 14.0


async def test_mqtt_shows_the_grid_and_the_mode_and_home_assistant_selects_the_mode(
    tmp_path: Path, broker: Broker
) -> None:
    sections = {
        "site": SITE,
        "grid_meter": GRID_METER,
        "energy": ENERGY,
        "chargepoint": {"id": "garage"},
        "mqtt": {"url": broker.url()},
    }
    prefix = "picharge/garage"
    async with running(tmp_path, **sections) as charger:
        await charger.act("house", load_w=3 * 2 * PHASE_W, pv_w=0.0)
        async with watching(broker) as watcher:
            select = "homeassistant/select/garage/connector1_mode/config"
            await watcher.value(select)
            config = watcher.json(select)
            assert config["options"] == ["fast", "solar", "min_solar", "schedule"]
            assert config["command_topic"] == f"{prefix}/connector/1/set/mode"
            grid_power = "homeassistant/sensor/garage/grid_power_w/config"
            await watcher.value(grid_power)  # discovery goes out one message at a time
            assert watcher.json(grid_power)["unit_of_measurement"] == "W"
            await watcher.becomes(f"{prefix}/connector/1/mode", "solar")
            async with watching(broker, f"{prefix}/connector/1/mode") as late:
                await late.becomes(f"{prefix}/connector/1/mode", "solar")
                assert late.retained[f"{prefix}/connector/1/mode"]  # Home Assistant later
            await watcher.becomes(f"{prefix}/energy/grid_current_l1_a", "2.00")
            await watcher.becomes(f"{prefix}/energy/grid_power_w", "1380")

            await watcher.client.publish(f"{prefix}/connector/1/set/mode", "min_solar")
            await watcher.becomes(f"{prefix}/connector/1/mode", "min_solar")
            energy = charger.app.energy
            assert energy is not None and energy.modes is not None
            assert energy.modes.modes[1] is Mode.MIN_SOLAR
            await watcher.client.publish(f"{prefix}/connector/1/set/mode", "turbo")
            await until(lambda: charger.app.mqtt.commands_rejected == 1, what="turbo refused")
            assert energy.modes.modes[1] is Mode.MIN_SOLAR


async def test_schedule_holds_the_car_outside_the_off_peak_hours(tmp_path: Path) -> None:
    now = dt.datetime.now()
    later = [(now + dt.timedelta(hours=h)).strftime("%H:%M") for h in (2, 3)]
    sections = {
        "site": SITE,
        "grid_meter": GRID_METER,
        "energy": {"mode": "schedule", "off_peak": "-".join(later)},
    }
    async with web_charger(tmp_path, **sections) as rig:
        charger = rig.charger
        await session_in_the_dark(rig)
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="paused")
        assert LimitSource.MODE in charger.supervisor.snapshot().connector(1).limited_by
        assert not charger.hw("contactor_closed")
        # Tonight's tariff is not worth the wait today: fast now.
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "fast"})
        assert status == 200
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
