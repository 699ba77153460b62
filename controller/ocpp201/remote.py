"""The CSMS's remote control of the station (F01-F06, G03, B11, P01), as a mixin of
:class:`~controller.ocpp201.charge_point.Ocpp201ChargePoint`.

RequestStartTransaction (its TxProfile held by the smart-charging service before the
start is asked, released if the start is refused) and RequestStopTransaction,
GetTransactionStatus, Reset (Immediate/OnIdle, the whole station or one EVSE; a
ResetOrReboot security event), ChangeAvailability (station or EVSE; Scheduled while a
transaction runs), UnlockConnector, TriggerMessage (BootNotification while not accepted,
Heartbeat, StatusNotification, MeterValues, TransactionEvent, FirmwareStatusNotification,
SignChargingStationCertificate, LogStatusNotification) and DataTransfer (no vendor
extensions: UnknownVendorId). Each ``@on`` handler answers at once; what follows the
answer (a reset, a triggered message) runs from ``@after`` in a task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import (
    Action,
    BootReasonEnumType,
    ChangeAvailabilityStatusEnumType,
    DataTransferStatusEnumType,
    MessageTriggerEnumType,
    OperationalStatusEnumType,
    RequestStartStopStatusEnumType,
    ResetEnumType,
    ResetStatusEnumType,
    TriggerMessageStatusEnumType,
    UnlockStatusEnumType,
)

from controller.connector_types import StopReason
from controller.csms.firmware import FirmwareStatus
from controller.csms.security_events import SecurityEvent
from controller.domain import Answer, ResetKind, Transaction
from controller.ocpp201 import boot_reason
from controller.ocpp201.meter_values import meter_value
from controller.ocpp201.security_wire import firmware_status_request
from controller.ocpp201.smart_charging import SmartChargingVariables
from controller.ocpp201.status import status_request
from controller.ocppj.caller import call_checked, describe
from controller.ocppj.frames import CALL_FAILURES

if TYPE_CHECKING:
    from controller.ocpp201.services import Services

log = logging.getLogger(__name__)

ACCEPTED = RequestStartStopStatusEnumType.accepted
REJECTED = RequestStartStopStatusEnumType.rejected
#: How often an OnIdle reset looks whether the station is idle yet, in seconds.
ON_IDLE_POLL_S = 0.5
_AVAILABILITY = {
    Answer.ACCEPTED: ChangeAvailabilityStatusEnumType.accepted,
    Answer.SCHEDULED: ChangeAvailabilityStatusEnumType.scheduled,
}
_TRIGGERS = frozenset(
    {
        MessageTriggerEnumType.boot_notification,
        MessageTriggerEnumType.heartbeat,
        MessageTriggerEnumType.status_notification,
        MessageTriggerEnumType.meter_values,
        MessageTriggerEnumType.transaction_event,
        MessageTriggerEnumType.firmware_status_notification,
        MessageTriggerEnumType.sign_charging_station_certificate,
        MessageTriggerEnumType.log_status_notification,
    }
)


class RemoteHandlers:
    """Remote control, mixed into the 2.0.1 ChargePoint."""

    _s: Services
    registered: bool  # this connection's BootNotification is Accepted

    # --- transactions (F01-F04) -------------------------------------------------------------

    def _running(self, transaction_id: str) -> Transaction | None:
        control = self._s.control
        for connector_id in control.connector_ids:
            tx = control.view(connector_id).transaction
            if tx is not None and tx.local_id == transaction_id:
                return tx
        return None

    @on(Action.request_start_transaction)
    async def on_request_start(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        control = self._s.control
        if not self.registered:
            log.info("RequestStartTransaction while the boot is not Accepted: Rejected")
            return call_result.RequestStartTransaction(REJECTED)
        if evse_id is not None and evse_id not in control.connector_ids:
            log.info("RequestStartTransaction for unknown EVSE %s: Rejected", evse_id)
            return call_result.RequestStartTransaction(REJECTED)
        id_tag = str(id_token["id_token"])
        held = None
        if charging_profile is not None:  # F01.FR.08-12: a TxProfile for the new transaction
            if not SmartChargingVariables(self._s.model).enabled:
                log.info("RequestStartTransaction with a profile, smart charging off: Rejected")
                return call_result.RequestStartTransaction(REJECTED)
            held = await self._s.profiles.hold_for_remote_start(evse_id, id_tag, charging_profile)
            if held is None:
                return call_result.RequestStartTransaction(REJECTED)
        self._s.token_kinds.note(id_token)  # the Started event names it as the CSMS did
        self._s.transactions.remote_start_expected(evse_id, remote_start_id, id_tag)
        authorized = not self._s.model.get_bool("AuthCtrlr.AuthorizeRemoteStart")
        # Looked up before the start: the session it starts takes the plug-in's record.
        plug_in = None if evse_id is None else self._s.plug_ins.get(evse_id)
        accepted = await control.remote_start(id_tag, evse_id, authorized)
        if not accepted:
            self._s.transactions.remote_start_expected(evse_id, None)
            if held is not None:
                self._s.profiles.release(held)  # the start was refused: its profile goes
            return call_result.RequestStartTransaction(REJECTED)
        # The answer's transactionId is for a transaction the station began before the
        # request (the cable plugged in first, TxStartPoint EVConnected): this start
        # authorizes it, so the answer names it.
        return call_result.RequestStartTransaction(
            ACCEPTED, transaction_id=None if plug_in is None else plug_in.local_id
        )

    @on(Action.request_stop_transaction)
    async def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        tx = self._running(transaction_id)
        stopped = tx is not None and await self._s.control.remote_stop(tx)
        return call_result.RequestStopTransaction(ACCEPTED if stopped else REJECTED)

    @on(Action.get_transaction_status)
    def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Any:
        queued = self._s.transactions.queue.messages()
        if transaction_id is None:
            return call_result.GetTransactionStatus(messages_in_queue=bool(queued))
        return call_result.GetTransactionStatus(
            messages_in_queue=any(m.local_id == transaction_id for m in queued),
            ongoing_indicator=self._running(transaction_id) is not None,
        )

    # --- the station (B11, G03, F05) --------------------------------------------------------

    def _busy(self, evse_id: int | None = None) -> bool:
        """Whether a transaction runs on ``evse_id`` (None: on any EVSE)."""
        control = self._s.control
        evses = control.connector_ids if evse_id is None else (evse_id,)
        return any(control.view(c).transaction is not None for c in evses)

    @on(Action.reset)
    def on_reset(self, type: str, evse_id: int | None = None, **_: Any) -> Any:
        if evse_id is not None and evse_id not in self._s.control.connector_ids:
            log.info("Reset of unknown EVSE %s: Rejected", evse_id)
            return call_result.Reset(ResetStatusEnumType.rejected)
        if type == ResetEnumType.on_idle and self._busy(evse_id):
            return call_result.Reset(ResetStatusEnumType.scheduled)
        return call_result.Reset(ResetStatusEnumType.accepted)

    @after(Action.reset)
    def after_reset(self, type: str, evse_id: int | None = None, **_: Any) -> None:
        if evse_id is None:
            self._s.spawn(self._reset(type), f"ocpp201-reset-{type}")
        elif evse_id in self._s.control.connector_ids:
            self._s.spawn(self._reset_evse(type, evse_id), f"ocpp201-reset-{evse_id}-{type}")

    async def _idle(self, type: str, evse_id: int | None) -> None:
        """Return at once (Immediate) or once the transactions concerned have ended (OnIdle,
        B12; no event says "idle": polled)."""
        while type == ResetEnumType.on_idle and self._busy(evse_id):  # noqa: ASYNC110
            await asyncio.sleep(ON_IDLE_POLL_S)

    async def _reset_evse(self, type: str, evse_id: int) -> None:
        """B11/B12 for one EVSE: its transaction ends (ImmediateReset) and the EVSE is judged
        afresh from the hardware; the station and the other EVSEs go on."""
        await self._idle(type, evse_id)
        log.warning("%s reset of EVSE %d requested by the CSMS", type, evse_id)
        tx = self._s.control.view(evse_id).transaction
        if tx is not None:
            await self._s.control.stop_transaction(tx, StopReason.HARD_RESET)

    async def _reset(self, type: str) -> None:
        control = self._s.control
        await self._idle(type, None)
        await boot_reason.note(self._s.storage, BootReasonEnumType.remote_reset)
        self._s.security.events.record(
            SecurityEvent.RESET_OR_REBOOT, f"{type} reset requested by the CSMS"
        )
        log.warning("%s reset requested by the CSMS: restarting", type)
        await control.reset(ResetKind.HARD)

    @on(Action.change_availability)
    async def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        connector_id = 0 if evse is None else int(evse["id"])
        # Each EVSE has one connector, number 1 (G03: a connector's availability is then
        # the EVSE's); any other connector, or EVSE, does not exist.
        unknown_connector = evse is not None and evse.get("connector_id", 1) != 1
        if unknown_connector or (
            connector_id != 0 and connector_id not in self._s.control.connector_ids
        ):
            return call_result.ChangeAvailability(ChangeAvailabilityStatusEnumType.rejected)
        available = operational_status == OperationalStatusEnumType.operative
        answer = await self._s.control.change_availability(connector_id, available)
        return call_result.ChangeAvailability(
            _AVAILABILITY.get(answer, ChangeAvailabilityStatusEnumType.rejected)
        )

    @on(Action.unlock_connector)
    async def on_unlock(self, evse_id: int, connector_id: int, **_: Any) -> Any:
        control = self._s.control
        if evse_id not in control.connector_ids or connector_id != 1:
            return call_result.UnlockConnector(UnlockStatusEnumType.unknown_connector)
        if control.view(evse_id).transaction is not None:  # F05.FR.02: stop it first
            return call_result.UnlockConnector(UnlockStatusEnumType.ongoing_authorized_transaction)
        answer = await control.unlock(evse_id)
        unlocked = answer is Answer.UNLOCKED
        return call_result.UnlockConnector(
            UnlockStatusEnumType.unlocked if unlocked else UnlockStatusEnumType.unlock_failed
        )

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(DataTransferStatusEnumType.unknown_vendor_id)

    # --- TriggerMessage (F06) ---------------------------------------------------------------

    @on(Action.trigger_message)
    def on_trigger(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        if requested_message not in _TRIGGERS:
            return call_result.TriggerMessage(TriggerMessageStatusEnumType.not_implemented)
        if evse is not None and evse["id"] not in self._s.control.connector_ids:
            return call_result.TriggerMessage(TriggerMessageStatusEnumType.rejected)
        if requested_message == MessageTriggerEnumType.boot_notification and self.registered:
            return call_result.TriggerMessage(TriggerMessageStatusEnumType.rejected)  # F06.FR.17
        return call_result.TriggerMessage(TriggerMessageStatusEnumType.accepted)

    @after(Action.trigger_message)
    def after_trigger(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> None:
        if requested_message not in _TRIGGERS:
            return
        if evse is not None and evse["id"] not in self._s.control.connector_ids:
            return
        if requested_message == MessageTriggerEnumType.boot_notification and self.registered:
            return
        evses = [evse["id"]] if evse is not None else list(self._s.control.connector_ids)
        self._s.spawn(self._triggered(requested_message, evses), f"ocpp201-{requested_message}")

    async def _triggered(self, message: str, evses: list[int]) -> None:
        s = self._s
        payloads: list[Any] = []
        if message == MessageTriggerEnumType.boot_notification:
            payloads.append(s.boot_request)
        elif message == MessageTriggerEnumType.heartbeat:
            payloads.append(call.Heartbeat())
        elif message == MessageTriggerEnumType.status_notification:
            for evse_id in evses:
                status = s.control.view(evse_id).status
                payloads.append(status_request(evse_id, status, s.clock()))
        elif message == MessageTriggerEnumType.log_status_notification:
            payloads.append(s.logs.status_notification())  # Uploading with its id, or Idle
        elif message == MessageTriggerEnumType.meter_values:
            for evse_id in evses:
                sample = s.latest_sample(evse_id)
                measurands = s.model.get_list("SampledDataCtrlr.TxUpdatedMeasurands")
                value = None if sample is None else meter_value(sample, measurands, "Trigger")
                if value is not None:
                    payloads.append(call.MeterValues(evse_id=evse_id, meter_value=[value]))
        elif message == MessageTriggerEnumType.firmware_status_notification:
            payloads.append(self._firmware_status())
        elif message == MessageTriggerEnumType.sign_charging_station_certificate:
            await s.security.signing.run()  # A02: sent again while unanswered; logs failures
        else:  # TransactionEvent: queued like every transaction message
            for evse_id in evses:
                sample = s.latest_sample(evse_id)
                s.transactions.triggered(evse_id, sample)
        for payload in payloads:
            try:
                await call_checked(self, payload)
            except CALL_FAILURES as exc:
                log.warning("triggered %s failed: %s", message, describe(exc))

    def _firmware_status(self) -> Any:
        """The update's step with its requestId; Idle, without one, when none runs."""
        firmware = self._s.security.firmware
        if firmware.status is FirmwareStatus.IDLE:
            return firmware_status_request(FirmwareStatus.IDLE, None)
        return firmware_status_request(firmware.status, firmware.signed_request_id)
