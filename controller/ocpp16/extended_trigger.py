"""ExtendedTriggerMessage (OCPP 1.6 security whitepaper): TriggerMessage for the whitepaper's
messages, answered first and sent after the answer through :class:`.TriggerSender`.

What each requestedMessage sends:

- BootNotification, Heartbeat, MeterValues, StatusNotification: exactly what TriggerMessage
  sends (:mod:`.triggers`), with its connector rules.
- FirmwareStatusNotification: a SignedFirmwareStatusNotification from the firmware updater
  (``report_signed_status()``: the requestId of the current or last signed update, or
  Idle without one).
- LogStatusNotification: the GetLog status now (:meth:`.LogUploads.status_notification`:
  Uploading with the running requestId, or Idle without one).
- SignChargePointCertificate: a new key and CSR in a SignCertificate
  (``certificates.request_signing()``; refused there, for instance without a CpoName, it is
  logged: the answer has gone out already).

Rejected: a connectorId the charger does not have, and a connectorId above 0 for a message
that has no connector (connector 0, the charge point itself, is accepted for those). Not in
the whitepaper's list: NotImplemented. It is not tied to the RemoteTrigger profile: it
belongs to the security extension. Loop thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import MessageTrigger, TriggerMessageStatus

from controller.ocpp16.triggers import Send, TriggerSender, connector_decision

log = logging.getLogger(__name__)

#: ExtendedTriggerMessage.req's requestedMessage values, all of which this charger sends.
EXTENDED_TRIGGERS = frozenset(
    {
        MessageTrigger.boot_notification,
        MessageTrigger.firmware_status_notification,
        MessageTrigger.heartbeat,
        MessageTrigger.log_status_notification,
        MessageTrigger.meter_values,
        MessageTrigger.sign_charge_point_certificate,
        MessageTrigger.status_notification,
    }
)
#: The messages that concern one connector.
PER_CONNECTOR = frozenset({MessageTrigger.meter_values, MessageTrigger.status_notification})


def decide_extended(
    requested: str,
    connector_id: int | None,
    connector_ids: Sequence[int],
    has_sample: Callable[[int], bool],
) -> TriggerMessageStatus:
    """The ExtendedTriggerMessage.conf status for ``requested`` (pure)."""
    if requested not in EXTENDED_TRIGGERS:
        return TriggerMessageStatus.not_implemented
    if connector_id not in (None, 0) and requested not in PER_CONNECTOR:
        return TriggerMessageStatus.rejected
    return connector_decision(requested, connector_id, connector_ids, has_sample)


class ExtendedTriggers:
    """Decides ExtendedTriggerMessage and plans the sending with the TriggerSender."""

    def __init__(
        self,
        *,
        triggers: TriggerSender,
        log_status: Callable[[], Any],
        report_firmware: Callable[[], Awaitable[None]],
        request_signing: Callable[[], Awaitable[bool]],
    ) -> None:
        self._triggers = triggers
        self._log_status = log_status
        self._report_firmware = report_firmware
        self._request_signing = request_signing

    def plan(self, unique_id: str, requested: str, connector_id: int | None) -> Any:
        """@on: the answer; what is accepted goes out from @after (``send_planned``)."""
        triggers = self._triggers
        status = decide_extended(
            requested, connector_id, triggers.connector_ids, triggers.has_sample
        )
        log.info("ExtendedTriggerMessage %s (connector %s): %s", requested, connector_id, status)
        if status is TriggerMessageStatus.accepted:
            triggers.accept(unique_id, requested, connector_id, self._sender(requested))
        return call_result.ExtendedTriggerMessage(status)

    def _sender(self, requested: str) -> Send | None:
        """How the extension's own messages go out; None: as TriggerMessage sends them."""

        async def log_status(cp: ChargePoint) -> None:
            await self._triggers.send_payloads(cp, [self._log_status()])  # the status now

        async def firmware_status(cp: ChargePoint) -> None:
            await self._report_firmware()

        async def sign_certificate(cp: ChargePoint) -> None:
            if not await self._request_signing():
                log.warning("triggered SignCertificate was not accepted (see above)")

        return {
            MessageTrigger.log_status_notification: log_status,
            MessageTrigger.firmware_status_notification: firmware_status,
            MessageTrigger.sign_charge_point_certificate: sign_certificate,
        }.get(MessageTrigger(requested))
