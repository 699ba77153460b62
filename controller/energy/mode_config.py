"""The ``[energy]`` table: each connector's charging mode and the thresholds of the modes.

==============  ==========  ===============================================================
key             default     meaning
==============  ==========  ===============================================================
mode            ``fast``    every connector's mode at first start: ``fast``, ``solar``,
                            ``min_solar``, ``schedule`` (``[[connector]] mode`` overrides
                            it for one connector; the page, the API and MQTT change it at
                            run time, and the choice is kept across restarts)
start_delay_s   60          solar: the surplus covers 6 A this long before the car starts
stop_delay_s    180         solar: the surplus misses 6 A this long before the car pauses
min_run_s       300         solar: the shortest run (contactor wear)
min_pause_s     120         solar: the shortest pause
settle_s        10          solar, min_solar: the current is held this long after a change
                            (the car follows and its meter sees it; fewer PWM changes)
off_peak        (none)      schedule: ``"22:00-06:00"``, the hours to charge in
departure       (none)      schedule: ``"07:00"``, when ``energy_kwh`` should be in the car
energy_kwh      (none)      schedule: what a session should hold by ``departure``
==============  ==========  ===============================================================

Validated at start (ConfigurationError names ``energy.<key>``); the table needs ``[site]``
(the modes act on the grid meter's readings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config import SECTION_KEYS
from controller.energy.modes import Mode, Timing
from controller.energy.schedule import Schedule, parse_time, parse_window
from drivers.errors import ConfigurationError

#: The keys of ``[energy]`` (declared with the other sections' in controller.config).
KEYS = SECTION_KEYS["energy"]
#: The longest delay a mode takes (s): a day.
MAX_DELAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class ModeSettings:
    """The parsed ``[energy]`` table: the configured mode of each connector."""

    modes: Mapping[int, Mode] = field(default_factory=dict)
    timing: Timing = field(default_factory=Timing)
    schedule: Schedule = field(default_factory=Schedule)


def parse_mode(value: object, key: str) -> Mode:
    """A mode by name; ConfigurationError names ``key``."""
    if isinstance(value, str) and value in set(Mode):
        return Mode(value)
    raise ConfigurationError(key, f"must be one of {', '.join(Mode)}, got {value!r}")


def _seconds(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"energy.{key}", f"must be a number of seconds, got {value!r}")
    if not 0 <= value <= MAX_DELAY_S:
        raise ConfigurationError(f"energy.{key}", f"must be 0-{MAX_DELAY_S:g} s, got {value}")
    return float(value)


def _schedule(section: Mapping[str, Any]) -> Schedule:
    texts = {}
    for key in ("off_peak", "departure"):
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"energy.{key}", f"must be text, got {value!r}")
        texts[key] = value
    try:
        window = None if texts["off_peak"] is None else parse_window(texts["off_peak"])
    except ValueError as exc:
        raise ConfigurationError("energy.off_peak", str(exc)) from None
    try:
        departure = None if texts["departure"] is None else parse_time(texts["departure"])
    except ValueError as exc:
        raise ConfigurationError("energy.departure", str(exc)) from None
    energy = section.get("energy_kwh")
    if (departure is None) != (energy is None):
        raise ConfigurationError("energy.energy_kwh", "departure and energy_kwh go together")
    energy_wh = 0.0
    if energy is not None:
        if isinstance(energy, bool) or not isinstance(energy, int | float):
            raise ConfigurationError("energy.energy_kwh", f"must be a number, got {energy!r}")
        if not 0 < energy <= 200:
            raise ConfigurationError("energy.energy_kwh", f"must be 0-200 kWh, got {energy}")
        energy_wh = float(energy) * 1000.0
    return Schedule(window, departure, energy_wh)


def parse_energy(
    section: Mapping[str, Any],
    connector_modes: Mapping[int, str | None],
    connector_ids: Sequence[int],
) -> ModeSettings:
    """Validate ``[energy]`` and each ``[[connector]] mode``; ConfigurationError names the key."""
    if not isinstance(section, Mapping):
        raise ConfigurationError("energy", "must be a table ([energy])")
    default = parse_mode(section.get("mode", Mode.FAST.value), "energy.mode")
    modes = {}
    for cid in connector_ids:
        own = connector_modes.get(cid)
        modes[cid] = default if own is None else parse_mode(own, f"connector.{cid}.mode")
    defaults = Timing()
    timing = Timing(*(_seconds(section, key, getattr(defaults, key)) for key in KEYS[1:6]))
    schedule = _schedule(section)
    if schedule.empty and Mode.SCHEDULE in modes.values():
        raise ConfigurationError("energy.off_peak", "the schedule mode needs off_peak or departure")
    return ModeSettings(modes, timing, schedule)
