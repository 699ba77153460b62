"""The ``[energy]`` table and each connector's own: the charging modes and their thresholds.

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

Every key but ``mode`` may also sit in a connector's ``[connector.energy]`` table, for that
connector alone; the page, the API and MQTT change them at run time
(:mod:`controller.energy.thresholds`: run time > ``[connector.energy]`` > ``[energy]``).
Validated at start (ConfigurationError names ``energy.<key>`` or
``connector.<id>.energy.<key>``). Without ``[site]`` (no grid meter) the tables stand alone:
``fast`` and ``schedule`` work from the clock and the connector's own meter, and ``solar``
or ``min_solar`` (in ``[energy]`` or a ``[[connector]]``) is refused naming the key, since
nothing would ever measure a surplus for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.energy.modes import NEEDS_GRID, NO_GRID_METER, Mode
from controller.energy.thresholds import Thresholds, Value, check, combine
from drivers.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class ModeSettings:
    """The parsed tables: the configured mode of each connector, ``[energy]``'s thresholds
    (``default``) and each connector's own (``own``), checked."""

    modes: Mapping[int, Mode] = field(default_factory=dict)
    default: Mapping[str, Value] = field(default_factory=dict)
    own: Mapping[int, Mapping[str, Value]] = field(default_factory=dict)

    def thresholds(self, connector_id: int) -> Thresholds:
        """The connector's configured thresholds (before any change at run time)."""
        return combine((("energy", self.default), ("connector", self.own.get(connector_id, {}))))


def parse_mode(value: object, key: str) -> Mode:
    """A mode by name; ConfigurationError names ``key``."""
    if isinstance(value, str) and value in set(Mode):
        return Mode(value)
    raise ConfigurationError(key, f"must be one of {', '.join(Mode)}, got {value!r}")


def parse_energy(
    section: Mapping[str, Any],
    connector_modes: Mapping[int, str | None],
    connector_ids: Sequence[int],
    connector_energy: Mapping[int, Mapping[str, Any]] | None = None,
    *,
    grid_meter: bool = True,
) -> ModeSettings:
    """Validate ``[energy]``, each ``[[connector]] mode`` and each connector's own
    ``[connector.energy]`` (``connector_energy``); ConfigurationError names the key.

    ``grid_meter``: whether a grid meter measures the house (``[site]``); without one a
    mode of :data:`~controller.energy.modes.NEEDS_GRID` is refused.
    """
    if not isinstance(section, Mapping):
        raise ConfigurationError("energy", "must be a table ([energy])")
    default_mode = _mode_here(section.get("mode", Mode.FAST.value), "energy.mode", grid_meter)
    default = check({k: v for k, v in section.items() if k != "mode"}, "energy.")
    _combined(default, {}, "energy.")
    modes, own = {}, {}
    for cid in connector_ids:
        mode = connector_modes.get(cid)
        key = f"connector.{cid}.mode"
        modes[cid] = default_mode if mode is None else _mode_here(mode, key, grid_meter)
        prefix = f"connector.{cid}.energy." if (connector_energy or {}).get(cid) else "energy."
        own[cid] = check((connector_energy or {}).get(cid, {}), prefix)
        thresholds = _combined(default, own[cid], prefix)
        if modes[cid] is Mode.SCHEDULE and thresholds.schedule.empty:
            raise ConfigurationError(
                f"{prefix}off_peak", "the schedule mode needs off_peak or departure"
            )
    return ModeSettings(modes, default, own)


def _mode_here(value: object, key: str, grid_meter: bool) -> Mode:
    mode = parse_mode(value, key)
    if mode in NEEDS_GRID and not grid_meter:
        raise ConfigurationError(key, f"{mode} {NO_GRID_METER}")
    return mode


def _combined(default: Mapping[str, Value], own: Mapping[str, Value], prefix: str) -> Thresholds:
    try:
        return combine((("energy", default), ("connector", own)))
    except ConfigurationError as exc:
        raise ConfigurationError(prefix + exc.key, exc.problem) from None
