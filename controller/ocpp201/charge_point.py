"""The charging-station side of an OCPP 2.0.1 connection: the ocpp library's v201
ChargePoint, its frames and CALLs served as :mod:`controller.ocppj.serving` says (checked
first, one at a time with a bounded backlog) with the 2.0.1 error codes.

Handlers (here the device model's, in :mod:`.remote` the remote control's, in
:mod:`.security_handlers` the certificates' and firmware's, in :mod:`.auth_handlers` the
local list's and the cache's, in :mod:`.reservation_handlers` the reservations') map a request
onto the device model or :class:`~controller.domain.ChargePointControl` and return at once
(an ``@on`` handler that awaited an outgoing call would stall the library's receive loop:
its issue #130). A CALL without a handler is answered NotSupported (see :mod:`.errors`).
One instance per websocket connection; loop thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from ocpp.exceptions import OccurrenceConstraintViolationError, OCPPError
from ocpp.messages import Call, CallError, CallResult
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.datatypes import GetVariableResultType, SetVariableResultType
from ocpp.v201.enums import (
    Action,
    GenericDeviceModelStatusEnumType,
    GetVariableStatusEnumType,
    ReportBaseEnumType,
)

from controller.csms.wire import iso_utc
from controller.ocpp201.auth_handlers import AuthHandlers
from controller.ocpp201.device_model import Mutability, SetStatus, requested_key
from controller.ocpp201.diagnostics_handlers import DiagnosticsHandlers
from controller.ocpp201.errors import call_error_for, check_frame
from controller.ocpp201.evse_variables import COMPONENTS as LIVE_COMPONENTS
from controller.ocpp201.provisioning_handlers import ProvisioningHandlers
from controller.ocpp201.remote import RemoteHandlers
from controller.ocpp201.reports import report_data, send_in_parts
from controller.ocpp201.reservation_handlers import ReservationHandlers
from controller.ocpp201.security_handlers import SecurityHandlers
from controller.ocpp201.services import Services
from controller.ocpp201.smart_charging_handlers import SmartChargingHandlers
from controller.ocppj.frames import FrameProblem
from controller.ocppj.serving import CallServing

log = logging.getLogger(__name__)

#: The attribute the stored variables hold (a bounded integer also has read-only MinSet and
#: MaxSet, the live EVSE variables MaxSet of Power).
ACTUAL = "Actual"


class Ocpp201ChargePoint(
    RemoteHandlers,
    SecurityHandlers,
    AuthHandlers,
    ReservationHandlers,
    SmartChargingHandlers,
    DiagnosticsHandlers,
    ProvisioningHandlers,
    CallServing,
    ChargePoint,
):
    def __init__(
        self, chargepoint_id: str, connection: Any, *, services: Services, response_timeout: float
    ) -> None:
        super().__init__(chargepoint_id, connection, response_timeout=response_timeout)
        self._s = services
        self._model = services.model
        self._spawn = services.spawn
        #: Set by the link loop once this connection's BootNotification is Accepted (or the
        #: station registered earlier in this run); until then remote starts are refused.
        self.registered = False
        self.init_serving("ocpp201")

    def check_frame(self, raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
        return check_frame(raw)

    def call_error_for(self, call: Call, error: OCPPError) -> OCPPError:
        return call_error_for(call, error)

    def spawn_serving(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._spawn(coro, name)

    # --- provisioning (B06, B05) ----------------------------------------------------------

    @on(Action.get_variables)
    async def _on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._within_items(get_variable_data, "GetVariables")
        return call_result.GetVariables(
            get_variable_result=[self._get_one(item) for item in get_variable_data]
        )

    def _within_items(self, items: list[dict[str, Any]], request: str) -> None:
        """Refuse a request of more items than DeviceDataCtrlr.ItemsPerMessage[request]
        allows (B05/B06: OccurrenceConstraintViolation), before any of them is applied."""
        most = self._model.get_int(f"DeviceDataCtrlr.ItemsPerMessage[{request}]")
        if len(items) > most:
            raise OccurrenceConstraintViolationError(
                description=f"{len(items)} items, ItemsPerMessage[{request}] is {most}"
            )

    def _get_one(self, item: dict[str, Any]) -> GetVariableResultType:
        component, variable = item["component"], item["variable"]
        attribute = item.get("attribute_type", ACTUAL)
        name = requested_key(component, variable)
        defn = self._model.definition(name)
        status, value = GetVariableStatusEnumType.accepted, None
        if component["name"] in LIVE_COMPONENTS:
            live_status, value = self._s.evses.get(component, variable, attribute)
            status = GetVariableStatusEnumType(live_status)
        elif defn is None:
            status = (
                GetVariableStatusEnumType.unknown_variable
                if self._model.knows_component(component["name"])
                else GetVariableStatusEnumType.unknown_component
            )
        elif attribute in defn.bounds:
            value = defn.bounds[attribute]
        elif attribute != ACTUAL:
            status = GetVariableStatusEnumType.not_supported_attribute_type
        elif defn.mutability is Mutability.WRITE_ONLY:
            status = GetVariableStatusEnumType.rejected  # B06.FR.05: never told
        else:
            value = self._model.get(name)
        return GetVariableResultType(
            attribute_status=status,
            component=component,
            variable=variable,
            attribute_type=attribute,
            attribute_value=value,
        )

    # --- reports (B07, B08) -----------------------------------------------------------------

    @on(Action.get_base_report)
    def _on_get_base_report(self, request_id: int, report_base: str, **_: Any) -> Any:
        if report_base == ReportBaseEnumType.summary_inventory:
            return call_result.GetBaseReport(GenericDeviceModelStatusEnumType.not_supported)
        return call_result.GetBaseReport(GenericDeviceModelStatusEnumType.accepted)

    @after(Action.get_base_report)
    def _after_get_base_report(self, request_id: int, report_base: str, **_: Any) -> None:
        if report_base == ReportBaseEnumType.summary_inventory:
            return
        configuration = report_base == ReportBaseEnumType.configuration_inventory
        items = report_data(self._model, configuration_only=configuration)
        if not configuration:  # the EVSE and Connector variables are all read-only
            items += self._s.evses.report_items()
        self._spawn(self._notify_report(request_id, items), f"ocpp201-report-{request_id}")

    def _wanted(self, component_variable: list[dict[str, Any]] | None) -> list[Any] | None:
        if component_variable is None:
            return None
        return [
            (cv["component"]["name"], (cv.get("variable") or {}).get("name"))
            for cv in component_variable
        ]

    @on(Action.get_report)
    def _on_get_report(
        self,
        request_id: int,
        component_variable: list[dict[str, Any]] | None = None,
        component_criteria: list[str] | None = None,
        **_: Any,
    ) -> Any:
        if component_criteria:  # Active/Available/Enabled/Problem: not kept per component
            return call_result.GetReport(GenericDeviceModelStatusEnumType.not_supported)
        if not self._report_items(component_variable):
            return call_result.GetReport(GenericDeviceModelStatusEnumType.empty_result_set)
        return call_result.GetReport(GenericDeviceModelStatusEnumType.accepted)

    @after(Action.get_report)
    def _after_get_report(
        self,
        request_id: int,
        component_variable: list[dict[str, Any]] | None = None,
        component_criteria: list[str] | None = None,
        **_: Any,
    ) -> None:
        items = self._report_items(component_variable)
        if items and not component_criteria:
            self._spawn(self._notify_report(request_id, items), f"ocpp201-report-{request_id}")

    def _report_items(self, component_variable: list[dict[str, Any]] | None) -> list[Any]:
        """GetReport's items: the stored variables, then the live EVSE/Connector ones."""
        wanted = self._wanted(component_variable)
        items = report_data(self._model, wanted=wanted)
        return items + self._s.evses.report_items(None if wanted is None else set(wanted))

    async def _notify_report(self, request_id: int, items: list[dict[str, Any]]) -> None:
        generated_at = iso_utc(self._s.clock())

        def part(seq_no: int, data: list[dict[str, Any]], tbc: bool) -> call.NotifyReport:
            return call.NotifyReport(
                request_id=request_id,
                generated_at=generated_at,
                seq_no=seq_no,
                report_data=data,
                tbc=tbc,
            )

        await send_in_parts(self, self._model, items, part, f"NotifyReport {request_id}")

    @on(Action.set_variables)
    async def _on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        self._within_items(set_variable_data, "SetVariables")
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", ACTUAL)
            status: SetStatus | None = None
            if component["name"] in LIVE_COMPONENTS:
                status = self._s.evses.change(component, variable, attribute)
            elif attribute != ACTUAL:
                defn = self._model.definition(requested_key(component, variable))
                if defn is not None and attribute in defn.bounds:
                    status = SetStatus.REJECTED  # the bounds are the charger's, read-only
                elif defn is not None:
                    status = SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE
            if status is None:
                status = await self._model.change(
                    requested_key(component, variable), item["attribute_value"]
                )
            results.append(
                SetVariableResultType(
                    attribute_status=status.value,
                    component=component,
                    variable=variable,
                    attribute_type=attribute,
                )
            )
        return call_result.SetVariables(set_variable_result=results)
