"""The Core profile's requests from the CSMS (1.6 §5), as a mixin of the ChargePoint:
RemoteStart/StopTransaction, Reset, UnlockConnector, ChangeAvailability, ClearCache,
DataTransfer (picharge/ConnectorStatus), Get/ChangeConfiguration.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
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

from controller.csms.security_events import SecurityEvent
from controller.domain import Answer, ResetKind

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
    Answer.UNLOCK_FAILED: UnlockStatus.unlock_failed,
    Answer.NOT_SUPPORTED: UnlockStatus.not_supported,
}


class CoreHandlers:
    """The Core profile's requests, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services
    registered: bool  # OcppChargePoint: this connection's boot is Accepted

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
        if not self.registered:
            # 1.6 §4.2 (and its errata): while the boot is Pending the CSMS may not start or
            # stop transactions. Accepting would mean authorizing by the offline rules while
            # online: refused instead.
            log.info("RemoteStartTransaction while the boot is not Accepted: Rejected")
            return call_result.RemoteStartTransaction(RemoteStartStopStatus.rejected)
        if connector_id is not None and connector_id not in control.connector_ids:
            log.info("RemoteStartTransaction for unknown connector %s: Rejected", connector_id)
            return call_result.RemoteStartTransaction(RemoteStartStopStatus.rejected)
        authorized = not self._s.config.get_bool("AuthorizeRemoteTxRequests")
        held = None
        if charging_profile is not None:
            held = await self._s.profiles.hold_for_remote_start(
                connector_id, id_tag, charging_profile
            )
            if held is None:
                return call_result.RemoteStartTransaction(RemoteStartStopStatus.rejected)
        accepted = await control.remote_start(id_tag, connector_id, authorized)
        if held is not None and not accepted:
            self._s.profiles.release(held)  # the remote start was refused: its profile goes
        status = RemoteStartStopStatus.accepted if accepted else RemoteStartStopStatus.rejected
        return call_result.RemoteStartTransaction(status)

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **kwargs: Any) -> Any:
        if not self.registered:
            log.info("RemoteStopTransaction while the boot is not Accepted: Rejected")
            return call_result.RemoteStopTransaction(RemoteStartStopStatus.rejected)
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
