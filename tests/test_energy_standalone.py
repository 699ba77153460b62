"""The charging modes of a standalone charger without a grid meter (issue 16): a hobbyist
with only ``[energy]`` plans by the clock (off-peak hours, or a departure time with an
energy target) and the connector's own meter; the modes that follow the solar surplus need
a grid meter and are refused wherever they are chosen, so no connector waits for ever for
a surplus that nothing measures. The whole controller on simulated hardware (x30)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pytest

from controller.connector_types import ConnectorStatus
from controller.energy.modes import Mode
from controller.limits import LimitSource
from tests.support.energy import refused_at_start
from tests.support.mqtt_broker import Broker, watching
from tests.support.standalone import CARD, Charger, running
from tests.support.wait import until
from tests.support.web import web_charger


def clock_in(minutes: float) -> str:
    """The local time of day ``minutes`` from now, as the configuration writes it."""
    return (dt.datetime.now() + dt.timedelta(minutes=minutes)).strftime("%H:%M")


def session_wh(charger: Charger) -> float:
    tx = charger.supervisor.view(1).transaction
    assert tx is not None
    return float(charger.hw("energy_wh")) - tx.meter_start_wh


async def plug_and_tap(charger: Charger) -> None:
    await charger.act("plug")
    await charger.act("tap", uid=CARD)


async def test_a_departure_plan_charges_to_its_target_and_stops_without_a_grid_meter(
    tmp_path: Path,
) -> None:
    # 0.4 kWh by departure in two minutes: at the connector's 16 A on three phases (11 kW)
    # that is 2.7 minutes with the plan's margin, so it starts at once, and stops once the
    # session holds the target.
    energy = {"mode": "schedule", "departure": clock_in(2), "energy_kwh": 0.4}
    async with running(tmp_path, energy=energy, connector=[{"max_current_a": 16}]) as charger:
        await plug_and_tap(charger)
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
        await until(lambda: charger.hw("offered_current_a") == 16.0, what="full current")
        await until(
            lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE,
            what="paused at the target",
        )
        assert LimitSource.MODE in charger.supervisor.snapshot().connector(1).limited_by
        await until(lambda: not charger.hw("contactor_closed"), what="the contactor open")
        # The target, and not much more: the meter is read every second (~90 Wh at x30).
        assert 400.0 <= session_wh(charger) <= 700.0
        assert charger.supervisor.view(1).transaction is not None  # the session goes on


async def test_a_departure_far_off_waits_and_solar_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    energy = {"mode": "schedule", "departure": clock_in(180), "energy_kwh": 1.0}
    async with web_charger(tmp_path, energy=energy) as rig:
        charger = rig.charger
        await rig.login()
        await plug_and_tap(charger)
        # Three hours to go for 1 kWh: the car waits, held by the mode, the contactor open.
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="waiting")
        assert charger.hw("offered_current_a") == 0.0 and not charger.hw("contactor_closed")

        status, body = await rig.call("GET", "/api/v1/status")
        assert status == 200
        picture = body["energy"]
        assert picture["grid_meter"] is False and picture["grid_fresh"] is False
        assert picture["modes"] == ["fast", "schedule"]  # what the page offers
        assert picture["connectors"][0]["mode"] == "schedule"
        assert picture["connectors"][0]["surplus_w"] is None

        for solar in ("solar", "min_solar"):
            status, body = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": solar})
            assert status == 409, body
            assert "needs a grid meter" in body["error"]
        assert charger.app.energy.modes.modes[1] is Mode.SCHEDULE  # unchanged
        assert charger.status() is ConnectorStatus.SUSPENDED_EVSE

        # The owner needs the car now: fast, no grid meter needed.
        status, body = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "fast"})
        assert status == 200 and body["connectors"][0]["mode"] == "fast"
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
        await until(lambda: charger.hw("offered_current_a") == 32.0, what="full current")


async def test_a_solar_mode_chosen_with_a_grid_meter_is_not_restored_without_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = {
        "site": {"fuse_a": 40.0, "grid_max_age_s": 2.0},
        "grid_meter": {"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0},
    }
    async with web_charger(tmp_path, energy={"mode": "fast"}, **site) as rig:
        await rig.login()
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/mode", {"mode": "solar"})
        assert status == 200  # kept in the state database
    # The grid meter is gone from the configuration: solar would hold the car for ever.
    energy = {"mode": "schedule", "off_peak": f"{clock_in(0)}-{clock_in(120)}"}
    with caplog.at_level(logging.WARNING, logger="controller.energy.mode_runner"):
        async with running(tmp_path, energy=energy) as charger:
            modes = charger.app.energy.modes
            assert modes.modes[1] is Mode.SCHEDULE
            assert "the stored charging mode solar is not possible now" in caplog.text
            # In the off-peak window: it charges.
            await plug_and_tap(charger)
            await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")


async def test_mqtt_offers_the_standalone_modes_and_refuses_solar(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = "picharge/garage"
    energy = {"mode": "schedule", "off_peak": f"{clock_in(120)}-{clock_in(180)}"}
    sections: dict[str, Any] = {
        "chargepoint": {"id": "garage"},
        "mqtt": {"url": broker.url()},
        "energy": energy,
    }
    async with running(tmp_path, **sections) as charger, watching(broker) as watcher:
        select = "homeassistant/select/garage/connector1_mode/config"
        await watcher.value(select)
        assert watcher.json(select)["options"] == ["fast", "schedule"]
        await watcher.becomes(f"{prefix}/connector/1/mode", "schedule")
        # no grid meter: no surplus and no grid entities for Home Assistant
        assert not [t for t in watcher.last if "surplus" in t or "/grid_" in t]

        bridge = charger.app.mqtt
        with caplog.at_level(logging.WARNING, logger="controller.mqtt.bridge"):
            await watcher.client.publish(f"{prefix}/connector/1/set/mode", "solar")
            await until(lambda: bridge.commands_applied == 1, what="the command taken")
        assert "charging mode solar on connector 1 refused" in caplog.text
        assert "needs a grid meter" in caplog.text
        assert charger.app.energy.modes.modes[1] is Mode.SCHEDULE
        await watcher.client.publish(f"{prefix}/connector/1/set/mode", "fast")
        await watcher.becomes(f"{prefix}/connector/1/mode", "fast")


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"energy": {"mode": "solar"}}, "energy.mode"),
        ({"energy": {"mode": "min_solar"}}, "energy.mode"),
        ({"connector": [{"mode": "solar"}]}, "connector.1.mode"),
        ({"energy": {"mode": "schedule"}}, "energy.off_peak"),
        ({"grid_meter": {"source": "push"}}, "grid_meter"),
        ({"grid_meter": {"source": "push"}, "energy": {"mode": "fast"}}, "grid_meter"),
    ],
)
async def test_a_mode_that_needs_a_grid_meter_stops_the_start_naming_the_key(
    tmp_path: Path, doc: dict[str, Any], key: str
) -> None:
    refused = await refused_at_start(tmp_path, doc)
    assert refused.key == key
    if key.endswith("mode"):
        assert "needs a grid meter" in refused.problem


async def test_without_energy_or_site_there_are_no_modes(tmp_path: Path) -> None:
    async with running(tmp_path) as charger:
        assert charger.app.energy is None
    async with running(tmp_path, connector=[{"mode": "fast"}]) as charger:
        assert charger.app.energy is not None and charger.app.energy.manager is None
        assert charger.app.energy.modes.modes[1] is Mode.FAST
