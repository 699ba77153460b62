"""The grid meter role (``[grid_meter]``): which meter measures the house connection.

``source = "modbus"`` (the default) polls one of the bundled meter models through the same
driver as a connector's meter, with every ``[meter]`` key (``model``, ``transport``,
``serial_port`` or ``host``/``port``, ``unit_id``, timeouts...): over Modbus TCP (a PV
inverter's meter, a TCP gateway) or RTU, on its own RS-485 adapter or on the charger meter's
bus with its own unit id (the same ``serial_port``: both then share one line, see
:mod:`drivers.modbus_line`). ``source = "push"`` reads nothing: a bridge pushes readings
through the local API (``PUT /api/v1/grid``) into the :class:`GridFeed`; ``source = "mqtt"``
takes the same readings published to an MQTT topic (key ``topic``, default
``<[mqtt] topic_prefix>/grid/set``; needs ``[mqtt] url``; :mod:`controller.mqtt.grid_input`).
Each pushed feed has one way in, so two bridges can never interleave their readings.
``source = "shelly"`` polls a Shelly Pro 3EM over its local HTTP API
(:mod:`controller.energy.shelly`; keys ``host``, ``port`` 80, ``em_id`` 0, ``timeout_s``
1.0).

Keys of the role itself:

==============  ==========  ===============================================================
key             default     meaning
==============  ==========  ===============================================================
source          ``modbus``  ``"modbus"``, ``"push"``, ``"mqtt"`` or ``"shelly"``
interval_s      1.0         how often the meter is read (0.2-60 s)
==============  ==========  ===============================================================

Polling runs on the loop (the driver's pymodbus client is asynchronous).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.config_keys import MQTT_GRID_KEYS, SHELLY_KEYS
from controller.energy.grid import GridFeed, sample_from_meter
from drivers import meter as meter_driver
from drivers.base import EnergyMeter, EventSink, ignore_events
from drivers.errors import ConfigurationError, PermanentFault
from drivers.seams import HardwareSeams

log = logging.getLogger(__name__)

SOURCES = ("modbus", "push", "mqtt", "shelly")
#: The sources whose readings another edge pushes: nothing is polled.
PUSHED_SOURCES = frozenset({"push", "mqtt"})
#: The longest MQTT topic a grid reading may come on (bytes; MQTT allows 65535).
MAX_TOPIC = 256
ROLE_KEYS = frozenset({"source", "interval_s"})


@dataclass(frozen=True, slots=True)
class ShellySettings:
    """Where a Shelly Pro 3EM answers its local Gen2 RPC API (``source = "shelly"``)."""

    host: str
    port: int = 80
    em_id: int = 0
    timeout_s: float = 1.0

    @property
    def url(self) -> str:
        """The status call the poller makes."""
        return f"http://{self.host}:{self.port}/rpc/EM.GetStatus?id={self.em_id}"


@dataclass(frozen=True, slots=True)
class GridMeterRole:
    """The parsed ``[grid_meter]`` table; ``meter`` holds the driver's keys for Modbus,
    ``shelly`` where a Shelly answers, ``topic`` where MQTT readings come (None: the
    default under the bridge's prefix)."""

    source: str = "modbus"
    interval_s: float = 1.0
    meter: Mapping[str, Any] | None = None
    shelly: ShellySettings | None = None
    topic: str | None = None


def parse_role(section: Mapping[str, Any]) -> GridMeterRole:
    """Validate ``[grid_meter]``; ConfigurationError names ``grid_meter.<key>``.

    The Modbus keys are checked by building (not opening) the driver, so a typo is refused
    at start, not at the first read.
    """
    if not isinstance(section, Mapping):
        raise ConfigurationError("grid_meter", "must be a table ([grid_meter])")
    source = section.get("source", "modbus")
    if source not in SOURCES:
        raise ConfigurationError(
            "grid_meter.source", f"must be one of {', '.join(SOURCES)}, got {source!r}"
        )
    interval = section.get("interval_s", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ConfigurationError("grid_meter.interval_s", f"must be a number, got {interval!r}")
    if not 0.2 <= interval <= 60.0:
        raise ConfigurationError("grid_meter.interval_s", f"must be 0.2-60 s, got {interval}")
    meter_keys = {k: v for k, v in section.items() if k not in ROLE_KEYS}
    meter_type = meter_keys.pop("type", "modbus")
    if meter_type != "modbus":
        raise ConfigurationError("grid_meter.type", f"must be 'modbus', got {meter_type!r}")
    if source == "shelly":
        return GridMeterRole(source, float(interval), shelly=parse_shelly(meter_keys))
    if source == "mqtt":
        return GridMeterRole(source, float(interval), topic=parse_topic(meter_keys))
    if source == "push":
        if meter_keys:
            raise ConfigurationError(
                f"grid_meter.{sorted(meter_keys)[0]}", "is a Modbus key; source is 'push'"
            )
        return GridMeterRole(source, float(interval))
    build_meter(meter_keys)  # validates; the unopened client is simply dropped
    return GridMeterRole(source, float(interval), meter_keys)


def parse_shelly(keys: Mapping[str, Any]) -> ShellySettings:
    """The Shelly keys of ``[grid_meter]``; ConfigurationError names ``grid_meter.<key>``."""
    for key in keys:
        if key not in SHELLY_KEYS:
            raise ConfigurationError(f"grid_meter.{key}", "is not read when source is 'shelly'")
    host = keys.get("host")
    if not isinstance(host, str) or not host:
        raise ConfigurationError("grid_meter.host", "is required: the Shelly's address")
    port = keys.get("port", 80)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigurationError("grid_meter.port", f"must be 1-65535, got {port!r}")
    em_id = keys.get("em_id", 0)
    if isinstance(em_id, bool) or not isinstance(em_id, int) or em_id < 0:
        raise ConfigurationError("grid_meter.em_id", f"must be an integer >= 0, got {em_id!r}")
    timeout = keys.get("timeout_s", 1.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0.1 <= timeout <= 30
    ):
        raise ConfigurationError("grid_meter.timeout_s", f"must be 0.1-30 s, got {timeout!r}")
    return ShellySettings(host, port, em_id, float(timeout))


def parse_topic(keys: Mapping[str, Any]) -> str | None:
    """The MQTT topic of ``source = "mqtt"`` (None: the default); ConfigurationError names
    ``grid_meter.<key>``. One topic, no wildcard: readings from several publishers would
    interleave."""
    for key in keys:
        if key not in MQTT_GRID_KEYS:
            raise ConfigurationError(f"grid_meter.{key}", "is not read when source is 'mqtt'")
    topic = keys.get("topic")
    if topic is None:
        return None
    if (
        not isinstance(topic, str)
        or not 1 <= len(topic.encode()) <= MAX_TOPIC
        or "+" in topic
        or "#" in topic
        or not topic.isprintable()
    ):
        raise ConfigurationError(
            "grid_meter.topic",
            f"must be one MQTT topic of 1-{MAX_TOPIC} bytes without + or #, got {topic!r}",
        )
    return topic


def build_meter(
    keys: Mapping[str, Any],
    on_event: EventSink = ignore_events,
    seams: HardwareSeams | None = None,
) -> EnergyMeter:
    """The Modbus driver for the grid meter; errors name ``grid_meter.<key>``.

    Built with the charger's ``seams``, a grid meter on the charger meter's RS-485 port (its
    own unit id) shares that port's line; without them it gets lines of its own.
    """
    try:
        return meter_driver.from_config(keys, seams or HardwareSeams(), on_event)
    except ConfigurationError as exc:
        key = exc.key.removeprefix("meter")
        raise ConfigurationError(f"grid_meter{key}", exc.problem) from exc


async def poll(meter: EnergyMeter, feed: GridFeed, interval_s: float) -> None:
    """Read the grid meter every ``interval_s`` and push each reading; runs until cancelled.

    A meter that stops answering pushes nothing (the driver reports it offline once and
    back online once); the fuse rule sees the samples age and falls back to the safe
    current, so a silent or garbled meter never leaves an old reading in charge.
    """
    try:
        while True:
            started = time.monotonic()
            try:
                feed.push_sample(sample_from_meter(await meter.read()))
            except PermanentFault as exc:
                log.debug("grid meter read failed: %s", exc)
            except ValueError as exc:  # a reading no sample can be made of
                log.warning("grid meter gave an unusable reading: %s", exc)
            await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    finally:
        await meter.close()
