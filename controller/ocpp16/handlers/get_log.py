"""The 1.6 requests of :mod:`controller.ocpp16.get_log`, as a mixin of the ChargePoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16.enums import Action

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class GetLogHandlers:
    """GetLog, mixed into the OCPP 1.6 ChargePoint."""

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
        **kwargs: Any,
    ) -> Any:
        return self._s.logs.plan(call_unique_id, log_type, request_id, log, retries, retry_interval)

    @after(Action.get_log)
    def after_get_log(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.logs.start_planned(call_unique_id)
