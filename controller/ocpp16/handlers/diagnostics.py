"""GetDiagnostics (1.6 §5.7) onto the neutral
:class:`~controller.csms.diagnostics.Diagnostics`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class DiagnosticsHandlers:
    """GetDiagnostics, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.get_diagnostics)
    def on_get_diagnostics(
        self,
        location: str,
        call_unique_id: str,
        start_time: str | None = None,
        stop_time: str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> Any:
        file_name = self._s.diagnostics.plan(
            call_unique_id,
            location,
            start_time=start_time,
            stop_time=stop_time,
            retries=retries,
            retry_interval=retry_interval,
        )
        return call_result.GetDiagnostics(file_name=file_name)

    @after(Action.get_diagnostics)
    def after_get_diagnostics(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.diagnostics.start_planned(call_unique_id)
