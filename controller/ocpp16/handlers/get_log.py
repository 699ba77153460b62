"""GetLog (1.6 security whitepaper N01) onto the neutral
:class:`~controller.csms.get_log.LogUploads`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, Log, LogStatus

from controller.csms.get_log import LogKind

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
        answer, file_name = self._s.logs.plan_request(
            call_unique_id, LogKind(Log(log_type).value), request_id, log, retries, retry_interval
        )
        return call_result.GetLog(LogStatus(answer.value), filename=file_name)

    @after(Action.get_log)
    def after_get_log(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.logs.start_planned(call_unique_id)
