"""Each connector's thresholds changed at run time (issue 16), through the real entry points:
the page's API on the whole controller (simulated house, the grid meter read over Modbus),
MQTT against the real mosquitto, and a restart with the same state directory.

The mode runner's delays are wall-clock seconds (only the car and the meters run x30), so
a start delay of an hour holds a car paused for the whole test, and a change to a second
lets it start: that is how the tests see a change reach the running mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.connector_types import ConnectorStatus
from tests.support.energy import QUICK_SOLAR
from tests.support.mqtt_broker import Broker, watching
from tests.support.standalone import CARD, running
from tests.support.wait import until
from tests.support.web import web_charger

SITE = {"fuse_a": 40.0, "margin_a": 1.0, "grid_max_age_s": 2.0}
GRID_METER = {"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0}
HOUR_S = 3600.0
PHASE_W = 230.0  # one ampere on one phase


def sections(energy: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"site": SITE, "grid_meter": GRID_METER, "energy": energy, **more}


async def test_a_start_delay_changed_from_the_api_lets_a_waiting_car_start_and_persists(
    tmp_path: Path,
) -> None:
    configured = sections({**QUICK_SOLAR, "start_delay_s": HOUR_S, "off_peak": "22:00-06:00"})
    async with web_charger(tmp_path, **configured) as rig:
        charger = rig.charger
        # Not logged in: the thresholds are the owner's, as the mode is.
        status, _ = await rig.call("GET", "/api/v1/connectors/1/thresholds")
        assert status == 401
        await rig.login()
        status, body = await rig.call("GET", "/api/v1/connectors/1/thresholds")
        assert status == 200
        assert body["mode"] == "solar"
        assert body["thresholds"]["start_delay_s"] == HOUR_S
        assert body["threshold_sources"]["start_delay_s"] == "energy"
        assert body["threshold_sources"]["min_pause_s"] == "energy"
        assert body["thresholds"]["departure"] == "" and body["thresholds"]["energy_kwh"] is None

        # The sun shines, the car is plugged in and the card tapped: an hour's start delay
        # holds it paused.
        await charger.act("house", load_w=0.0, pv_w=3 * 10 * PHASE_W)
        await charger.act("plug")
        await charger.act("tap", uid=CARD)
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="paused")

        # Bad input: 400 naming the field, and nothing changes.
        for bad, field in (
            ({"start_delay_s": 0.5, "stop_delay_s": -1}, "stop_delay_s"),
            ({"off_peak": "late"}, "off_peak"),
            ({"departure": "07:00"}, "energy_kwh"),
            ({"start_delay": 1}, "start_delay"),
            ({"min_run_s": "5 min"}, "min_run_s"),
            ({}, "body"),
        ):
            status, body = await rig.call("PUT", "/api/v1/connectors/1/thresholds", bad)
            assert status == 400 and body["field"] == field, (bad, body)
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/thresholds", {}, csrf=False)
        assert status == 403
        status, _ = await rig.call("PUT", "/api/v1/connectors/9/thresholds", {"settle_s": 1})
        assert status == 404
        assert charger.status() is ConnectorStatus.SUSPENDED_EVSE

        # Half a second instead of an hour: the waiting car starts, without a restart.
        status, body = await rig.call(
            "PUT", "/api/v1/connectors/1/thresholds", {"start_delay_s": 0.5, "off_peak": ""}
        )
        assert status == 200
        assert body["thresholds"]["start_delay_s"] == 0.5 and body["thresholds"]["off_peak"] == ""
        assert body["threshold_sources"]["start_delay_s"] == "run_time"
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, what="charging")
        status, body = await rig.call("GET", "/api/v1/status")
        assert body["energy"]["connectors"][0]["thresholds"]["start_delay_s"] == 0.5

    # A restart keeps the run-time changes; a key never changed at run time follows the
    # configuration, edited meanwhile.
    edited = sections({**configured["energy"], "min_pause_s": 7.0, "start_delay_s": 9.0})
    async with web_charger(tmp_path, **edited) as rig:
        await rig.login()
        status, body = await rig.call("GET", "/api/v1/connectors/1/thresholds")
        assert status == 200
        assert body["thresholds"]["start_delay_s"] == 0.5  # run time > [energy]
        assert body["thresholds"]["off_peak"] == ""
        assert body["thresholds"]["min_pause_s"] == 7.0  # the edited [energy]
        # null: back to the configuration, also after the next restart.
        status, body = await rig.call(
            "PUT", "/api/v1/connectors/1/thresholds", {"start_delay_s": None}
        )
        assert status == 200 and body["thresholds"]["start_delay_s"] == 9.0
        assert body["threshold_sources"]["start_delay_s"] == "energy"
    async with web_charger(tmp_path, **edited) as rig:
        await rig.login()
        _, body = await rig.call("GET", "/api/v1/connectors/1/thresholds")
        assert body["thresholds"]["start_delay_s"] == 9.0
        assert body["thresholds"]["off_peak"] == ""


async def test_without_energy_management_the_thresholds_are_a_conflict(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        status, body = await rig.call("GET", "/api/v1/connectors/1/thresholds")
        assert status == 409 and "[site]" in body["error"]
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/thresholds", {"settle_s": 1})
        assert status == 409


async def test_home_assistant_sees_and_sets_each_connectors_thresholds_over_mqtt(
    tmp_path: Path, broker: Broker
) -> None:
    """Two connectors, the second with its own start delay from ``[connector.energy]``: each
    threshold is a retained state topic and a Home Assistant entity; a command changes one
    connector's only, a bad one is refused, ``reset`` gives back the configured value."""
    configured = sections(
        {**QUICK_SOLAR, "start_delay_s": HOUR_S},
        chargepoint={"id": "garage"},
        mqtt={"url": broker.url()},
        connector=[{}, {"energy": {"start_delay_s": 120}}],
    )
    prefix = "picharge/garage"
    async with (
        running(tmp_path, sim_connectors=2, **configured) as charger,
        watching(broker) as watcher,
    ):
        number = "homeassistant/number/garage/connector2_start_delay_s/config"
        await watcher.value(number)
        config = watcher.json(number)
        assert config["command_topic"] == f"{prefix}/connector/2/set/start_delay_s"
        assert config["state_topic"] == f"{prefix}/connector/2/start_delay_s"
        assert (config["unit_of_measurement"], config["entity_category"]) == ("s", "config")
        text = "homeassistant/text/garage/connector1_off_peak/config"
        await watcher.value(text)
        assert watcher.json(text)["command_topic"] == f"{prefix}/connector/1/set/off_peak"

        await watcher.becomes(f"{prefix}/connector/1/start_delay_s", "3600")
        await watcher.becomes(f"{prefix}/connector/2/start_delay_s", "120")
        await watcher.becomes(f"{prefix}/connector/2/min_run_s", "3")
        await watcher.becomes(f"{prefix}/connector/2/off_peak", "none")
        async with watching(broker, f"{prefix}/connector/2/start_delay_s") as late:
            await late.becomes(f"{prefix}/connector/2/start_delay_s", "120")
            assert late.retained[f"{prefix}/connector/2/start_delay_s"]

        await watcher.client.publish(f"{prefix}/connector/2/set/start_delay_s", "45")
        await watcher.client.publish(f"{prefix}/connector/2/set/off_peak", "23:00-05:30")
        await watcher.becomes(f"{prefix}/connector/2/start_delay_s", "45")
        await watcher.becomes(f"{prefix}/connector/2/off_peak", "23:00-05:30")
        energy = charger.app.energy
        assert energy is not None and energy.modes is not None
        thresholds = energy.modes.thresholds
        assert thresholds[2].timing.start_delay_s == 45.0
        assert thresholds[1].timing.start_delay_s == HOUR_S  # the other one unchanged

        await watcher.client.publish(f"{prefix}/connector/2/set/stop_delay_s", "-3")
        await watcher.client.publish(f"{prefix}/connector/2/set/departure", "25:00")
        await until(lambda: charger.app.mqtt.commands_rejected == 2, what="both refused")
        assert thresholds[2].timing.stop_delay_s == QUICK_SOLAR["stop_delay_s"]

        await watcher.client.publish(f"{prefix}/connector/2/set/start_delay_s", "reset")
        await watcher.becomes(f"{prefix}/connector/2/start_delay_s", "120")
        assert thresholds[2].sources["start_delay_s"] == "connector"
