"""Diagnostics (N01, N02-N04), as a mixin of
:class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

GetLog (DiagnosticsLog or SecurityLog) is the version-neutral
:class:`~controller.csms.get_log.LogUploads` as 1.6's GetLog uses it: the answer names the
file at once, the upload runs from ``@after`` and reports through LogStatusNotification.
The variable monitors (SetVariableMonitoring, SetMonitoringBase, SetMonitoringLevel,
ClearVariableMonitoring, GetMonitoringReport) are :class:`~.monitoring.Monitors`'.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import (
    Action,
    GenericDeviceModelStatusEnumType,
    GenericStatusEnumType,
    LogStatusEnumType,
    UploadLogStatusEnumType,
)

from controller.csms.get_log import LogKind
from controller.csms.wire import iso_utc
from controller.ocpp201.reports import send_in_parts

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)


def log_status_request(status: str, request_id: int | None) -> call.LogStatusNotification:
    """LogStatusNotification; Idle goes without a requestId (optional in the schema)."""
    return call.LogStatusNotification(UploadLogStatusEnumType(status), request_id)


class DiagnosticsHandlers:
    """GetLog and the variable monitors, mixed into the 2.0.1 ChargePoint."""

    _s: Services

    @on(Action.get_log)
    def on_get_log(
        self,
        log: dict[str, Any],
        log_type: str,
        request_id: int,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **_: Any,
    ) -> Any:
        answer, file_name = self._s.logs.plan_request(
            call_unique_id, LogKind(log_type), request_id, log, retries, retry_interval
        )
        return call_result.GetLog(LogStatusEnumType(answer.value), filename=file_name)

    @after(Action.get_log)
    def after_get_log(self, call_unique_id: str, **_: Any) -> None:
        self._s.logs.start_planned(call_unique_id)

    # --- monitors (N02-N04) -----------------------------------------------------------------

    @on(Action.set_variable_monitoring)
    async def on_set_variable_monitoring(
        self, set_monitoring_data: list[dict[str, Any]], **_: Any
    ) -> Any:
        results = await self._s.monitors.set(set_monitoring_data)
        return call_result.SetVariableMonitoring(set_monitoring_result=results)

    @on(Action.clear_variable_monitoring)
    async def on_clear_variable_monitoring(self, id: list[int], **_: Any) -> Any:
        results = await self._s.monitors.clear(id)
        return call_result.ClearVariableMonitoring(clear_monitoring_result=results)

    @on(Action.set_monitoring_base)
    async def on_set_monitoring_base(self, monitoring_base: str, **_: Any) -> Any:
        await self._s.monitors.set_base(monitoring_base)
        return call_result.SetMonitoringBase(GenericDeviceModelStatusEnumType.accepted)

    @on(Action.set_monitoring_level)
    async def on_set_monitoring_level(self, severity: int, **_: Any) -> Any:
        accepted = await self._s.monitors.set_level(severity)
        return call_result.SetMonitoringLevel(
            GenericStatusEnumType.accepted if accepted else GenericStatusEnumType.rejected
        )

    @on(Action.get_monitoring_report)
    def on_get_monitoring_report(
        self,
        request_id: int,
        monitoring_criteria: list[str] | None = None,
        component_variable: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        if not self._s.monitors.report(monitoring_criteria, component_variable):
            return call_result.GetMonitoringReport(
                GenericDeviceModelStatusEnumType.empty_result_set
            )
        return call_result.GetMonitoringReport(GenericDeviceModelStatusEnumType.accepted)

    @after(Action.get_monitoring_report)
    def after_get_monitoring_report(
        self,
        request_id: int,
        monitoring_criteria: list[str] | None = None,
        component_variable: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> None:
        items = self._s.monitors.report(monitoring_criteria, component_variable)
        if items:
            self._s.spawn(
                self._notify_monitoring_report(request_id, items),
                f"ocpp201-monitoring-report-{request_id}",
            )

    async def _notify_monitoring_report(self, request_id: int, items: list[Any]) -> None:
        """NotifyMonitoringReport in parts of at most ItemsPerMessage items (N02)."""
        generated_at = iso_utc(self._s.clock())

        def part(seq_no: int, data: list[Any], tbc: bool) -> call.NotifyMonitoringReport:
            return call.NotifyMonitoringReport(
                request_id=request_id,
                seq_no=seq_no,
                generated_at=generated_at,
                monitor=data,
                tbc=tbc,
            )

        what = f"NotifyMonitoringReport {request_id}"
        await send_in_parts(self, self._s.model, items, part, what)
