"""The OCPP 2.0.1 side of the bundled CSMS (:mod:`controller.local_csms`).

A charging station that opens its websocket with the subprotocol ``ocpp2.0.1`` is served
by :class:`Session201`: the same recording, strictness (every schema violation, against
the library's 2.0.1 schemas, lands in :attr:`LocalCsms.violations`) and fault knobs as a
1.6 charge point, with the 2.0.1 answers here (:func:`default_answer`) and the CSMS's
state kept from 2.0.1 requests (:func:`remember`: the last status per (station, EVSE),
every TransactionEvent by (station, transactionId)).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call_result

from controller.local_csms import VENDOR_ID, Payload, _SessionMixin, utc_timestamp

if TYPE_CHECKING:
    from controller.local_csms import LocalCsms


class Session201(_SessionMixin, ChargePoint):
    """An OCPP 2.0.1 charging station's session."""

    results = call_result

    @on("BootNotification")
    async def _on_boot_notification(self, **_: Any) -> Any:
        return await self._reply("BootNotification")

    @on("Heartbeat")
    async def _on_heartbeat(self, **_: Any) -> Any:
        return await self._reply("Heartbeat")

    @on("StatusNotification")
    async def _on_status_notification(self, **_: Any) -> Any:
        return await self._reply("StatusNotification")

    @on("Authorize")
    async def _on_authorize(self, **_: Any) -> Any:
        return await self._reply("Authorize")

    @on("TransactionEvent")
    async def _on_transaction_event(self, **_: Any) -> Any:
        return await self._reply("TransactionEvent")

    @on("NotifyReport")
    async def _on_notify_report(self, **_: Any) -> Any:
        return await self._reply("NotifyReport")

    @on("NotifyEvent")
    async def _on_notify_event(self, **_: Any) -> Any:
        return await self._reply("NotifyEvent")

    @on("LogStatusNotification")
    async def _on_log_status_notification(self, **_: Any) -> Any:
        return await self._reply("LogStatusNotification")

    @on("NotifyMonitoringReport")
    async def _on_notify_monitoring_report(self, **_: Any) -> Any:
        return await self._reply("NotifyMonitoringReport")

    @on("SecurityEventNotification")
    async def _on_security_event_notification(self, **_: Any) -> Any:
        return await self._reply("SecurityEventNotification")

    @on("ReservationStatusUpdate")
    async def _on_reservation_status_update(self, **_: Any) -> Any:
        return await self._reply("ReservationStatusUpdate")

    @on("DataTransfer")
    async def _on_data_transfer(self, **_: Any) -> Any:
        return await self._reply("DataTransfer")

    @on("FirmwareStatusNotification")
    async def _on_firmware_status_notification(self, **_: Any) -> Any:
        return await self._reply("FirmwareStatusNotification")

    @on("SignCertificate")
    async def _on_sign_certificate(self, **_: Any) -> Any:
        return await self._reply("SignCertificate")

    @on("ReportChargingProfiles")
    async def _on_report_charging_profiles(self, **_: Any) -> Any:
        return await self._reply("ReportChargingProfiles")

    @on("MeterValues")
    async def _on_meter_values(self, **_: Any) -> Any:
        return await self._reply("MeterValues")

    @on("NotifyChargingLimit")
    async def _on_notify_charging_limit(self, **_: Any) -> Any:
        return await self._reply("NotifyChargingLimit")

    @on("ClearedChargingLimit")
    async def _on_cleared_charging_limit(self, **_: Any) -> Any:
        return await self._reply("ClearedChargingLimit")


def default_answer(csms: LocalCsms, action: str, request: Payload) -> Payload:
    """What a plain 2.0.1 CSMS answers (camelCase)."""
    if action == "BootNotification":
        return {
            "status": csms.boot_status,
            "currentTime": utc_timestamp(),
            "interval": csms.heartbeat_interval_s,
        }
    if action == "Heartbeat":
        return {"currentTime": utc_timestamp()}
    if action == "Authorize":
        return {"idTokenInfo": {"status": csms.tag_status(request["idToken"]["idToken"])}}
    if action == "TransactionEvent" and "idToken" in request:
        return {"idTokenInfo": {"status": csms.tag_status(request["idToken"]["idToken"])}}
    if action == "DataTransfer":
        known = str(request["vendorId"]).casefold() == VENDOR_ID
        return {"status": "Accepted" if known else "UnknownVendorId"}
    if action == "SignCertificate":
        # Accepted: the CSR goes to a CA; a test answers with CertificateSigned itself.
        return {"status": "Accepted"}
    # StatusNotification, NotifyReport, NotifyEvent, SecurityEventNotification,
    # ReportChargingProfiles, MeterValues, LogStatusNotification, NotifyMonitoringReport,
    # NotifyChargingLimit, ClearedChargingLimit
    return {}


def remember(csms: LocalCsms, cp_id: str, action: str, request: Payload, answer: Payload) -> None:
    """Update the CSMS's state from a 2.0.1 request and the answer given."""
    csms._remember_boot(cp_id, action, answer)
    if action == "TransactionEvent":
        key = (cp_id, request["transactionInfo"]["transactionId"])
        csms.transaction_events.setdefault(key, []).append(request)
    if action == "StatusNotification":
        csms.statuses[(cp_id, request["evseId"])] = request["connectorStatus"]
