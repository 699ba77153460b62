"""The thresholds of the charging modes, per connector (issue 16): one check for the
configuration, the page's API and MQTT, and the layers that give each connector its own.

A connector's value of each threshold is the first of:

1. a change at run time (the page, ``PUT /api/v1/connectors/{id}/thresholds``, MQTT),
   kept in the state database (settings namespace :data:`NAMESPACE`), so a restart keeps
   it;
2. its own ``[connector.energy]`` table;
3. ``[energy]``;
4. the built-in default (:class:`~controller.energy.modes.Timing`; no schedule).

A run-time change is kept per key: a key never changed at run time follows the
configuration, also after the configuration was edited. Forgetting a run-time change (a
null in the API, ``reset`` over MQTT) gives that key back to the configuration.

``off_peak`` and ``departure`` take ``""`` (or ``"none"``) for "none here": a connector may
drop a window that ``[energy]`` gives every connector. Once the layers are combined, a
departure needs an energy target (``energy_kwh``); a target without a departure is kept
and waits for one (MQTT sets them one topic at a time, so neither order may be refused).

Pure, but for :meth:`ThresholdLayers.restore` and :meth:`ThresholdLayers.save` (the state
database). Loop thread only.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from controller.config_keys import ENERGY_THRESHOLD_KEYS
from controller.energy.modes import Timing
from controller.energy.schedule import Schedule, parse_time, parse_window
from controller.storage import Storage, StorageError
from drivers.errors import ConfigurationError

log = logging.getLogger(__name__)

#: Every threshold, as the configuration, the API and MQTT name it.
KEYS = ENERGY_THRESHOLD_KEYS
#: The thresholds that are times (s): the fields of :class:`Timing`.
TIME_KEYS = tuple(f.name for f in fields(Timing))
#: The thresholds that are text (a window, a time of day); the others are numbers.
TEXT_KEYS = ("off_peak", "departure")
#: The longest delay a mode takes (s): a day.
MAX_DELAY_S = 86_400.0
#: The largest energy target (kWh): more than any car's battery.
MAX_ENERGY_KWH = 200.0
#: What ``off_peak`` and ``departure`` take for "none here" (any case).
NONE_TEXTS = ("", "none")
#: Where the run-time changes are kept: key the connector id, value a JSON object.
NAMESPACE = "energy_thresholds"
#: The layers, the strongest last, as :attr:`Thresholds.sources` names them.
LAYERS = ("default", "energy", "connector", "run_time")

Value = float | str

_BUILT_IN: dict[str, Value] = {key: getattr(Timing(), key) for key in TIME_KEYS}


def check(values: Mapping[str, Any], prefix: str = "") -> dict[str, Value]:
    """Each of ``values`` checked and normalized (seconds and kWh as floats, a time or a
    window as text, ``""`` for none); ConfigurationError names ``prefix`` + the key.

    The one check of a threshold, for ``[energy]``, ``[connector.energy]``, the API's PUT
    and an MQTT command alike.
    """
    checked: dict[str, Value] = {}
    for key, value in values.items():
        _known(key, prefix + key)
        checked[key] = _one(key, value, prefix + key)
    return checked


def _known(key: str, name: str) -> None:
    if key not in KEYS:
        raise ConfigurationError(name, f"unknown threshold; expected one of {', '.join(KEYS)}")


def _number(value: Any, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(name, f"must be a number {what}, got {value!r}")
    return float(value)


def _one(key: str, value: Any, name: str) -> Value:
    if key in TIME_KEYS:
        seconds = _number(value, name, "of seconds")
        if not 0 <= seconds <= MAX_DELAY_S:
            raise ConfigurationError(name, f"must be 0-{MAX_DELAY_S:g} s, got {value}")
        return seconds
    if key == "energy_kwh":
        energy = _number(value, name, "of kWh")
        if not 0 < energy <= MAX_ENERGY_KWH:
            raise ConfigurationError(name, f"must be 0-{MAX_ENERGY_KWH:g} kWh, got {value}")
        return energy
    if not isinstance(value, str):
        raise ConfigurationError(name, f"must be text, got {value!r}")
    text = value.strip()
    if text.lower() in NONE_TEXTS:
        return ""
    try:
        parse_window(text) if key == "off_peak" else parse_time(text)
    except ValueError as exc:
        raise ConfigurationError(name, str(exc)) from None
    return text


@dataclass(frozen=True, slots=True)
class Thresholds:
    """One connector's thresholds after layering.

    ``values``: every key's value (``""`` for a window or departure not set, None for
    ``energy_kwh`` not set); ``sources``: which layer (:data:`LAYERS`) gave each.
    """

    values: Mapping[str, Value | None]
    sources: Mapping[str, str]
    timing: Timing
    schedule: Schedule


def combine(layers: Iterable[tuple[str, Mapping[str, Value]]]) -> Thresholds:
    """The thresholds of checked ``layers`` (name, values), the weakest first, over the
    built-in defaults. ConfigurationError (the bare key) for a departure without an energy
    target."""
    merged: dict[str, Value] = dict(_BUILT_IN)
    sources = dict.fromkeys(_BUILT_IN, "default")
    for name, layer in layers:
        merged.update(layer)
        sources.update(dict.fromkeys(layer, name))
    off_peak = str(merged.get("off_peak", ""))
    departure = str(merged.get("departure", ""))
    energy = merged.get("energy_kwh")
    if departure and energy is None:
        raise ConfigurationError(
            "energy_kwh", f"a departure ({departure}) needs energy_kwh, the energy wanted by then"
        )
    schedule = Schedule(
        parse_window(off_peak) if off_peak else None,
        parse_time(departure) if departure else None,
        float(energy) * 1000.0 if departure and energy is not None else 0.0,
    )
    timing = Timing(**{key: float(merged[key]) for key in TIME_KEYS})
    values: dict[str, Value | None] = {key: merged.get(key) for key in KEYS}
    values["off_peak"], values["departure"] = off_peak, departure
    return Thresholds(values, {key: sources.get(key, "default") for key in KEYS}, timing, schedule)


class ThresholdLayers:
    """Each connector's thresholds: ``[energy]``, its ``[connector.energy]`` and the
    changes made at run time (see the module docstring). Loop thread only."""

    def __init__(self, default: Mapping[str, Value], own: Mapping[int, Mapping[str, Value]]):
        self._default = dict(default)
        self._own = {cid: dict(values) for cid, values in own.items()}
        self._changes: dict[int, dict[str, Value]] = {cid: {} for cid in self._own}
        self._now = {cid: self._combine(cid, {}) for cid in self._own}
        self._storage: Storage | None = None

    def __getitem__(self, connector_id: int) -> Thresholds:
        """The thresholds in force on a connector; KeyError for no such connector."""
        return self._now[connector_id]

    def _combine(self, connector_id: int, changes: Mapping[str, Value]) -> Thresholds:
        return combine(
            (
                ("energy", self._default),
                ("connector", self._own[connector_id]),
                ("run_time", changes),
            )
        )

    def change(
        self, connector_id: int, values: Mapping[str, Any], needs_schedule: bool = False
    ) -> Thresholds:
        """Apply a run-time change of some thresholds (a None forgets that key's change):
        all of it or, on an error, none. KeyError: no such connector; ConfigurationError
        names the bad key. ``needs_schedule``: the connector charges in the schedule mode,
        which needs ``off_peak`` or ``departure``. Not stored yet: :meth:`save`."""
        if connector_id not in self._own:
            raise KeyError(connector_id)
        given = check({key: value for key, value in values.items() if value is not None})
        changes = {**self._changes[connector_id], **given}
        for key, value in values.items():
            if value is None:
                _known(key, key)
                changes.pop(key, None)
        thresholds = self._combine(connector_id, changes)
        if needs_schedule and thresholds.schedule.empty:
            key = next((k for k in ("off_peak", "departure") if k in values), "off_peak")
            raise ConfigurationError(
                key, f"connector {connector_id} charges in the schedule mode: it needs one"
            )
        self._changes[connector_id] = changes
        self._now[connector_id] = thresholds
        return thresholds

    async def restore(self, storage: Storage) -> None:
        """Take the run-time changes an earlier run stored; later ones are stored there.
        A stored change the configuration no longer allows is logged and dropped."""
        self._storage = storage
        try:
            stored = await storage.load_settings(NAMESPACE)
        except StorageError as exc:
            log.error("the thresholds changed at run time not read (%s): configured ones", exc)
            return
        for key, text in stored.items():
            try:
                connector_id = int(key)
                changes = json.loads(text)
                if not isinstance(changes, dict):
                    raise ValueError(f"not an object: {text!r}")
                self.change(connector_id, changes)
            except (KeyError, ValueError, ConfigurationError) as exc:
                log.warning("stored thresholds %r=%r do not apply (%s): dropped", key, text, exc)
                await self._write(key, {})
                continue
            log.info("connector %d: thresholds changed at run time: %s", connector_id, changes)

    async def save(self, connector_id: int) -> None:
        """Store the connector's run-time changes (none stored: the row goes)."""
        await self._write(str(connector_id), self._changes.get(connector_id, {}))

    async def _write(self, key: str, changes: Mapping[str, Value]) -> None:
        if self._storage is None:
            return
        try:
            if changes:
                await self._storage.save_setting(NAMESPACE, key, json.dumps(changes))
            else:
                await self._storage.delete_setting(NAMESPACE, key)
        except StorageError as exc:  # the storage watch reports the database
            log.error("thresholds of connector %s not stored: %s", key, exc)
