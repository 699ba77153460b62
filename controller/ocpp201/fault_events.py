"""NotifyEvent for the hardware's faults (N07: HardWiredNotification).

Each fault the supervisor reports on a connector is the Problem variable of the failing
device's component on that EVSE turning true (its FaultKind as techCode); when the fault
clears (or gives way to another) the same component's Problem turns false with
``cleared``. The component names are the 2.0.1 standardized ones closest to each device.
The reports go through :class:`~.notify_events.NotifyEvents`, so one made while offline is
delivered after the reconnect.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from controller.csms.wire import iso_utc
from controller.ocpp201.notify_events import NotifyEvents
from drivers.errors import FaultKind

_COMPONENT = {
    FaultKind.RCD_TRIP: "RCD",
    FaultKind.RCD_SELFTEST: "RCD",
    FaultKind.CONTACTOR_WELDED: "PowerContactor",
    FaultKind.CONTACTOR_FAILED_CLOSE: "PowerContactor",
    FaultKind.METER_OFFLINE: "FiscalMetering",
    FaultKind.READER_FAILURE: "TokenReader",
    FaultKind.CP_ERROR: "CPPWMController",
    FaultKind.DIODE_FAULT: "CPPWMController",
    FaultKind.CP_MISMATCH: "CPPWMController",
    FaultKind.OVERTEMPERATURE: "TemperatureSensor",
    FaultKind.LOCK_FAILURE: "ConnectorPlugRetentionLock",
    FaultKind.INTERNAL_ERROR: "Controller",
}


class FaultEvents:
    """The faults last reported per EVSE, and the NotifyEvent each change makes."""

    def __init__(self, events: NotifyEvents) -> None:
        self._faults: dict[int, FaultKind] = {}
        self._events = events

    def changed(self, evse_id: int, fault: FaultKind | None, at: dt.datetime) -> None:
        """Queue the NotifyEvent for ``evse_id`` now reporting ``fault`` (None: no fault);
        nothing when nothing changed."""
        previous = self._faults.get(evse_id)
        if previous == fault:
            return
        if fault is None:
            del self._faults[evse_id]
        else:
            self._faults[evse_id] = fault
        data: list[dict[str, Any]] = []
        if previous is not None:
            data.append(self._data(evse_id, previous, at, raised=False))
        if fault is not None:
            data.append(self._data(evse_id, fault, at, raised=True))
        self._events.report(data)

    def _data(
        self, evse_id: int, fault: FaultKind, at: dt.datetime, *, raised: bool
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "event_id": self._events.next_event_id(),
            "timestamp": iso_utc(at),
            "trigger": "Alerting",
            "actual_value": "true" if raised else "false",
            "event_notification_type": "HardWiredNotification",
            "component": {"name": _COMPONENT[fault], "evse": {"id": evse_id}},
            "variable": {"name": "Problem"},
            "tech_code": fault.value,
        }
        if not raised:
            data["cleared"] = True
        return data
