"""Home Assistant MQTT discovery: the charger as one device, each connector's topics as
entities. Pure: it builds (topic, JSON payload) pairs; the bridge publishes them retained.

Home Assistant reads ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``. The
``device_class``, ``state_class`` and unit decide how it stores and plots a value: the
energy register is ``total_increasing`` in Wh (the Energy dashboard takes it), power and
currents are ``measurement``. The user's current limit is a ``number`` entity (0 A to the
connector's maximum; below 6 A pauses the car), enabled a ``switch``. With local energy
management, each connector's charging mode is a ``select``, its surplus a power sensor and
the thresholds of its modes configuration entities (``number`` for the delays and the
energy target, ``text`` for the off-peak hours and the departure time), and the charger has
the grid's power and current per phase. Every entity goes unavailable
with the charger (the availability topic, ``offline`` as the last will).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.connector_types import ConnectorStatus
from controller.mqtt.topics import OFFLINE, ONLINE, Topics, node_id


@dataclass(frozen=True, slots=True)
class Device:
    """What Home Assistant shows of the charger in its device registry."""

    chargepoint_id: str
    vendor: str
    model: str
    serial: str
    sw_version: str


@dataclass(frozen=True, slots=True)
class _Sensor:
    key: str
    name: str
    device_class: str | None
    state_class: str | None
    unit: str | None


_SENSORS = (
    _Sensor("status", "Status", "enum", None, None),
    _Sensor("fault", "Fault", None, None, None),
    _Sensor("power_w", "Power", "power", "measurement", "W"),
    _Sensor("current_l1_a", "Current L1", "current", "measurement", "A"),
    _Sensor("current_l2_a", "Current L2", "current", "measurement", "A"),
    _Sensor("current_l3_a", "Current L3", "current", "measurement", "A"),
    # A session's energy starts again from 0 with each session: total_increasing's reset.
    _Sensor("session_energy_wh", "Session energy", "energy", "total_increasing", "Wh"),
    _Sensor("energy_total_wh", "Energy meter", "energy", "total_increasing", "Wh"),
    _Sensor("limit_a", "Current limit in force", "current", "measurement", "A"),
    _Sensor("limited_by", "Limited by", None, None, None),
    # 1 or 3: the phases the connector supplies now (a phase switch changes them).
    _Sensor("phases", "Phases", None, "measurement", None),
)


#: A threshold's number entity: seconds, typed in a box (a slider to a day is unusable).
_DURATION = {
    "device_class": "duration",
    "unit_of_measurement": "s",
    "min": 0,
    "max": 86_400,
    "step": 1,
    "mode": "box",
}
#: Each threshold's entity (issue 16): (key, name, component, config); the charger checks
#: each value as it checks the configuration's, ``reset`` gives back the configured one.
_THRESHOLDS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("start_delay_s", "Solar start delay", "number", _DURATION),
    ("stop_delay_s", "Solar stop delay", "number", _DURATION),
    ("min_run_s", "Solar shortest run", "number", _DURATION),
    ("min_pause_s", "Solar shortest pause", "number", _DURATION),
    ("settle_s", "Solar settle time", "number", _DURATION),
    ("off_peak", "Off-peak hours", "text", {"min": 0, "max": 11}),
    ("departure", "Departure time", "text", {"min": 0, "max": 5}),
    (
        "energy_kwh",
        "Energy by departure",
        "number",
        {
            "device_class": "energy",
            "unit_of_measurement": "kWh",
            "min": 0.5,
            "max": 200,
            "step": 0.5,
            "mode": "box",
        },
    ),
)

#: The charger's grid entities: (key, name, device class, unit); import positive.
_GRID = (
    ("grid_power_w", "Grid power", "power", "W"),
    ("grid_current_l1_a", "Grid current L1", "current", "A"),
    ("grid_current_l2_a", "Grid current L2", "current", "A"),
    ("grid_current_l3_a", "Grid current L3", "current", "A"),
)


def _device(device: Device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "identifiers": [f"picharge_{node_id(device.chargepoint_id)}"],
        "name": f"picharge {device.chargepoint_id}",
        "manufacturer": device.vendor,
        "model": device.model,
        "sw_version": device.sw_version,
    }
    if device.serial:
        info["serial_number"] = device.serial
    return info


def discovery_messages(
    discovery_prefix: str,
    topics: Topics,
    device: Device,
    connectors: dict[int, float],
    modes: Sequence[str] | None = None,
    grid: bool = True,
) -> list[tuple[str, str]]:
    """(topic, JSON payload) of every entity; ``connectors`` maps id to maximum current;
    ``modes``: the charging modes to choose from (None: no local energy management);
    ``grid``: whether a grid meter measures the house (the surplus and grid sensors)."""
    node = node_id(device.chargepoint_id)
    common: dict[str, Any] = {
        "device": _device(device),
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
    }
    messages: list[tuple[str, str]] = []

    def add(component: str, connector_id: int, key: str, config: dict[str, Any]) -> None:
        add_entity(component, f"connector{connector_id}_{key}", config)

    def add_entity(component: str, object_id: str, config: dict[str, Any]) -> None:
        payload = {
            **config,
            **common,
            "unique_id": f"picharge_{node}_{object_id}",
            "object_id": f"picharge_{node}_{object_id}",
        }
        topic = f"{discovery_prefix}/{component}/{node}/{object_id}/config"
        messages.append((topic, json.dumps(payload, sort_keys=True)))

    for connector_id, max_current_a in sorted(connectors.items()):
        label = f"Connector {connector_id} " if len(connectors) > 1 else ""
        for sensor in _SENSORS:
            config: dict[str, Any] = {
                "name": label + sensor.name,
                "state_topic": topics.state(connector_id, sensor.key),
            }
            if sensor.device_class is not None:
                config["device_class"] = sensor.device_class
            if sensor.state_class is not None:
                config["state_class"] = sensor.state_class
            if sensor.unit is not None:
                config["unit_of_measurement"] = sensor.unit
            if sensor.key == "status":
                config["options"] = [str(s) for s in ConnectorStatus]
            add("sensor", connector_id, sensor.key, config)
        add(
            "number",
            connector_id,
            "current_limit",
            {
                "name": label + "Current limit",
                "state_topic": topics.state(connector_id, "user_limit_a"),
                "command_topic": topics.command(connector_id, "current_limit"),
                "device_class": "current",
                "unit_of_measurement": "A",
                "min": 0,
                "max": max_current_a,
                "step": 1,
                "mode": "slider",
            },
        )
        add(
            "switch",
            connector_id,
            "enabled",
            {
                "name": label + "Enabled",
                "state_topic": topics.state(connector_id, "enabled"),
                "command_topic": topics.command(connector_id, "enabled"),
                "payload_on": "ON",
                "payload_off": "OFF",
            },
        )
        if modes is not None:
            add(
                "select",
                connector_id,
                "mode",
                {
                    "name": label + "Charging mode",
                    "state_topic": topics.state(connector_id, "mode"),
                    "command_topic": topics.command(connector_id, "mode"),
                    "options": list(modes),
                },
            )
            for key, name, component, extra in _THRESHOLDS:
                add(
                    component,
                    connector_id,
                    key,
                    {
                        "name": label + name,
                        "state_topic": topics.state(connector_id, key),
                        "command_topic": topics.command(connector_id, key),
                        "entity_category": "config",
                        **extra,
                    },
                )
        if modes is not None and grid:
            add(
                "sensor",
                connector_id,
                "surplus_w",
                {
                    "name": label + "Solar surplus",
                    "state_topic": topics.state(connector_id, "surplus_w"),
                    "device_class": "power",
                    "state_class": "measurement",
                    "unit_of_measurement": "W",
                },
            )
    if modes is not None and grid:
        for key, name, device_class, unit in _GRID:
            add_entity(
                "sensor",
                key,
                {
                    "name": name,
                    "state_topic": topics.energy(key),
                    "device_class": device_class,
                    "state_class": "measurement",
                    "unit_of_measurement": unit,
                },
            )
    return messages
