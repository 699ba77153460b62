"""The charge point side of an OCPP 1.6J connection: the ocpp library's ChargePoint with our
handlers for what the CSMS asks.

Each ``@on`` handler maps a request onto :class:`~controller.domain.ChargePointControl` (or
the configuration and authorization cache) and returns at once: none awaits an outgoing
call, which would stall the library's receive loop (its issue #130). Work that must follow
the answer (a reset) runs from ``@after`` in a task of our own, whose errors are logged.

:meth:`OcppChargePoint.route_message` replaces the library's: every frame is checked first
(:mod:`controller.ocpp16.errors`) so malformed frames get a CALLERROR instead of silence, and
each CALL is served in its own task so a slow handler never holds up the answers to our own
calls. One instance per websocket connection; loop thread only.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    AvailabilityType,
    ClearCacheStatus,
    ConfigurationStatus,
    DataTransferStatus,
    RemoteStartStopStatus,
    ResetStatus,
    UnlockStatus,
)
from websockets.exceptions import ConnectionClosed

from controller.csms.security_events import SecurityEvent
from controller.domain import Answer, ResetKind
from controller.ocpp16.errors import FrameProblem, call_error_for, check_frame
from controller.ocpp16.handlers.certificates import CertificateHandlers
from controller.ocpp16.handlers.diagnostics import DiagnosticsHandlers
from controller.ocpp16.handlers.extended_trigger import ExtendedTriggerHandlers
from controller.ocpp16.handlers.firmware import FirmwareHandlers
from controller.ocpp16.handlers.get_log import GetLogHandlers
from controller.ocpp16.handlers.local_list import LocalListHandlers
from controller.ocpp16.handlers.reservations import ReservationHandlers
from controller.ocpp16.handlers.smart_charging import SmartChargingHandlers
from controller.ocpp16.handlers.triggers import TriggerHandlers

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)

#: DataTransfer: our vendorId, and the messageIds we answer.
VENDOR_ID = "picharge"
MESSAGE_CONNECTOR_STATUS = "ConnectorStatus"


_AVAILABILITY = {
    Answer.ACCEPTED: AvailabilityStatus.accepted,
    Answer.SCHEDULED: AvailabilityStatus.scheduled,
}
_UNLOCK = {
    Answer.UNLOCKED: UnlockStatus.unlocked,
    Answer.NOT_SUPPORTED: UnlockStatus.not_supported,
}


class OcppChargePoint(
    CertificateHandlers,
    DiagnosticsHandlers,
    ExtendedTriggerHandlers,
    FirmwareHandlers,
    GetLogHandlers,
    LocalListHandlers,
    ReservationHandlers,
    SmartChargingHandlers,
    TriggerHandlers,
    ChargePoint,
):
    def __init__(
        self, chargepoint_id: str, connection: Any, services: Services, response_timeout: float
    ) -> None:
        super().__init__(chargepoint_id, connection, response_timeout=response_timeout)
        self._s = services

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
            self._s.spawn(self._serve(message), f"ocpp16-{message.action}-{message.unique_id}")
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

    # --- transactions -----------------------------------------------------------------------

    @on(Action.remote_start_transaction)
    async def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        control = self._s.control
        if connector_id is not None and connector_id not in control.connector_ids:
            log.info("RemoteStartTransaction for unknown connector %s: Rejected", connector_id)
            return call_result.RemoteStartTransaction(RemoteStartStopStatus.rejected)
        authorized = not self._s.config.get_bool("AuthorizeRemoteTxRequests")
        held = None
        if charging_profile is not None:
            held = await self._hold_remote_start_profile(connector_id, id_tag, charging_profile)
            if held is None:
                return call_result.RemoteStartTransaction(RemoteStartStopStatus.rejected)
        accepted = await control.remote_start(id_tag, connector_id, authorized)
        if held is not None and not accepted:
            self._release_remote_start_profile(held)
        status = RemoteStartStopStatus.accepted if accepted else RemoteStartStopStatus.rejected
        return call_result.RemoteStartTransaction(status)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **kwargs: Any) -> Any:
        tx = self._s.control.transaction_by_csms_id(transaction_id)
        stopped = tx is not None and await self._s.control.remote_stop(tx)
        status = RemoteStartStopStatus.accepted if stopped else RemoteStartStopStatus.rejected
        return call_result.RemoteStopTransaction(status)

    # --- the charge point -------------------------------------------------------------------

    @on(Action.reset)
    def on_reset(self, type: str, **kwargs: Any) -> Any:
        return call_result.Reset(ResetStatus.accepted)

    @after(Action.reset)
    def after_reset(self, type: str, **kwargs: Any) -> None:
        event = SecurityEvent.RESET_OR_REBOOT
        self._s.security_events.record(event, f"{type} reset requested by the CSMS")
        self._s.spawn(self._s.control.reset(ResetKind(type)), f"ocpp16-reset-{type}")

    @on(Action.unlock_connector)
    async def on_unlock(self, connector_id: int, **kwargs: Any) -> Any:
        if connector_id not in self._s.control.connector_ids:
            return call_result.UnlockConnector(UnlockStatus.not_supported)
        answer = await self._s.control.unlock(connector_id)
        return call_result.UnlockConnector(_UNLOCK.get(answer, UnlockStatus.unlock_failed))

    @on(Action.change_availability)
    async def on_change_availability(self, connector_id: int, type: str, **kwargs: Any) -> Any:
        if connector_id != 0 and connector_id not in self._s.control.connector_ids:
            return call_result.ChangeAvailability(AvailabilityStatus.rejected)
        available = type == AvailabilityType.operative
        answer = await self._s.control.change_availability(connector_id, available)
        return call_result.ChangeAvailability(
            _AVAILABILITY.get(answer, AvailabilityStatus.rejected)
        )

    @on(Action.clear_cache)
    async def on_clear_cache(self, **kwargs: Any) -> Any:
        cleared = await self._s.authorizer.clear()
        return call_result.ClearCache(
            ClearCacheStatus.accepted if cleared else ClearCacheStatus.rejected
        )

    @on(Action.data_transfer)
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None, **kwargs: Any
    ) -> Any:
        if vendor_id.casefold() != VENDOR_ID:
            return call_result.DataTransfer(DataTransferStatus.unknown_vendor_id)
        if message_id != MESSAGE_CONNECTOR_STATUS:
            return call_result.DataTransfer(DataTransferStatus.unknown_message_id)
        return call_result.DataTransfer(DataTransferStatus.accepted, data=self._status_json())

    def _status_json(self) -> str:
        """DataTransfer picharge/ConnectorStatus: each connector as the supervisor sees it."""
        views = [self._s.control.view(c) for c in self._s.control.connector_ids]
        return json.dumps(
            [
                {
                    "connectorId": v.connector_id,
                    "status": v.status.value,
                    "fault": v.fault.value if v.fault else None,
                    "transactionId": v.transaction.csms_id if v.transaction else None,
                    "energyWh": v.reading.energy_import_wh if v.reading else None,
                    "offeredA": v.offered_a,
                }
                for v in views
            ],
            separators=(",", ":"),
        )

    # --- configuration ----------------------------------------------------------------------

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **kwargs: Any) -> Any:
        known, unknown = self._s.config.entries(key)
        return call_result.GetConfiguration(
            configuration_key=[
                {"key": e.key, "readonly": e.readonly, "value": e.value} for e in known
            ]
            or None,
            unknown_key=unknown or None,
        )

    @on(Action.change_configuration)
    async def on_change_configuration(self, key: str, value: str, **kwargs: Any) -> Any:
        status = await self._s.config.change(key, value)
        return call_result.ChangeConfiguration(ConfigurationStatus(status.value))
