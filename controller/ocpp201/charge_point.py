"""The charging-station side of an OCPP 2.0.1 connection: the ocpp library's v201
ChargePoint, with every frame checked first and each CALL served in a task of its own.

Handlers (here the device model's, in :mod:`.remote` the remote control's) map a request
onto the device model or :class:`~controller.domain.ChargePointControl` and return at once
(an ``@on`` handler that awaited an outgoing call would stall the library's receive loop:
its issue #130). A CALL without a handler is answered NotSupported (see :mod:`.errors`).
One instance per websocket connection; loop thread only.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result
from ocpp.v201.datatypes import GetVariableResultType, SetVariableResultType
from ocpp.v201.enums import Action, GetVariableStatusEnumType
from websockets.exceptions import ConnectionClosed

from controller.ocpp201.device_model import Mutability, SetStatus
from controller.ocpp201.errors import call_error_for, check_frame
from controller.ocpp201.remote import RemoteHandlers
from controller.ocpp201.services import Services
from controller.ocppj.frames import FrameProblem

log = logging.getLogger(__name__)

#: The only attribute this slice keeps per variable (MinSet/MaxSet/Target are not held).
ACTUAL = "Actual"


class Ocpp201ChargePoint(RemoteHandlers, ChargePoint):
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

    # --- frames ---------------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        message = check_frame(raw_msg)
        if isinstance(message, FrameProblem):
            log.warning(
                "malformed frame from the CSMS (%s): %.200r",
                message.error.details.get("cause"),
                raw_msg,
            )
            await self._send(message.to_json())
        elif isinstance(message, Call):
            self._spawn(self._serve(message), f"ocpp201-{message.action}-{message.unique_id}")
        else:
            self._response_queue.put_nowait(message)

    async def _serve(self, message: Call) -> None:
        try:
            await self._handle_call(message)
        except OCPPError as error:
            answer = call_error_for(message, error)
            log.warning("%s %s: CALLERROR %s", message.action, message.unique_id, answer.code)
            try:
                await self._send(message.create_call_error(answer).to_json())
            except ConnectionClosed:
                log.info("link closed before the CALLERROR for %s went out", message.action)
        except ConnectionClosed:
            log.info("link closed before the answer to %s went out", message.action)

    # --- provisioning (B06, B05) ----------------------------------------------------------

    @on(Action.get_variables)
    async def _on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return call_result.GetVariables(
            get_variable_result=[self._get_one(item) for item in get_variable_data]
        )

    def _get_one(self, item: dict[str, Any]) -> GetVariableResultType:
        component, variable = item["component"], item["variable"]
        attribute = item.get("attribute_type", ACTUAL)
        name = f"{component['name']}.{variable['name']}"
        defn = self._model.definition(name)
        status, value = GetVariableStatusEnumType.accepted, None
        if defn is None:
            status = (
                GetVariableStatusEnumType.unknown_variable
                if self._model.knows_component(component["name"])
                else GetVariableStatusEnumType.unknown_component
            )
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

    @on(Action.set_variables)
    async def _on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in set_variable_data:
            component, variable = item["component"], item["variable"]
            attribute = item.get("attribute_type", ACTUAL)
            if attribute != ACTUAL:
                name = f"{component['name']}.{variable['name']}"
                known = self._model.definition(name) is not None
                status = SetStatus.NOT_SUPPORTED_ATTRIBUTE_TYPE if known else None
            else:
                status = None
            if status is None:
                status = await self._model.change(
                    f"{component['name']}.{variable['name']}", item["attribute_value"]
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
