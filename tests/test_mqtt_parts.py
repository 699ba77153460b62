"""The parts of the MQTT bridge that need no broker: the [mqtt] configuration, command
payloads, the energy register guard and the topic names."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from controller.config import ConfigError, parse_config
from controller.connector_types import ConnectorStatus
from controller.limits import FixedBound, LimitSource
from controller.mqtt.commands import BadCommand, SetCurrentLimit, SetEnabled, parse_command
from controller.mqtt.state import EnergyFloor, connector_state
from controller.mqtt.topics import Topics, default_prefix
from controller.status_snapshot import ConnectorSnapshot, MeterSnapshot

MAXIMA = {1: 32.0, 2: 16.0}


def test_no_url_means_no_mqtt() -> None:
    assert parse_config({}).mqtt is None
    assert parse_config({"mqtt": {"topic_prefix": "x"}}).mqtt is None


def test_the_url_gives_host_port_and_credentials() -> None:
    mqtt = parse_config({"mqtt": {"url": "mqtt://ha:p%40ss@broker.lan"}}).mqtt
    assert mqtt is not None
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("broker.lan", 1883, False)
    assert (mqtt.username, mqtt.password) == ("ha", "p@ss")
    assert (mqtt.topic_prefix, mqtt.discovery_prefix) == ("", "homeassistant")
    tls = parse_config({"mqtt": {"url": "mqtts://broker.lan", "discovery_prefix": ""}}).mqtt
    assert tls is not None and (tls.port, tls.tls, tls.username) == (8883, True, None)
    assert tls.discovery_prefix == ""  # discovery off


def test_the_password_stays_out_of_repr_logs_and_errors() -> None:
    config = parse_config({"mqtt": {"url": "mqtt://ha:hunter2-secret@broker:1884"}})
    assert config.mqtt is not None
    assert "hunter2-secret" not in repr(config)
    assert config.mqtt.safe_url() == "mqtt://ha:***@broker:1884"
    with pytest.raises(ConfigError) as caught:
        parse_config({"mqtt": {"url": "http://ha:hunter2-secret@broker"}})
    assert "hunter2-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"url": "tcp://broker"}, "mqtt.url"),
        ({"url": "mqtt://"}, "mqtt.url"),
        ({"url": "mqtt://broker:99999"}, "mqtt.url"),
        ({"url": "mqtt://broker/topic"}, "mqtt.url"),
        ({"url": "mqtt://broker", "ca_file": "/etc/ca.pem"}, "mqtt.ca_file"),
        ({"url": "mqtts://broker", "ca_file": "/no/such/ca.pem"}, "mqtt.ca_file"),
        ({"url": "mqtt://broker", "topic_prefix": "home/#"}, "mqtt.topic_prefix"),
        ({"url": "mqtt://broker", "topic_prefix": "home/"}, "mqtt.topic_prefix"),
        ({"url": "mqtt://broker", "discovery_prefix": 3}, "mqtt.discovery_prefix"),
        ({"url": "mqtt://broker", "retain": True}, "mqtt.retain"),
    ],
)
def test_a_bad_mqtt_setting_names_its_key(table: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"mqtt": table})
    assert caught.value.key == key


def test_a_ca_file_is_taken_with_mqtts(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    mqtt = parse_config({"mqtt": {"url": "mqtts://broker", "ca_file": str(ca)}}).mqtt
    assert mqtt is not None and mqtt.ca_file == ca


@pytest.mark.parametrize(
    ("command", "payload", "expected"),
    [
        ("current_limit", b"10", SetCurrentLimit(1, 10.0)),
        ("current_limit", b" 6.5 ", SetCurrentLimit(1, 6.5)),
        ("current_limit", b"0", SetCurrentLimit(1, 0.0)),  # pauses the car
        ("current_limit", b"32", SetCurrentLimit(1, 32.0)),
        ("current_limit", b"", SetCurrentLimit(1, None)),
        ("current_limit", b"None", SetCurrentLimit(1, None)),
        ("enabled", b"ON", SetEnabled(1, True)),
        ("enabled", b"off", SetEnabled(1, False)),
        ("enabled", b"true", SetEnabled(1, True)),
        ("enabled", b"0", SetEnabled(1, False)),
    ],
)
def test_good_commands(command: str, payload: bytes, expected: object) -> None:
    assert parse_command(1, command, payload, MAXIMA) == expected


@pytest.mark.parametrize(
    ("connector", "command", "payload"),
    [
        (1, "current_limit", b"32.1"),
        (2, "current_limit", b"20"),  # connector 2 is a 16 A one
        (1, "current_limit", b"-1"),
        (1, "current_limit", b"nan"),
        (1, "current_limit", b"inf"),
        (1, "current_limit", b"1e400"),
        (1, "current_limit", b"ten"),
        (1, "current_limit", "10\u00a0".encode()),
        (1, "current_limit", b"1" * 33),
        (1, "enabled", b"yes please"),
        (3, "enabled", b"ON"),
        (1, "reboot", b"now"),
    ],
)
def test_bad_commands_are_refused_with_a_reason(
    connector: int, command: str, payload: bytes
) -> None:
    with pytest.raises(BadCommand):
        parse_command(connector, command, payload, MAXIMA)


def test_the_energy_register_never_goes_down_nor_to_zero() -> None:
    floor = EnergyFloor()
    assert not floor.admit(1, 0.0)  # a new meter: nothing to publish yet
    assert floor.admit(1, 1000.0)
    assert not floor.admit(1, 0.0)  # a glitch
    assert not floor.admit(1, 999.0)
    assert not floor.admit(1, math.nan)
    assert floor.admit(1, 1000.0) and floor.admit(1, 1000.5)
    assert floor.admit(2, 5.0)  # each connector its own


def snapshot(energy_wh: float, **changes: object) -> ConnectorSnapshot:
    fields: dict[str, object] = {
        "id": 1,
        "cp_state": "C",
        "contactor_closed": True,
        "status": ConnectorStatus.CHARGING,
        "fault": None,
        "faults": (),
        "transaction_id": "t1",
        "id_tag": "04A1B2C3",
        "meter": MeterSnapshot(energy_wh, 7360.0, (10.6, 10.7, None), (230.0, 230.0, None)),
        "offered_a": 16.0,
        "limit_a": 16.0,
        "limited_by": (LimitSource.USER,),
        "limits": ((LimitSource.USER, 16.0),),
    }
    fields.update(changes)
    return ConnectorSnapshot(**fields)  # type: ignore[arg-type]


def test_state_topics_of_a_charging_connector() -> None:
    floor = EnergyFloor()
    state = connector_state(
        snapshot(12_345.0), meter_start_wh=12_000.0, max_current_a=32.0, floor=floor
    )
    payloads = {key: p.payload for key, p in state.items()}
    assert payloads == {
        "status": "Charging",
        "fault": "none",
        "enabled": "ON",
        "power_w": "7360",
        "current_l1_a": "10.60",
        "current_l2_a": "10.70",
        "session_energy_wh": "345",
        "energy_total_wh": "12345",
        "limit_a": "16.0",
        "limited_by": "user",
        "user_limit_a": "16.0",
        "phases": "3",
    }  # L3 unmeasured: not published
    assert state["status"].retain and state["energy_total_wh"].retain
    assert not state["power_w"].retain
    # a glitch: the register and the session energy keep their last published values
    glitch = connector_state(
        snapshot(0.0), meter_start_wh=12_000.0, max_current_a=32.0, floor=floor
    )
    assert "energy_total_wh" not in glitch and "session_energy_wh" not in glitch
    # no user limit: the number entity shows the maximum; a cable limits
    free = connector_state(
        snapshot(12_400.0, limits=(), limited_by=(FixedBound.CABLE,), available=False),
        meter_start_wh=None,
        max_current_a=32.0,
        floor=floor,
    )
    assert free["user_limit_a"].payload == "32.0"
    assert free["limited_by"].payload == "cable"
    assert free["enabled"].payload == "OFF"
    assert "session_energy_wh" not in free  # no session: the last one's stays
    one = connector_state(
        snapshot(12_400.0, phases=1), meter_start_wh=None, max_current_a=32.0, floor=floor
    )
    assert one["phases"].payload == "1" and one["phases"].retain  # a phase switch changed it


def test_topic_names() -> None:
    assert default_prefix("my charger+1") == "picharge/my_charger_1"
    topics = Topics("picharge/garage")
    assert topics.command(2, "enabled") == "picharge/garage/connector/2/set/enabled"
    assert topics.parse_command("picharge/garage/connector/2/set/enabled") == (2, "enabled")
    assert topics.parse_command("picharge/garage/connector/2/set/reboot") is None
    assert topics.parse_command("picharge/garage/connector/x/set/enabled") is None
    assert topics.parse_command("picharge/other/connector/1/set/enabled") is None
