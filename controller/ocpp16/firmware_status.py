"""Firmware update steps in 1.6 words: core FirmwareStatusNotification, and the security
whitepaper's SignedFirmwareStatusNotification.

A plain update reports the core statuses only (the whitepaper's extra steps are not sent);
a signed one every step with its requestId. TriggerMessage FirmwareStatusNotification
reports the core status (:func:`core_status`), ExtendedTriggerMessage the signed one
(:func:`signed_report`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.v16 import call
from ocpp.v16.enums import FirmwareStatus as WireStatus

from controller.csms.calls import CallFailed, Send
from controller.csms.firmware import FirmwareStatus, FirmwareUpdater

log = logging.getLogger(__name__)

#: What the 1.6 core FirmwareStatusNotification says for each step of a signed update.
_CORE = {
    FirmwareStatus.DOWNLOAD_SCHEDULED: FirmwareStatus.IDLE,
    FirmwareStatus.DOWNLOAD_PAUSED: FirmwareStatus.DOWNLOADING,
    FirmwareStatus.SIGNATURE_VERIFIED: FirmwareStatus.DOWNLOADED,
    FirmwareStatus.INSTALL_SCHEDULED: FirmwareStatus.DOWNLOADED,
    FirmwareStatus.INSTALL_REBOOTING: FirmwareStatus.INSTALLING,
    FirmwareStatus.INVALID_SIGNATURE: FirmwareStatus.INSTALLATION_FAILED,
    FirmwareStatus.INSTALL_VERIFICATION_FAILED: FirmwareStatus.INSTALLATION_FAILED,
}


def core_status(status: FirmwareStatus) -> WireStatus:
    """``status`` in the words of 1.6 core FirmwareStatusNotification."""
    return WireStatus(_CORE.get(status, status).value)


def status_request(status: FirmwareStatus, request_id: int | None) -> Any:
    """The notification of a step; None for a plain update's step core 1.6 has no word for."""
    if request_id is not None:
        return call.SignedFirmwareStatusNotification(
            status=WireStatus(status.value), request_id=request_id
        )
    if status in _CORE:
        return None
    return call.FirmwareStatusNotification(status=WireStatus(status.value))


def signed_report(firmware: FirmwareUpdater, send: Send) -> Callable[[], Awaitable[None]]:
    """ExtendedTriggerMessage FirmwareStatusNotification: a SignedFirmwareStatusNotification
    with the requestId of the current or last signed update (left out when there is none)."""

    async def report() -> None:
        request = call.SignedFirmwareStatusNotification(
            status=WireStatus(firmware.status.value), request_id=firmware.signed_request_id
        )
        try:
            await send(request)
        except CallFailed as exc:
            log.warning("triggered SignedFirmwareStatusNotification not sent: %s", exc)

    return report
