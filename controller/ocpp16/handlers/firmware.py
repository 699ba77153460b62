"""UpdateFirmware and SignedUpdateFirmware onto the neutral
:class:`~controller.csms.firmware.FirmwareUpdater`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, UpdateFirmwareStatus

from controller.csms.firmware import SignedFirmware

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

log = logging.getLogger(__name__)


class FirmwareHandlers:
    """UpdateFirmware and SignedUpdateFirmware, mixed into the OCPP 1.6 ChargePoint."""

    _s: Services

    @on(Action.update_firmware)
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> Any:
        self._s.firmware.plan(call_unique_id, location, retrieve_date, retries, retry_interval)
        return call_result.UpdateFirmware()

    @after(Action.update_firmware)
    def after_update_firmware(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.firmware.start_planned(call_unique_id)

    @on(Action.signed_update_firmware)
    async def on_signed_update_firmware(
        self,
        request_id: int,
        firmware: dict[str, Any],
        call_unique_id: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        **kwargs: Any,
    ) -> Any:
        answer = await self._s.firmware.plan_signed(
            call_unique_id, request_id, SignedFirmware.of(firmware), retries, retry_interval
        )
        return call_result.SignedUpdateFirmware(UpdateFirmwareStatus(answer.value))

    @after(Action.signed_update_firmware)
    def after_signed_update_firmware(self, call_unique_id: str, **kwargs: Any) -> None:
        self._s.firmware.start_planned(call_unique_id)
