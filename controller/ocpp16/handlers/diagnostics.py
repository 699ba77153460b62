"""The 1.6 requests of :mod:`controller.ocpp16.diagnostics`, as a mixin of the ChargePoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16.enums import Action

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class DiagnosticsHandlers:
    """GetDiagnostics, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, call_unique_id: str, **kwargs: Any) -> Any:
        return self._s.diagnostics.plan(call_unique_id, location, **kwargs)

    @after(Action.get_diagnostics)
    def after_get_diagnostics(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.diagnostics.start_planned(call_unique_id)
