"""What each connector's state topics carry, computed from the status snapshot. Pure.

Payloads are plain text (a number, a word, ``ON``/``OFF``), as Home Assistant's MQTT
sensors read them without templates. A value the charger does not know (no meter reading
yet, a phase the meter does not measure) is not published at all: a numeric sensor given
an empty or non-numeric state logs an error in Home Assistant.

The energy register is published as Home Assistant's ``total_increasing``: any decrease
reads as a meter replaced or reset, and every later reading is counted again in the
energy statistics. So :class:`EnergyFloor` lets through only readings above zero and at
least as high as the last one published: a meter glitch (a 0 or a lower value read once)
is never published.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.config_keys import ENERGY_THRESHOLD_KEYS
from controller.limits import LimitSource
from controller.status_snapshot import ConnectorSnapshot

log = logging.getLogger(__name__)

#: State topics that keep their last value for a new subscriber (Home Assistant after a
#: restart); power and currents change every second and go stale, so they are not retained.
RETAINED = frozenset(
    {
        "status",
        "fault",
        "enabled",
        "session_energy_wh",
        "energy_total_wh",
        "limit_a",
        "limited_by",
        "user_limit_a",
        "mode",
        "phases",
        *ENERGY_THRESHOLD_KEYS,
    }
)


@dataclass(frozen=True, slots=True)
class Publication:
    """One state topic's value: the payload, and whether the broker keeps it."""

    payload: str
    retain: bool


class EnergyFloor:
    """The highest energy register value published per connector; a lower one, a zero or
    a non-finite one is held back (logged once per episode). Loop thread only."""

    def __init__(self) -> None:
        self._highest: dict[int, float] = {}
        self._holding: set[int] = set()

    def admit(self, connector_id: int, energy_wh: float) -> bool:
        """Whether ``energy_wh`` may be published; remembers it when it may."""
        highest = self._highest.get(connector_id, 0.0)
        if math.isfinite(energy_wh) and energy_wh > 0 and energy_wh >= highest:
            self._highest[connector_id] = energy_wh
            self._holding.discard(connector_id)
            return True
        if highest > 0 and connector_id not in self._holding:  # a new meter's 0: no glitch
            self._holding.add(connector_id)
            log.warning(
                "connector %d: energy register read %s Wh, below the %s Wh published: "
                "not published (a meter glitch would corrupt Home Assistant's statistics)",
                connector_id,
                energy_wh,
                highest,
            )
        return False


def _number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def connector_state(
    connector: ConnectorSnapshot,
    *,
    meter_start_wh: float | None,
    max_current_a: float,
    floor: EnergyFloor,
    energy: Mapping[str, Any] | None = None,
) -> dict[str, Publication]:
    """The state topics of one connector (by topic suffix) as they should read now.

    ``meter_start_wh``: the running transaction's meter start (None outside a session:
    the session energy then keeps its last value). ``max_current_a``: the connector's
    configured maximum, what ``user_limit_a`` reads while the user has set no limit (Home
    Assistant's number entity needs a number). ``energy``: the connector's entry of the
    energy picture (:meth:`controller.energy.modes.ModeControl.status`), with its mode and
    surplus and its thresholds; None without local energy management.
    """
    values: dict[str, str] = {
        "status": str(connector.status),
        "fault": "none" if connector.fault is None else str(connector.fault),
        "enabled": "ON" if connector.available else "OFF",
        "limit_a": _number(connector.limit_a, 1),
        "limited_by": ",".join(str(name) for name in connector.limited_by),
        "user_limit_a": _number(dict(connector.limits).get(LimitSource.USER, max_current_a), 1),
        "phases": str(connector.phases),
    }
    if energy is not None:
        values["mode"] = str(energy["mode"])
        if energy.get("surplus_w") is not None:
            values["surplus_w"] = _number(energy["surplus_w"], 0)
        values.update(_thresholds(energy.get("thresholds", {})))
    meter = connector.meter
    if meter is not None:
        if meter.power_w is not None and math.isfinite(meter.power_w):
            values["power_w"] = _number(meter.power_w, 0)
        for phase, current_a in enumerate(meter.current_a, start=1):
            if current_a is not None and math.isfinite(current_a):
                values[f"current_l{phase}_a"] = _number(current_a, 2)
        if floor.admit(connector.id, meter.energy_wh):
            values["energy_total_wh"] = _number(meter.energy_wh, 0)
            if meter_start_wh is not None:
                session_wh = max(0.0, meter.energy_wh - meter_start_wh)
                values["session_energy_wh"] = _number(session_wh, 0)
    return {key: Publication(value, key in RETAINED) for key, value in values.items()}


def _thresholds(thresholds: Mapping[str, Any]) -> dict[str, str]:
    """Each threshold in force: a number as is (``60``, ``1.5``), a window or a time as text
    (``none`` when not set: an empty retained message would delete the topic); an energy
    target not set is not published."""
    values = {}
    for key in ENERGY_THRESHOLD_KEYS:
        value = thresholds.get(key)
        if isinstance(value, str):
            values[key] = value or "none"
        elif value is not None:
            values[key] = f"{value:g}"
    return values


def energy_state(status: Mapping[str, Any]) -> dict[str, Publication]:
    """The charger's energy topics from the energy picture: the grid's power and current
    per phase (import positive), none while the grid meter gives no fresh reading."""
    values: dict[str, str] = {}
    if status.get("grid_power_w") is not None:
        values["grid_power_w"] = _number(status["grid_power_w"], 0)
    for phase, current_a in enumerate(status.get("grid_current_a") or (), start=1):
        if current_a is not None and math.isfinite(current_a):
            values[f"grid_current_l{phase}_a"] = _number(current_a, 2)
    return {key: Publication(value, False) for key, value in values.items()}
