"""The EVSE, Connector and TemperatureSensor components of the device model: one instance
per EVSE (its one connector is connector 1), with values read live rather than stored.

=============================  ==================  ======================================
variable                       attributes          value
=============================  ==================  ======================================
EVSE.Power (W)                 Actual, Target,     the meter's total active power; Target
                               MaxSet              the power offered now (the current the
                                                   PWM offers x phases x 230 V); MaxSet
                                                   the most the EVSE can deliver (its
                                                   maximum current x phases x 230 V)
EVSE.AvailabilityState         Actual              Available, Occupied, Reserved,
                                                   Unavailable or Faulted
EVSE.SupplyPhases              Actual              the phases wired (1 or 3)
Connector.AvailabilityState    Actual              as the EVSE's
TemperatureSensor.Temperature  Actual              the connector's thermometer (Celsius),
                                                   read every 10 s (empty until the first
                                                   reading); only on an EVSE that has one
=============================  ==================  ======================================

All are ReadOnly: SetVariables gets Rejected for an attribute they have and
NotSupportedAttributeType for one they lack (Target, MinSet, or MaxSet where not listed),
GetVariables NotSupportedAttributeType for the latter; an EVSE or connector that does not
exist is UnknownComponent (B05/B06). MaxSet of Power is what a CSMS reads before it sets a
limit, Target what the limits it set (and the site's, the user's) come to; the limit itself
is smart charging's (block K), not this variable's: a Target set through SetVariables would
be a second way round the composite schedule, so it is Rejected. EVSE.Power is
and TemperatureSensor.Temperature are the variables the monitors of :mod:`.monitoring` watch
(:meth:`EvseVariables.number`). Loop thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.charging_schedule import ConnectorRating, RateUnit, from_amps
from controller.domain import ChargePointControl, MeterSample
from controller.ocpp201.device_model import DataType, SetStatus
from controller.ocpp201.status import connector_status

ACTUAL, TARGET, MAX_SET = "Actual", "Target", "MaxSet"
EVSE, CONNECTOR, THERMOMETER = "EVSE", "Connector", "TemperatureSensor"
COMPONENTS = frozenset({EVSE, CONNECTOR, THERMOMETER})
#: The variables a monitor may watch: (component, variable).
MONITORABLE = frozenset({(EVSE, "Power"), (THERMOMETER, "Temperature")})
Item = dict[str, Any]


def max_power_w(rating: ConnectorRating) -> int:
    """The most an EVSE delivers: its maximum current on each of its phases at 230 V."""
    return round(from_amps(rating.max_current_a, RateUnit.WATTS, rating.phases))


@dataclass(frozen=True, slots=True)
class LiveVariable:
    component: str
    variable: str
    data_type: DataType
    attributes: tuple[str, ...]
    unit: str | None = None
    values_list: str | None = None


AVAILABILITY = "Available,Occupied,Reserved,Unavailable,Faulted"
VARIABLES: tuple[LiveVariable, ...] = (
    LiveVariable(EVSE, "Power", DataType.DECIMAL, (ACTUAL, TARGET, MAX_SET), unit="W"),
    LiveVariable(EVSE, "AvailabilityState", DataType.OPTION_LIST, (ACTUAL,), None, AVAILABILITY),
    LiveVariable(EVSE, "SupplyPhases", DataType.INTEGER, (ACTUAL,)),
    LiveVariable(
        CONNECTOR, "AvailabilityState", DataType.OPTION_LIST, (ACTUAL,), None, AVAILABILITY
    ),
    LiveVariable(THERMOMETER, "Temperature", DataType.DECIMAL, (ACTUAL,), unit="Celsius"),
)
_BY_NAME = {(v.component, v.variable): v for v in VARIABLES}


class Unknown(Exception):
    """A component or variable this table does not hold; ``status`` says which."""

    def __init__(self, status: SetStatus) -> None:
        super().__init__(status.value)
        self.status = status


class EvseVariables:
    """The live EVSE and Connector variables of the EVSEs ``ratings`` describes."""

    def __init__(
        self,
        control: ChargePointControl,
        ratings: Mapping[int, ConnectorRating],
        latest: Callable[[int], MeterSample | None],
    ) -> None:
        self._control = control
        self._ratings = ratings
        self._latest = latest

    def find(
        self, component: Mapping[str, Any], variable: Mapping[str, Any]
    ) -> tuple[LiveVariable, int]:
        """The variable a request names and its EVSE id; :class:`Unknown` otherwise."""
        evse = component.get("evse") or {}
        evse_id = evse.get("id")
        connector = evse.get("connector_id")
        if evse_id not in self._control.connector_ids or evse_id not in self._ratings:
            raise Unknown(SetStatus.UNKNOWN_COMPONENT)
        if component["name"] == CONNECTOR and connector != 1:
            raise Unknown(SetStatus.UNKNOWN_COMPONENT)
        if component["name"] in (EVSE, THERMOMETER) and connector not in (None, 1):
            raise Unknown(SetStatus.UNKNOWN_COMPONENT)
        if component["name"] == THERMOMETER and not self._control.view(evse_id).thermometer:
            raise Unknown(SetStatus.UNKNOWN_COMPONENT)
        live = _BY_NAME.get((component["name"], variable["name"]))
        if live is None:
            raise Unknown(SetStatus.UNKNOWN_VARIABLE)
        return live, int(evse_id)

    def power_w(self, evse_id: int) -> float | None:
        """The EVSE's total active power now (None: no reading yet)."""
        sample = self._latest(evse_id)
        return None if sample is None else sample.reading.total_power_w

    def target_w(self, evse_id: int) -> float:
        """The power the EVSE offers now: the PWM's current on each of its phases at 230 V
        (0 when it offers none)."""
        rating = self._ratings[evse_id]
        return from_amps(self._control.view(evse_id).offered_a, RateUnit.WATTS, rating.phases)

    def number(self, variable: str, evse_id: int) -> float | None:
        """The value now of a monitorable ``variable`` (Power or Temperature) of the EVSE
        (None: no reading yet)."""
        if variable == "Temperature":
            return self._control.view(evse_id).temperature_c
        return self.power_w(evse_id)

    def value(self, live: LiveVariable, evse_id: int, attribute: str) -> str:
        """The ``attribute`` of ``live`` on ``evse_id`` as text (one of its attributes)."""
        if live.variable == "Power":
            if attribute == MAX_SET:
                return str(max_power_w(self._ratings[evse_id]))
            if attribute == TARGET:
                return f"{self.target_w(evse_id):.1f}"
            power = self.power_w(evse_id)
            return "" if power is None else f"{power:.1f}"
        if live.variable == "SupplyPhases":
            return str(self._ratings[evse_id].phases)
        if live.variable == "Temperature":
            celsius = self.number("Temperature", evse_id)
            return "" if celsius is None else f"{celsius:.1f}"
        return connector_status(self._control.view(evse_id).status).value

    def get(
        self, component: Mapping[str, Any], variable: Mapping[str, Any], attribute: str
    ) -> tuple[str, str | None]:
        """GetVariables of one item: (GetVariableStatus, value or None)."""
        try:
            live, evse_id = self.find(component, variable)
        except Unknown as unknown:
            return unknown.status.value, None
        if attribute not in live.attributes:
            return "NotSupportedAttributeType", None
        return "Accepted", self.value(live, evse_id, attribute)

    def change(
        self, component: Mapping[str, Any], variable: Mapping[str, Any], attribute: str
    ) -> SetStatus:
        """SetVariables of one item: every attribute here is read-only."""
        try:
            live, _ = self.find(component, variable)
        except Unknown as unknown:
            return unknown.status
        if attribute not in live.attributes:
            return SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
        return SetStatus.REJECTED

    def report_items(self, wanted: set[tuple[str, str | None]] | None = None) -> list[Item]:
        """ReportDataType items (camelCase) of every EVSE's variables, or those ``wanted``
        as (component, variable or None for all of the component's)."""
        items = []
        for evse_id in self._control.connector_ids:
            if evse_id not in self._ratings:
                continue
            for live in VARIABLES:
                if live.component == THERMOMETER and not self._control.view(evse_id).thermometer:
                    continue
                if wanted is not None and not (
                    (live.component, live.variable) in wanted or (live.component, None) in wanted
                ):
                    continue
                items.append(self._item(live, evse_id))
        return items

    def _item(self, live: LiveVariable, evse_id: int) -> Item:
        evse: Item = {"id": evse_id}
        if live.component == CONNECTOR:
            evse["connectorId"] = 1
        characteristics: Item = {
            "dataType": live.data_type.value,
            "supportsMonitoring": (live.component, live.variable) in MONITORABLE,
        }
        if live.unit is not None:
            characteristics["unit"] = live.unit
        if live.values_list is not None:
            characteristics["valuesList"] = live.values_list
        if live.variable == "Power":
            characteristics["maxLimit"] = max_power_w(self._ratings[evse_id])
        return {
            "component": {"name": live.component, "evse": evse},
            "variable": {"name": live.variable},
            "variableAttribute": [
                {
                    "type": attribute,
                    "value": self.value(live, evse_id, attribute),
                    "mutability": "ReadOnly",
                    "persistent": False,
                    "constant": attribute == MAX_SET or live.variable == "SupplyPhases",
                }
                for attribute in live.attributes
            ],
            "variableCharacteristics": characteristics,
        }
