"""The 1.6 requests of :mod:`controller.ocpp16.triggers`, as a mixin of the
ChargePoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import (
    Action,
)

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class TriggerHandlers:
    """TriggerMessage, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.trigger_message)
    def on_trigger_message(
        self,
        requested_message: str,
        call_unique_id: str,
        connector_id: int | None = None,
        **kwargs: Any,
    ) -> Any:
        return self._s.triggers.plan(call_unique_id, requested_message, connector_id)

    @after(Action.trigger_message)
    def after_trigger_message(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.triggers.send_planned(cast(ChargePoint, self), call_unique_id)
