"""The 1.6 requests of :mod:`controller.ocpp16.extended_trigger`, as a mixin of the
ChargePoint."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class ExtendedTriggerHandlers:
    """ExtendedTriggerMessage, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.extended_trigger_message)
    def on_extended_trigger_message(
        self,
        requested_message: str,
        call_unique_id: str,
        connector_id: int | None = None,
        **kwargs: Any,
    ) -> Any:
        return self._s.extended_triggers.plan(call_unique_id, requested_message, connector_id)

    @after(Action.extended_trigger_message)
    def after_extended_trigger_message(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.triggers.send_planned(cast(ChargePoint, self), call_unique_id)
