"""OCPP 1.6 TriggerMessage (§5.17): the CSMS asks for a message, the charge point sends it.

The answer comes first: ``@on`` decides (:func:`decide`) and answers Accepted, Rejected or
NotImplemented; ``@after`` sends what was accepted, in a task of its own, so no call is
awaited inside a handler. What is sent is current information, never history:

- BootNotification (as at boot; an Accepted answer's interval becomes HeartbeatInterval),
  Heartbeat.
- DiagnosticsStatusNotification and FirmwareStatusNotification: what the providers say,
  Idle while no upload or update runs (the firmware and diagnostics work plugs its status
  in through :class:`TriggerSender`'s providers).
- StatusNotification: of one connector, of connector 0 (the charge point), or without a
  connectorId of connector 0 and every connector.
- MeterValues: the latest real meter sample of one connector, or of each, with the
  MeterValuesSampledData measurands and context Trigger, naming the running transaction.
  Rejected when there is no sample yet, and for connector 0 (no main meter here).

A connectorId the charger does not have is Rejected; a message it cannot send is
NotImplemented. ExtendedTriggerMessage (:mod:`.extended_trigger`) plans its triggers here too
(:meth:`TriggerSender.accept`), so both are answered, remembered and sent alike. Loop thread
only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    ChargePointErrorCode,
    DiagnosticsStatus,
    FirmwareStatus,
    MessageTrigger,
    RegistrationStatus,
    TriggerMessageStatus,
)
from websockets.exceptions import ConnectionClosed

from controller.csms.calls import Spawn
from controller.csms.wire import iso_utc
from controller.domain import ChargePointControl, MeterSample, ReadingContext
from controller.ocpp16.errors import CALL_FAILURES
from controller.ocpp16.meter_values import meter_value, parse_measurands
from controller.ocpp16.status import charge_point_status, error_code, wire_status

if TYPE_CHECKING:
    from controller.ocpp16.keys import OcppConfig

log = logging.getLogger(__name__)

PROFILE = "RemoteTrigger"
#: What this charger sends on request (every TriggerMessage.req value of 1.6).
TRIGGERABLE = frozenset(
    {
        MessageTrigger.boot_notification,
        MessageTrigger.diagnostics_status_notification,
        MessageTrigger.firmware_status_notification,
        MessageTrigger.heartbeat,
        MessageTrigger.meter_values,
        MessageTrigger.status_notification,
    }
)
#: Accepted triggers whose @after has not run yet; a few at most (bounded against a leak
#: should a connection close between the answer and @after).
MAX_PLANNED = 32
_SEND_FAILURES: tuple[type[BaseException], ...] = (*CALL_FAILURES, ConnectionClosed)

#: Sends an accepted trigger's message(s) on the connection that asked.
Send = Callable[[ChargePoint], Coroutine[Any, Any, None]]


def decide(
    requested: str,
    connector_id: int | None,
    connector_ids: Sequence[int],
    has_sample: Callable[[int], bool],
    profiles: Sequence[str],
) -> TriggerMessageStatus:
    """The TriggerMessage.conf status for ``requested`` (pure)."""
    if PROFILE not in profiles or requested not in TRIGGERABLE:
        return TriggerMessageStatus.not_implemented
    return connector_decision(requested, connector_id, connector_ids, has_sample)


def connector_decision(
    requested: str,
    connector_id: int | None,
    connector_ids: Sequence[int],
    has_sample: Callable[[int], bool],
) -> TriggerMessageStatus:
    """Accepted, or Rejected for a connector the charger lacks and for MeterValues without a
    sample to send (pure; ``requested`` is one the charger can send)."""
    if connector_id is not None and connector_id != 0 and connector_id not in connector_ids:
        return TriggerMessageStatus.rejected
    if requested == MessageTrigger.meter_values:
        if connector_id == 0:
            return TriggerMessageStatus.rejected  # no main meter: values are per connector
        targets = connector_ids if connector_id is None else [connector_id]
        if not any(has_sample(c) for c in targets):
            return TriggerMessageStatus.rejected
    return TriggerMessageStatus.accepted


class TriggerSender:
    """Builds and sends triggered messages on the connection that asked for them."""

    def __init__(
        self,
        *,
        control: ChargePointControl,
        config: OcppConfig,
        boot_request: call.BootNotification,
        latest_sample: Callable[[int], MeterSample | None],
        clock: Callable[[], dt.datetime],
        spawn: Spawn,
        firmware_status: Callable[[], FirmwareStatus] = lambda: FirmwareStatus.idle,
        diagnostics_status: Callable[[], DiagnosticsStatus] = lambda: DiagnosticsStatus.idle,
    ) -> None:
        self._control = control
        self._config = config
        self._boot_request = boot_request
        self._latest = latest_sample
        self._clock = clock
        self._spawn = spawn
        self.firmware_status = firmware_status
        self.diagnostics_status = diagnostics_status
        self._planned: OrderedDict[str, tuple[str, Send]] = OrderedDict()

    @property
    def connector_ids(self) -> Sequence[int]:
        return self._control.connector_ids

    def has_sample(self, connector_id: int) -> bool:
        """True once the connector has a meter sample to send."""
        return self._latest(connector_id) is not None

    def plan(self, unique_id: str, requested: str, connector_id: int | None) -> Any:
        """@on: the answer; an accepted trigger is remembered for :meth:`send_planned`."""
        status = decide(
            requested,
            connector_id,
            self.connector_ids,
            self.has_sample,
            self._config.table.ctx.profiles,
        )
        log.info("TriggerMessage %s (connector %s): %s", requested, connector_id, status)
        if status is TriggerMessageStatus.accepted:
            self.accept(unique_id, requested, connector_id)
        return call_result.TriggerMessage(status)

    def accept(
        self, unique_id: str, requested: str, connector_id: int | None, send: Send | None = None
    ) -> None:
        """Remember an accepted trigger for :meth:`send_planned`; ``send`` sends it (default:
        the message as TriggerMessage sends it)."""

        async def send_default(cp: ChargePoint) -> None:
            await self._send(cp, requested, connector_id)

        self._planned[unique_id] = (requested, send or send_default)
        while len(self._planned) > MAX_PLANNED:
            self._planned.popitem(last=False)

    def send_planned(self, cp: ChargePoint, unique_id: str) -> None:
        """@after: send what was accepted, in a task (the answer has gone out)."""
        planned = self._planned.pop(unique_id, None)
        if planned is not None:
            requested, send = planned
            self._spawn(send(cp), f"ocpp16-trigger-{requested}")

    async def _send(self, cp: ChargePoint, requested: str, connector_id: int | None) -> None:
        await self.send_payloads(cp, self._payloads(requested, connector_id))

    async def send_payloads(self, cp: ChargePoint, payloads: Sequence[Any]) -> None:
        """Call each in turn on ``cp``; a failure is logged and ends the sending."""
        for payload in payloads:
            try:
                answer = await cp.call(payload, suppress=False)
            except _SEND_FAILURES as exc:
                log.warning("triggered %s failed: %s", type(payload).__name__, exc)
                return
            if isinstance(payload, call.BootNotification):
                await self._booted(answer)

    def _payloads(self, requested: str, connector_id: int | None) -> list[Any]:
        if requested == MessageTrigger.boot_notification:
            return [self._boot_request]
        if requested == MessageTrigger.heartbeat:
            return [call.Heartbeat()]
        if requested == MessageTrigger.firmware_status_notification:
            return [call.FirmwareStatusNotification(status=self.firmware_status())]
        if requested == MessageTrigger.diagnostics_status_notification:
            return [call.DiagnosticsStatusNotification(status=self.diagnostics_status())]
        ids = self._control.connector_ids
        if requested == MessageTrigger.status_notification:
            targets = [0, *ids] if connector_id is None else [connector_id]
            return [self._status(c) for c in targets]
        targets = list(ids) if connector_id is None else [connector_id]
        values = [self._meter_values(c) for c in targets]
        return [v for v in values if v is not None]

    def _status(self, connector_id: int) -> call.StatusNotification:
        now = iso_utc(self._clock())
        if connector_id == 0:
            views = [self._control.view(c) for c in self._control.connector_ids]
            zero = charge_point_status(v.status for v in views)
            return call.StatusNotification(
                0, ChargePointErrorCode.no_error, wire_status(zero), timestamp=now
            )
        view = self._control.view(connector_id)
        return call.StatusNotification(
            connector_id,
            error_code(view.fault),
            wire_status(view.status),
            timestamp=now,
            info=view.fault.value if view.fault else None,
        )

    def _meter_values(self, connector_id: int) -> call.MeterValues | None:
        sample = self._latest(connector_id)
        if sample is None:
            return None
        measurands = parse_measurands(self._config.get_list("MeterValuesSampledData"))
        value = meter_value(sample, measurands, ReadingContext.TRIGGER)
        if value is None:
            log.info("triggered MeterValues of connector %d: nothing to send", connector_id)
            return None
        tx = self._control.view(connector_id).transaction
        transaction_id = tx.csms_id if tx is not None and tx.running else None
        return call.MeterValues(
            connector_id=connector_id, meter_value=[value], transaction_id=transaction_id
        )

    async def _booted(self, answer: Any) -> None:
        if answer.status != RegistrationStatus.accepted:
            log.warning("triggered BootNotification answered %s", answer.status)
            return
        interval = str(answer.interval)
        if answer.interval > 0 and self._config.get("HeartbeatInterval") != interval:
            await self._config.change("HeartbeatInterval", interval)
