"""Variable monitors (N02-N04): what SetVariableMonitoring sets, when one trips, and the
NotifyEvent it sends.

The monitorable variables are EVSE.Power (W) and TemperatureSensor.Temperature (Celsius) of
each EVSE (:mod:`.evse_variables`), looked at every meter reading. A monitor is
UpperThreshold (trips when the value rises above its own, clears when it is back at or
below), LowerThreshold (the mirror image) or Delta (reports whenever the value moved by at
least its own since the last report; the first reading sets the reference), Periodic
(reports the value every ``value`` seconds from when it was set) or PeriodicClockAligned
(every ``value`` seconds on the boundaries counted from midnight UTC;
:mod:`.monitor_periods`). Each trip, clearing or period is a NotifyEvent
(eventNotificationType CustomMonitor, trigger Alerting, Delta or Periodic, the monitor's id
as variableMonitoringId; a period with no reading yet, or while offline, reports nothing)
through
:class:`~.notify_events.NotifyEvents` (kept while offline), sent only for a monitor whose
severity is at most the level SetMonitoringLevel set (0-9, default 9: all); a monitor with
``transaction`` true watches only while a transaction runs on its EVSE.

SetVariableMonitoring answers per item: UnknownComponent/UnknownVariable for what the
device model does not hold, Rejected for a variable that cannot be monitored, a severity
outside 0-9, a Delta that is not positive, a period under :data:`MIN_PERIOD_S` (1 s) or an
``id`` that names no monitor (an ``id`` that does replaces that monitor), Duplicate for a
second monitor of the same variable, type and severity, else Accepted with the new
monitor's id. SetMonitoringBase All keeps every monitor; FactoryDefault and HardWiredOnly
remove the custom ones (this charger has no preconfigured monitors; its hard-wired
notifications, the hardware faults of :mod:`.fault_events`, always report). Monitors, the
level and the base are kept in the state database. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from controller.csms.wire import iso_utc
from controller.ocpp201.device_model import DeviceModel, requested_key
from controller.ocpp201.evse_variables import COMPONENTS as LIVE_COMPONENTS
from controller.ocpp201.evse_variables import MONITORABLE, EvseVariables, Unknown
from controller.ocpp201.monitor_periods import PERIODIC, PERIODIC_TYPES, first_due, next_due
from controller.ocpp201.notify_events import NotifyEvents
from controller.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "ocpp201.monitors"  # key: the monitor's id
SETTINGS = "ocpp201.monitoring"  # keys: level, base
UPPER, LOWER, DELTA = "UpperThreshold", "LowerThreshold", "Delta"
KINDS = (UPPER, LOWER, DELTA, *PERIODIC_TYPES)
#: GetMonitoringReport's monitoringCriteria per monitor type.
CRITERIA = {
    UPPER: "ThresholdMonitoring",
    LOWER: "ThresholdMonitoring",
    DELTA: "DeltaMonitoring",
    **dict.fromkeys(PERIODIC_TYPES, "PeriodicMonitoring"),
}
MAX_LEVEL = 9
#: The shortest period of a periodic monitor, in seconds.
MIN_PERIOD_S = 1.0


@dataclass
class Monitor:
    """One custom monitor; ``tripped``, ``reference`` and ``due`` (a periodic one's next
    report) live only in memory."""

    id: int
    evse_id: int
    variable: str
    type: str
    value: float
    severity: int
    transaction: bool
    component: str = "EVSE"  # (a monitor stored before there were others: EVSE.Power)
    tripped: bool = field(default=False, compare=False)
    reference: float | None = field(default=None, compare=False)
    due: dt.datetime | None = field(default=None, compare=False)

    def stored(self) -> str:
        data = asdict(self)
        del data["tripped"], data["reference"], data["due"]
        return json.dumps(data)

    def wire(self) -> dict[str, Any]:
        """VariableMonitoringType (snake_case, as the library takes it)."""
        return {
            "id": self.id,
            "transaction": self.transaction,
            "value": self.value,
            "type": self.type,
            "severity": self.severity,
        }


class Monitors:
    """The custom monitors, the active level and base, and their evaluation."""

    def __init__(
        self,
        *,
        storage: Storage,
        model: DeviceModel,
        evses: EvseVariables,
        events: NotifyEvents,
        running: Callable[[int], bool],
        clock: Callable[[], Any],
        online: Callable[[], bool] = lambda: True,
    ) -> None:
        self._storage = storage
        self._model = model
        self._evses = evses
        self._events = events
        self._running = running
        self._online = online
        self._clock = clock
        self._monitors: dict[int, Monitor] = {}
        self.level = MAX_LEVEL
        self.base = "All"
        self._changed = asyncio.Event()  # wakes the periodic monitors' loop

    async def load(self) -> None:
        """The monitors, level and base of the last run (an unreadable monitor is dropped)."""
        for key, text in (await self._storage.load_settings(NAMESPACE)).items():
            try:
                monitor = Monitor(**json.loads(text))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring stored monitor %s: %s", key, exc)
                continue
            self._monitors[monitor.id] = monitor
        settings = await self._storage.load_settings(SETTINGS)
        self.level = int(settings.get("level", MAX_LEVEL))
        self.base = settings.get("base", "All")

    # --- SetVariableMonitoring ------------------------------------------------------------

    def _problem(self, item: Mapping[str, Any]) -> tuple[str, int | None]:
        """(status, evse id): why ``item`` cannot be a monitor, or ("Accepted", evse id)."""
        component, variable = item["component"], item["variable"]
        if component["name"] not in LIVE_COMPONENTS:  # a stored variable (none monitorable)
            if self._model.definition(requested_key(component, variable)) is not None:
                return "Rejected", None
            known = self._model.knows_component(component["name"])
            return ("UnknownVariable" if known else "UnknownComponent"), None
        try:
            _, evse_id = self._evses.find(component, variable)
        except Unknown as unknown:
            return unknown.status.value, None
        if (component["name"], variable["name"]) not in MONITORABLE:
            return "Rejected", None
        if item["type"] not in KINDS:
            return "UnsupportedMonitorType", None
        if not 0 <= int(item["severity"]) <= MAX_LEVEL:
            return "Rejected", None
        if item["type"] == DELTA and float(item["value"]) <= 0:
            return "Rejected", None
        if item["type"] in PERIODIC_TYPES and float(item["value"]) < MIN_PERIOD_S:
            return "Rejected", None  # a report every few ms would flood the link
        return "Accepted", evse_id

    async def set(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """SetVariableMonitoring: one SetMonitoringResultType (snake_case) per item."""
        results = []
        for item in items:
            status, evse_id = self._problem(item)
            wanted_id = item.get("id")
            if status == "Accepted" and wanted_id is not None and wanted_id not in self._monitors:
                status = "Rejected"
            if status == "Accepted" and wanted_id is None and self._duplicate(item, evse_id):
                status = "Duplicate"
            result: dict[str, Any] = {
                "status": status,
                "type": item["type"],
                "severity": item["severity"],
                "component": item["component"],
                "variable": item["variable"],
            }
            if status == "Accepted" and evse_id is not None:
                monitor = Monitor(
                    id=wanted_id if wanted_id is not None else max(self._monitors, default=0) + 1,
                    evse_id=evse_id,
                    component=item["component"]["name"],
                    variable=item["variable"]["name"],
                    type=item["type"],
                    value=float(item["value"]),
                    severity=int(item["severity"]),
                    transaction=bool(item.get("transaction", False)),
                )
                await self._storage.save_setting(NAMESPACE, str(monitor.id), monitor.stored())
                self._monitors[monitor.id] = monitor
                self._changed.set()
                result["id"] = monitor.id
                log.info(
                    "monitor %d: EVSE %d %s %s", monitor.id, evse_id, monitor.type, monitor.value
                )
            results.append(result)
        return results

    def _duplicate(self, item: Mapping[str, Any], evse_id: int | None) -> bool:
        wanted = (
            evse_id,
            item["component"]["name"],
            item["variable"]["name"],
            item["type"],
            int(item["severity"]),
        )
        return any(
            (m.evse_id, m.component, m.variable, m.type, m.severity) == wanted
            for m in self._monitors.values()
        )

    # --- ClearVariableMonitoring, SetMonitoringBase, SetMonitoringLevel --------------------

    async def clear(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """ClearVariableMonitoring: Accepted per removed id, NotFound for an unknown one."""
        results = []
        for monitor_id in ids:
            found = monitor_id in self._monitors
            if found:
                await self._remove(monitor_id)
            results.append({"id": monitor_id, "status": "Accepted" if found else "NotFound"})
        return results

    async def _remove(self, monitor_id: int) -> None:
        await self._storage.delete_setting(NAMESPACE, str(monitor_id))
        del self._monitors[monitor_id]

    async def set_base(self, base: str) -> None:
        """All keeps the custom monitors; FactoryDefault and HardWiredOnly remove them."""
        if base != "All":
            for monitor_id in list(self._monitors):
                await self._remove(monitor_id)
        self.base = base
        await self._storage.save_setting(SETTINGS, "base", base)

    async def set_level(self, severity: int) -> bool:
        """Report only monitors of ``severity`` or more urgent (lower); False if out of range."""
        if not 0 <= severity <= MAX_LEVEL:
            return False
        self.level = severity
        await self._storage.save_setting(SETTINGS, "level", str(severity))
        return True

    # --- GetMonitoringReport --------------------------------------------------------------

    def report(
        self,
        criteria: Iterable[str] | None,
        component_variable: Iterable[Mapping[str, Any]] | None,
    ) -> list[dict[str, Any]]:
        """MonitoringDataType items (snake_case) of the monitors matching the request."""
        wanted_criteria = None if criteria is None else set(criteria)
        wanted = None
        if component_variable is not None:
            wanted = [
                (
                    cv["component"]["name"],
                    (cv["component"].get("evse") or {}).get("id"),
                    (cv.get("variable") or {}).get("name"),
                )
                for cv in component_variable
            ]
        grouped: dict[tuple[str, int, str], list[Monitor]] = {}
        for monitor in sorted(self._monitors.values(), key=lambda m: m.id):
            if wanted_criteria is not None and CRITERIA[monitor.type] not in wanted_criteria:
                continue
            if wanted is not None and not any(
                name == monitor.component
                and evse in (None, monitor.evse_id)
                and var in (None, monitor.variable)
                for name, evse, var in wanted
            ):
                continue
            key = (monitor.component, monitor.evse_id, monitor.variable)
            grouped.setdefault(key, []).append(monitor)
        return [
            {
                "component": {"name": component, "evse": {"id": evse_id}},
                "variable": {"name": variable},
                "variable_monitoring": [m.wire() for m in monitors],
            }
            for (component, evse_id, variable), monitors in grouped.items()
        ]

    # --- evaluation -----------------------------------------------------------------------

    def reading(self, evse_id: int) -> None:
        """A new meter reading of ``evse_id``: trip, clear or report its monitors on the
        values read now (the power just read, the thermometer's latest)."""
        for monitor in self._monitors.values():
            if monitor.evse_id != evse_id or monitor.type in PERIODIC_TYPES:
                continue
            if monitor.transaction and not self._running(evse_id):
                continue
            value = self._evses.number(monitor.variable, evse_id)
            if value is not None:
                self._evaluate(monitor, value)

    async def run(self) -> None:
        """Report each periodic monitor's value when its period comes round; until
        cancelled. Wakes for the earliest one due, or when the monitors change."""
        while True:
            now = self._clock()
            for monitor in self._periodic():
                if monitor.due is None:
                    monitor.due = first_due(monitor.type, monitor.value, now)
                elif monitor.due <= now:
                    monitor.due = next_due(monitor.type, monitor.value, monitor.due, now)
                    self._period(monitor)
            due = [m.due for m in self._periodic() if m.due is not None]
            self._changed.clear()
            timeout = None if not due else max((min(due) - now).total_seconds(), 0.0)
            with contextlib.suppress(TimeoutError):  # the earliest period came round
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _periodic(self) -> list[Monitor]:
        return [m for m in self._monitors.values() if m.type in PERIODIC_TYPES]

    def _period(self, monitor: Monitor) -> None:
        """A periodic monitor's report: the value now (nothing without a reading). Not
        while offline: a value of then is history nobody asked for, and queued it would push
        a fault's report out of the bounded queue of :class:`NotifyEvents`."""
        if not self._online() or (monitor.transaction and not self._running(monitor.evse_id)):
            return
        value = self._evses.number(monitor.variable, monitor.evse_id)
        if value is not None:
            self._notify(monitor, value, PERIODIC, cleared=False)

    def _evaluate(self, monitor: Monitor, value: float) -> None:
        if monitor.type == DELTA:
            if monitor.reference is None:
                monitor.reference = value
            elif abs(value - monitor.reference) >= monitor.value:
                monitor.reference = value
                self._notify(monitor, value, "Delta", cleared=False)
            return
        beyond = value > monitor.value if monitor.type == UPPER else value < monitor.value
        if beyond != monitor.tripped:
            monitor.tripped = beyond
            self._notify(monitor, value, "Alerting", cleared=not beyond)

    def _notify(self, monitor: Monitor, value: float, trigger: str, *, cleared: bool) -> None:
        if monitor.severity > self.level:
            return
        data: dict[str, Any] = {
            "event_id": self._events.next_event_id(),
            "timestamp": iso_utc(self._clock()),
            "trigger": trigger,
            "actual_value": f"{value:.1f}",
            "event_notification_type": "CustomMonitor",
            "component": {"name": monitor.component, "evse": {"id": monitor.evse_id}},
            "variable": {"name": monitor.variable},
            "variable_monitoring_id": monitor.id,
        }
        if cleared:
            data["cleared"] = True
        log.info(
            "monitor %d: %s %s at %s.%s %.1f",
            monitor.id,
            trigger,
            "cleared" if cleared else "",
            monitor.component,
            monitor.variable,
            value,
        )
        self._events.report([data])
