"""Which keys a configuration may hold: every one is read by someone, or it is refused.

A key nobody reads is worse than an error: ``contactor_active_hi = false`` (for
``contactor_active_high``) left an active-low relay board's coil energized when "open", and
``feeback_pin``, ``rcm_falt_pin``, ``[ocpp] uri`` or ``[authorization] card`` all started
without a word. :func:`unknown_key` finds the first key no reader knows and says which
valid key is nearest (:mod:`difflib`), or, for a key another driver type reads, which type.

The keys of the sections :mod:`controller.config` reads itself are listed there; the driver
keys come from :mod:`drivers.registry`, which finds each driver's list next to its code, for
the driver types the file configures (a ``[[connector]]`` table is shared by the contactor,
pilot, RCM and temperature drivers, each picked by its ``*_type`` key).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from drivers import lock, power_fail, registry

#: Keys of a ``[[connector]]`` table besides its drivers': read by controller.config and
#: controller.hardware (``meter`` is the connector's own meter table).
CONNECTOR_KEYS = (
    "max_current_a",
    "phases",
    "phase_rotation",
    "mode",
    "meter",
    "energy",
    *registry.CONNECTOR_TYPE_KEYS.values(),
    *lock.CONFIG_KEYS,  # a socket's locking actuator (controller.hardware builds it)
)
#: The thresholds of the charging modes: keys of ``[energy]`` (beside ``mode``) and of a
#: connector's own ``[connector.energy]`` (controller.energy.thresholds judges them).
ENERGY_THRESHOLD_KEYS = (
    "start_delay_s",
    "stop_delay_s",
    "min_run_s",
    "min_pause_s",
    "settle_s",
    "off_peak",
    "departure",
    "energy_kwh",
)
#: Keys of ``[grid_meter]`` besides its meter driver's (controller.energy.grid_meter).
GRID_METER_KEYS = ("source", "interval_s")
#: Keys of ``[grid_meter]`` with ``source = "shelly"`` (controller.energy.grid_meter).
SHELLY_KEYS = ("host", "port", "em_id", "timeout_s")
#: Keys of ``[grid_meter]`` with ``source = "mqtt"`` (controller.energy.grid_meter).
MQTT_GRID_KEYS = ("topic",)
#: Keys of a ``[[circuit]]`` table (controller.energy.circuits).
CIRCUIT_KEYS = ("name", "limit_a", "connectors", "priorities", "rotation_s")
#: Keys of ``[phase_switch]`` besides its contactor driver's (controller.energy.phase_control).
PHASE_SWITCH_KEYS = (
    "connector",
    "contactor_type",
    "min_interval_s",
    "zero_current_timeout_s",
    "feedback_timeout_s",
)
#: Keys of ``[hardware]`` besides the LED driver's (with a UPS or supercap HAT's warning).
HARDWARE_KEYS = ("backend", "led_type", *power_fail.CONFIG_KEYS)

DEFAULT_TYPES_CONTACTOR = registry.DEFAULT_TYPES["contactor"]

Problem = tuple[str, str]  # (the key as the error names it, what is wrong)


class _Refused(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.found: Problem = (key, problem)


def unknown_key(doc: Mapping[str, Any], sections: Mapping[str, Iterable[str]]) -> Problem | None:
    """The first key of ``doc`` that nothing reads, or a driver type that does not exist.

    ``sections`` lists the keys of each plain section; ``[hardware]``, ``[meter]``, ``[rfid]``
    and ``[[connector]]`` get theirs from the drivers they configure. Values are not judged
    here (their readers do that), nor are tables that are not tables.
    """
    try:
        for name, keys in sections.items():
            _check(name, doc.get(name), _Known(keys))
        _check("hardware", doc.get("hardware"), _hardware_keys)
        _check("meter", doc.get("meter"), _meter_keys)
        _check("rfid", doc.get("rfid"), _rfid_keys)
        _check("grid_meter", doc.get("grid_meter"), _grid_meter_keys)
        _check("phase_switch", doc.get("phase_switch"), _phase_switch_keys)
        circuits = doc.get("circuit")
        for number, table in enumerate(circuits if isinstance(circuits, list) else [], 1):
            _check(f"circuit.{number}", table, _Known(CIRCUIT_KEYS))
        connectors = doc.get("connector")
        for number, table in enumerate(connectors if isinstance(connectors, list) else [], 1):
            prefix = f"connector.{number}"
            _check(prefix, table, _connector_keys)
            if isinstance(table, Mapping):
                _check(f"{prefix}.meter", table.get("meter"), _meter_keys)
                _check(f"{prefix}.energy", table.get("energy"), _Known(ENERGY_THRESHOLD_KEYS))
    except _Refused as refused:
        return refused.found
    return None


class _Known:
    """The keys a table may hold, and for keys of other driver types, which type reads them."""

    def __init__(self, keys: Iterable[str], elsewhere: Mapping[str, str] | None = None) -> None:
        self.keys = frozenset(keys)
        self.elsewhere = {k: v for k, v in (elsewhere or {}).items() if k not in self.keys}


def _check(
    prefix: str, table: Any, known: _Known | Callable[[str, Mapping[str, Any]], _Known]
) -> None:
    if not isinstance(table, Mapping):
        return  # absent, or not a table: its reader says so
    if not isinstance(known, _Known):
        known = known(prefix, table)
    for key in table:
        if key in known.keys:
            continue
        name = f"{prefix}.{key}"
        if key in known.elsewhere:
            raise _Refused(name, f"unknown key here; it is read only with {known.elsewhere[key]}")
        nearest = difflib.get_close_matches(str(key), sorted(known.keys), n=1)
        if nearest:
            raise _Refused(name, f"unknown key; did you mean {nearest[0]}?")
        expected = ", ".join(sorted(known.keys)) or "none"
        raise _Refused(name, f"unknown key; expected one of {expected}")


def _driver(
    prefix: str, table: Mapping[str, Any], kind: str, type_key: str, default: str | None
) -> _Known:
    """The keys of the ``kind`` driver ``table`` picks with ``type_key`` (none for "none"),
    and the keys only its other types read, each with the setting that would read it."""
    chosen = table.get(type_key, default)
    if chosen is not None and not isinstance(chosen, str):
        raise _Refused(f"{prefix}.{type_key}", f"must be a string, got {chosen!r}")
    if chosen is not None and chosen != "none" and chosen not in registry.types(kind):
        expected = ", ".join(registry.types(kind))
        raise _Refused(
            f"{prefix}.{type_key}", f"unknown {kind} type {chosen!r}; expected one of {expected}"
        )
    keys = frozenset() if chosen in (None, "none") else registry.config_keys(kind, str(chosen))
    elsewhere = {
        key: f'{type_key} = "{other}"'
        for other in registry.types(kind)
        if other != chosen
        for key in sorted(registry.config_keys(kind, other))
    }
    return _Known(keys, elsewhere)


def _combine(base: Iterable[str], *parts: _Known) -> _Known:
    keys: set[str] = set(base)
    elsewhere: dict[str, str] = {}
    for part in parts:
        keys |= part.keys
        for key, where in part.elsewhere.items():
            elsewhere.setdefault(key, where)
    return _Known(keys, elsewhere)


def _connector_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    parts = [
        _driver(prefix, table, kind, type_key, registry.DEFAULT_TYPES.get(kind))
        for kind, type_key in registry.CONNECTOR_TYPE_KEYS.items()
    ]
    return _combine(CONNECTOR_KEYS, *parts)


def _hardware_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    led = _driver(prefix, table, "led", "led_type", registry.DEFAULT_TYPES["led"])
    return _combine(HARDWARE_KEYS, led)


def _meter_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    return _combine(("type",), _driver(prefix, table, "meter", "type", "modbus"))


def _grid_meter_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    if table.get("source") == "push":
        return _Known(GRID_METER_KEYS)
    if table.get("source") == "shelly":
        return _Known((*GRID_METER_KEYS, *SHELLY_KEYS))
    if table.get("source") == "mqtt":
        return _Known((*GRID_METER_KEYS, *MQTT_GRID_KEYS))
    return _combine((*GRID_METER_KEYS, "type"), _driver(prefix, table, "meter", "type", "modbus"))


def _phase_switch_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    contactor = _driver(prefix, table, "contactor", "contactor_type", DEFAULT_TYPES_CONTACTOR)
    return _combine(PHASE_SWITCH_KEYS, contactor)


def _rfid_keys(prefix: str, table: Mapping[str, Any]) -> _Known:
    return _combine(("type",), _driver(prefix, table, "rfid", "type", None))
