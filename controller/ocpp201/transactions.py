"""TransactionEvent (E01-E07) through the durable queue of 1.6 (:mod:`controller.csms.queue`).

The supervisor's transactions become TransactionEvent requests, committed to the outbox
before they are sent and sent in order with MessageAttemptsTransactionEvent tries
MessageAttemptIntervalTransactionEvent apart (OCPPCommCtrlr), across restarts:

- ``Started`` when the supervisor starts a transaction (the id was authorized with the EV
  connected), or later at the TxStartPoint PowerPathClosed or EnergyTransfer
  (:mod:`.tx_points`), with the idToken, the EVSE and the register as Transaction.Begin;
- ``Updated`` when the charging state changes (ChargingStateChanged), every
  SampledDataCtrlr.TxUpdatedInterval with TxUpdatedMeasurands (MeterValuePeriodic), and
  what :meth:`TransactionEvents.updated` is given (clock-aligned values: MeterValueClock;
  a significant change of the offered current: ChargingRateChanged);
- ``Ended`` when it stops, with the stoppedReason, the clock-aligned values kept for it
  (AlignedDataCtrlr.TxEndedInterval, :meth:`TransactionEvents.keep_for_end`) and the
  register as Transaction.End; a transaction interrupted by a power cut is ended by
  :mod:`controller.recovery` with PowerLoss as for 1.6. A TxStopPoint PowerPathClosed or
  EnergyTransfer stops the session when the connector stops Charging (:mod:`.tx_points`).

The transactionId is the charger's own (the journal's id: 32 hex digits, kept across
restarts); ``seqNo`` counts each transaction's events from 0 and is stored per connector, so
an Ended after a restart follows the last number sent before it; ``offline`` is true for an
event that arose while the station was not registered. Loop thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ocpp.v201 import call

from controller.connector_types import ConnectorStatus, StopReason
from controller.csms.auth import Authorizer
from controller.csms.calls import CallFailed, Spawn
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from controller.csms.wire import iso_utc
from controller.domain import AuthResult, ChargePointControl, MeterSample, Transaction, utc_now
from controller.ocpp201 import tx_points
from controller.ocpp201.auth import TokenKinds, result_from_info
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.ended_values import EndedValues
from controller.ocpp201.meter_values import WireDict, meter_value
from controller.ocppj.caller import call_checked, describe
from controller.ocppj.frames import CALL_FAILURES
from controller.outbox import OutboxEntry
from controller.storage import Storage

if TYPE_CHECKING:
    from ocpp.charge_point import ChargePoint

log = logging.getLogger(__name__)

#: Where each connector's last (transactionId, seqNo) is stored.
SEQ_NAMESPACE = "ocpp201.seqno"
START_POINT, STOP_POINT = "TxCtrlr.TxStartPoint", "TxCtrlr.TxStopPoint"

_CHARGING_STATE = {
    ConnectorStatus.CHARGING: "Charging",
    ConnectorStatus.SUSPENDED_EV: "SuspendedEV",
    ConnectorStatus.SUSPENDED_EVSE: "SuspendedEVSE",
    ConnectorStatus.PREPARING: "EVConnected",
    ConnectorStatus.FINISHING: "EVConnected",
}
#: StopReason -> (stoppedReason, triggerReason of the Ended event).
_STOPPED = {
    StopReason.LOCAL: ("Local", "StopAuthorized"),
    StopReason.REMOTE: ("Remote", "RemoteStop"),
    StopReason.EV_DISCONNECTED: ("EVDisconnected", "EVCommunicationLost"),
    StopReason.DE_AUTHORIZED: ("DeAuthorized", "Deauthorized"),
    StopReason.EMERGENCY_STOP: ("EmergencyStop", "AbnormalCondition"),
    StopReason.REBOOT: ("Reboot", "ResetCommand"),
    StopReason.HARD_RESET: ("ImmediateReset", "ResetCommand"),
    StopReason.SOFT_RESET: ("ImmediateReset", "ResetCommand"),
    StopReason.POWER_LOSS: ("PowerLoss", "AbnormalCondition"),
    StopReason.UNLOCK_COMMAND: ("Other", "UnlockCommand"),
    StopReason.OTHER: ("Other", "AbnormalCondition"),
}


def charging_state(status: ConnectorStatus) -> str | None:
    """TransactionEvent's chargingState for a connector status (None: not in a session)."""
    return _CHARGING_STATE.get(status)


def register_value(energy_wh: float, at: dt.datetime, context: str) -> WireDict:
    """The energy register as a MeterValue (Transaction.Begin, Transaction.End)."""
    return {
        "timestamp": iso_utc(at),
        "sampledValue": [
            {
                "value": round(energy_wh, 3),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
            }
        ],
    }


def event_body(
    kind: TxKind,
    tx: Transaction,
    trigger: str,
    at: dt.datetime,
    seq_no: int,
    *,
    offline: bool,
    info: dict[str, Any] | None = None,
    values: list[WireDict] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A TransactionEvent request's fields (snake_case) for ``tx``."""
    event_type = {TxKind.START: "Started", TxKind.METER: "Updated", TxKind.STOP: "Ended"}
    body: dict[str, Any] = {
        "event_type": event_type[kind],
        "timestamp": iso_utc(at),
        "trigger_reason": trigger,
        "seq_no": seq_no,
        "transaction_info": {"transaction_id": tx.local_id, **(info or {})},
        **extra,
    }
    if offline:
        body["offline"] = True
    if values:
        body["meter_value"] = values
    return body


def ended_fields(
    tx: Transaction, now: dt.datetime, reasons: tuple[str, str] | None = None
) -> tuple[str, dt.datetime, dict[str, Any], WireDict]:
    """What an Ended says of the stopped ``tx``: its triggerReason, time (``now`` when it
    has none), transactionInfo (stoppedReason) and the register as Transaction.End;
    ``reasons`` (stoppedReason, triggerReason) when a TxStopPoint ended it, else those of
    its stop reason."""
    stopped, trigger = reasons or _STOPPED[tx.stop_reason or StopReason.OTHER]
    at = tx.stopped_at or now
    meter_stop = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.meter_start_wh
    info = {"charging_state": "Idle", "stopped_reason": stopped}
    return trigger, at, info, register_value(meter_stop, at, "Transaction.End")


async def end_message(tx: Transaction, storage: Storage) -> OutboxEntry:
    """The Ended of ``tx`` as an outbox row: the registry's 2.0.1 end message, which
    power-loss recovery queues under 2.0.1 while another version runs (the 2.0.1 CSMS that
    has the start hears the end when 2.0.1 runs again). Its seqNo follows the last one the
    connector used for ``tx`` (not stored: the next load finds it in the outbox, see
    :class:`SeqNumbers`); it is offline (no 2.0.1 link is up); the stop id's kind is not
    known here, so a card's (the interrupted transaction has none anyway)."""
    seq = await SeqNumbers.load(storage)
    trigger, at, info, end = ended_fields(tx, utc_now())
    extra: dict[str, Any] = {"evse": {"id": tx.connector_id, "connector_id": 1}}
    if tx.stop_id_tag:
        extra["id_token"] = TokenKinds().token(tx.stop_id_tag)
    body = event_body(
        TxKind.STOP, tx, trigger, at, seq.next(tx), offline=True, info=info, values=[end], **extra
    )
    return OutboxEntry(tx.local_id, TxKind.STOP.value, body, True)


class SeqNumbers:
    """Each connector's running transaction and the last seqNo it used.

    A number is taken (:meth:`next`) for an event, the event is queued (its outbox insert
    submitted), and only then is the number stored (:meth:`save`): both writes run in that
    order on the storage thread, so a power cut between them leaves the event stored and
    the number not, never the reverse (a stored number whose event was lost would be a gap
    in the transaction's seqNo at the CSMS). :meth:`load` therefore takes, per connector, the
    higher of the stored number and the highest seqNo of the transaction's events still in
    the outbox (found by the fault trials: bench/fault_trials.py --ocpp 2.0.1).
    """

    def __init__(self, storage: Storage, stored: Mapping[str, str]) -> None:
        self._storage = storage
        self._last: dict[int, tuple[str, int]] = {}
        for connector, text in stored.items():
            local_id, _, number = text.partition(":")
            self._last[int(connector)] = (local_id, int(number))

    @classmethod
    async def load(cls, storage: Storage) -> SeqNumbers:
        stored = await storage.load_settings(SEQ_NAMESPACE)

        def queued(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT local_id, MAX(json_extract(body, '$.seq_no')) FROM outbox"
                " WHERE protocol = '2.0.1' AND json_valid(body) GROUP BY local_id"
            ).fetchall()
            return {str(local_id): int(n) for local_id, n in rows if n is not None}

        highest = await storage.run(queued)
        merged = dict(stored)
        for connector, text in stored.items():
            local_id, _, number = text.partition(":")
            if highest.get(local_id, -1) > int(number):
                merged[connector] = f"{local_id}:{highest[local_id]}"
        return cls(storage, merged)

    def next(self, tx: Transaction) -> int:
        """The next seqNo of ``tx`` (0 for a transaction new on its connector); kept in
        memory until :meth:`save`."""
        local_id, number = self._last.get(tx.connector_id, ("", -1))
        number = number + 1 if local_id == tx.local_id else 0
        self._last[tx.connector_id] = (tx.local_id, number)
        return number

    def save(self, tx: Transaction) -> None:
        """Store the last number of ``tx``'s connector; call after its event was queued."""
        local_id, number = self._last[tx.connector_id]
        self._storage.submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO settings (namespace, key, value) VALUES (?, ?, ?)",
                (SEQ_NAMESPACE, str(tx.connector_id), f"{local_id}:{number}"),
            )
        )


class TransactionEvents:
    """The transactions the CSMS hears of, as TransactionEvent, and their queue."""

    def __init__(
        self,
        *,
        queue: TransactionQueue,
        seq: SeqNumbers,
        model: DeviceModel,
        authorizer: Authorizer,
        tokens: TokenKinds,
        control: ChargePointControl,
        registered: Callable[[], bool],
        clock: Callable[[], dt.datetime],
        spawn: Spawn,
        interval_scale: float,
        ended_values: EndedValues,
        took_plug_in: Callable[[Transaction], bool],
    ) -> None:
        self.queue = queue
        #: Whether a session took a plug-in transaction's id (:meth:`.PlugIns.take`).
        self._took_plug_in = took_plug_in
        self._ended: set[str] = set()  # transactions ended this run (recovery's too)
        self._seq = seq
        self._model = model
        self._authorizer = authorizer
        self._tokens = tokens
        self._control = control
        self._registered = registered
        self._clock = clock
        self._spawn = spawn
        self._scale = interval_scale
        self._running: dict[int, Transaction] = {}  # by connector
        #: RequestStartTransaction's (remoteStartId, idToken) by EVSE (0: whichever starts),
        #: until a session starts there.
        self._remote_starts: dict[int, tuple[int, str | None]] = {}
        self._states: dict[int, str] = {}  # the chargingState last sent, by connector
        self._for_end = ended_values  # TxEnded values, by transaction, kept on disk
        #: Sessions whose Started waits for a TxStartPoint, by connector.
        self._waiting: dict[int, tuple[Transaction, tx_points.Wait]] = {}
        self._status: dict[int, ConnectorStatus] = {}  # the latest status, by connector
        self._power_w: dict[int, float] = {}  # the latest power reading, by connector
        self._charged: set[int] = set()  # connectors whose transaction has been Charging
        #: (stoppedReason, triggerReason) of transactions a TxStopPoint stopped, by id.
        self._point_stops: dict[str, tuple[str, str]] = {}

    def running(self) -> list[Transaction]:
        return list(self._running.values())

    def _event(
        self,
        kind: TxKind,
        tx: Transaction,
        trigger: str,
        at: dt.datetime,
        info: dict[str, Any] | None = None,
        meter: WireDict | None = None,
        before: list[WireDict] | None = None,
        **extra: Any,
    ) -> None:
        """Queue one event; ``before`` are meter values that go ahead of ``meter``."""
        values = [*(before or []), *([] if meter is None else [meter])]
        body = event_body(
            kind,
            tx,
            trigger,
            at,
            self._seq.next(tx),
            offline=not self._registered(),
            info=info,
            values=values,
            **extra,
        )
        self.queue.put(TxMessage(kind, tx.local_id, body))
        self._seq.save(tx)  # after the event's outbox insert: see SeqNumbers

    def queue_event(
        self,
        kind: TxKind,
        tx: Transaction,
        trigger: str,
        at: dt.datetime,
        info: dict[str, Any],
        meter: WireDict,
        **extra: Any,
    ) -> None:
        """Queue one event of a transaction no session runs yet (:mod:`.plug_ins`)."""
        self._event(kind, tx, trigger, at, info, meter, **extra)

    def ended(self, local_id: str) -> bool:
        """Whether the transaction ``local_id`` ended in this run (recovery included)."""
        return local_id in self._ended

    def remote_start_expected(
        self, evse_id: int | None, remote_start_id: int | None, id_tag: str | None = None
    ) -> None:
        """RequestStartTransaction was accepted for ``evse_id`` (None: any): the next
        Started there (of ``id_tag``, when given) says RemoteStart and carries
        ``remote_start_id`` (None: forget it). A session of another id starting there first
        (the remote one was refused by AuthorizeRemoteStart, or a card came first) is not
        the remote one, and the EVSE's expectation is dropped."""
        key = evse_id or 0
        if remote_start_id is None:
            self._remote_starts.pop(key, None)
        else:
            self._remote_starts[key] = (remote_start_id, id_tag)

    def _remote_start(self, tx: Transaction) -> int | None:
        """The remoteStartId of ``tx``, if it is the session a RequestStartTransaction asked."""
        for key in (tx.connector_id, 0):
            expected = self._remote_starts.get(key)
            if expected is None:
                continue
            remote_start_id, id_tag = expected
            ours = id_tag is None or id_tag.casefold() == tx.id_tag.casefold()
            if ours or key != 0:
                del self._remote_starts[key]
            if ours:
                return remote_start_id
        return None

    def triggered(self, connector_id: int, sample: MeterSample | None) -> None:
        """TriggerMessage TransactionEvent: Updated (Trigger) for the running transaction."""
        tx = self._running.get(connector_id)
        if tx is None:
            return
        measurands = self._model.get_list("SampledDataCtrlr.TxUpdatedMeasurands")
        value = None if sample is None else meter_value(sample, measurands, "Trigger")
        info = {"charging_state": self._states.get(connector_id, "EVConnected")}
        self._event(TxKind.METER, tx, "Trigger", self._clock(), info, value)

    def started(self, tx: Transaction, status: ConnectorStatus) -> None:
        """The session began (authorized with the EV connected): queue Started now, or once
        the TxStartPoint is reached; a session that took a plug-in transaction's id is that
        transaction's authorization."""
        self._status[tx.connector_id] = status
        if self._took_plug_in(tx):
            self._adopt(tx, status)
            return
        wait = tx_points.start_wait(self._model.get_list(START_POINT))
        if wait is None:
            self._begin(tx, status, tx.started_at)
        elif tx_points.reached(wait, status, self._power_w.get(tx.connector_id)):
            self._begin(tx, status, tx.started_at, "ChargingStateChanged")
        else:
            log.info("transaction %s waits for TxStartPoint %s", tx.local_id, wait)
            self._waiting[tx.connector_id] = (tx, wait)

    def _begin(
        self, tx: Transaction, status: ConnectorStatus, at: dt.datetime, trigger: str = ""
    ) -> None:
        """Queue Started (E01-E03), ``trigger`` its reason (default Authorized, or
        RemoteStart for a RequestStartTransaction)."""
        self._running[tx.connector_id] = tx
        if status is ConnectorStatus.CHARGING:
            self._charged.add(tx.connector_id)
        state = charging_state(status) or "EVConnected"
        self._states[tx.connector_id] = state
        begin = register_value(tx.meter_start_wh, at, "Transaction.Begin")
        extra: dict[str, Any] = {
            "id_token": self._tokens.token(tx.id_tag),
            "evse": {"id": tx.connector_id, "connector_id": 1},
        }
        if tx.reservation_id is not None:
            extra["reservation_id"] = tx.reservation_id
        info: dict[str, Any] = {"charging_state": state}
        remote = self._remote_start(tx)
        if remote is not None:
            info["remote_start_id"] = remote
        trigger = trigger or ("Authorized" if remote is None else "RemoteStart")
        self._event(TxKind.START, tx, trigger, at, info, begin, **extra)

    def _adopt(self, tx: Transaction, status: ConnectorStatus) -> None:
        """The session took the plug-in transaction's id: it is the core's from now on (its
        journal row has the id), and the CSMS hears of the authorization (E02: Updated,
        Authorized or RemoteStart, with the idToken)."""
        self._running[tx.connector_id] = tx
        if status is ConnectorStatus.CHARGING:
            self._charged.add(tx.connector_id)
        state = charging_state(status) or "EVConnected"
        self._states[tx.connector_id] = state
        info: dict[str, Any] = {"charging_state": state}
        remote = self._remote_start(tx)
        if remote is not None:
            info["remote_start_id"] = remote
        extra: dict[str, Any] = {"id_token": self._tokens.token(tx.id_tag)}
        if tx.reservation_id is not None:
            extra["reservation_id"] = tx.reservation_id
        trigger = "Authorized" if remote is None else "RemoteStart"
        self._event(TxKind.METER, tx, trigger, tx.started_at, info, **extra)

    def _reach(self, connector_id: int) -> None:
        """Queue the Started of a waiting session whose TxStartPoint is now reached."""
        waiting = self._waiting.get(connector_id)
        status = self._status.get(connector_id)
        if waiting is None or status is None:
            return
        tx, wait = waiting
        if tx_points.reached(wait, status, self._power_w.get(connector_id)):
            del self._waiting[connector_id]
            self._begin(tx, status, self._clock(), "ChargingStateChanged")

    def _stop_point(self, tx: Transaction, status: ConnectorStatus) -> None:
        """Stop the session when a TxStopPoint PowerPathClosed/EnergyTransfer is left: the
        connector was Charging and is now suspended (the session's own ends need nothing)."""
        suspended = status in (ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE)
        if (
            not suspended
            or tx.connector_id not in self._charged
            or tx.local_id in self._point_stops
            or not tx_points.ends_with_charging(self._model.get_list(STOP_POINT))
        ):
            return
        log.info("transaction %s ends at its TxStopPoint (%s)", tx.local_id, status)
        self._point_stops[tx.local_id] = (tx_points.stopped_reason(status), "ChargingStateChanged")
        self._spawn(
            self._control.stop_transaction(tx, StopReason.OTHER), f"ocpp201-stop-{tx.local_id}"
        )

    def status_changed(self, connector_id: int, status: ConnectorStatus) -> None:
        """Queue Updated (ChargingStateChanged) when the running transaction's state moved;
        a waiting Started may now go, a TxStopPoint may end the transaction."""
        self._status[connector_id] = status
        self._reach(connector_id)
        tx = self._running.get(connector_id)
        if tx is not None:
            if status is ConnectorStatus.CHARGING:
                self._charged.add(connector_id)
            self._stop_point(tx, status)
        state = charging_state(status)
        if tx is None or state is None or self._states.get(connector_id) == state:
            return
        self._states[connector_id] = state
        self._event(
            TxKind.METER, tx, "ChargingStateChanged", self._clock(), {"charging_state": state}
        )

    def reading(self, sample: MeterSample) -> None:
        """Every meter reading: the power a TxStartPoint EnergyTransfer waits for."""
        power_w = sample.reading.total_power_w
        if power_w is not None:
            self._power_w[sample.connector_id] = power_w
        self._reach(sample.connector_id)

    def sampled(self, sample: MeterSample) -> None:
        """Queue Updated (MeterValuePeriodic) with TxUpdatedMeasurands of ``sample``."""
        tx = self._running.get(sample.connector_id)
        if tx is None:
            return
        measurands = self._model.get_list("SampledDataCtrlr.TxUpdatedMeasurands")
        value = meter_value(sample, measurands, "Sample.Periodic")
        if value is not None:
            self._event(TxKind.METER, tx, "MeterValuePeriodic", sample.timestamp, meter=value)

    def updated(self, connector_id: int, trigger: str, meter: WireDict | None = None) -> bool:
        """Queue Updated with ``trigger`` (and ``meter``) for the connector's running
        transaction; False when none runs there."""
        tx = self._running.get(connector_id)
        if tx is None:
            return False
        self._event(TxKind.METER, tx, trigger, self._clock(), meter=meter)
        return True

    def keep_for_end(self, connector_id: int, meter: WireDict) -> None:
        """Keep ``meter`` for the Ended of the connector's running transaction, on disk
        (:mod:`.ended_values`: a power cut keeps it for the recovery's Ended)."""
        tx = self._running.get(connector_id)
        if tx is not None:
            self._for_end.keep(tx.local_id, meter)

    def stopped(self, tx: Transaction) -> None:
        """Queue Ended with the stoppedReason, the values kept for it and the register at
        the end; nothing for a session that never reached its TxStartPoint."""
        waiting = self._waiting.get(tx.connector_id)
        if waiting is not None and waiting[0] is tx:
            del self._waiting[tx.connector_id]
            self._remote_start(tx)  # its RequestStartTransaction, if any, is spent
            log.info("transaction %s ended before its TxStartPoint: never reported", tx.local_id)
            return
        # (After a restart, recovery ends only a transaction whose Started was queued.)
        self._ended.add(tx.local_id)
        if self._running.get(tx.connector_id) is tx:
            del self._running[tx.connector_id]
        self._states.pop(tx.connector_id, None)
        self._charged.discard(tx.connector_id)
        trigger, at, info, end = ended_fields(
            tx, self._clock(), self._point_stops.pop(tx.local_id, None)
        )
        extra: dict[str, Any] = {"evse": {"id": tx.connector_id, "connector_id": 1}}
        if tx.stop_id_tag:
            extra["id_token"] = self._tokens.token(tx.stop_id_tag)
        before = self._for_end.values(tx.local_id)  # after a power cut: the stored ones
        self._event(TxKind.STOP, tx, trigger, at, info, end, before=before, **extra)
        self._for_end.forget(tx.local_id)  # behind the Ended's outbox insert

    async def drain(self, cp: ChargePoint) -> None:
        """Send the queue in order over ``cp`` (registered), with retries; until cancelled."""
        await self.queue.drain(
            lambda message, _: self._send(cp, message),
            self._confirmed,
            lambda: self._model.get_int("OCPPCommCtrlr.MessageAttemptsTransactionEvent"),
            lambda: (
                self._model.get_int("OCPPCommCtrlr.MessageAttemptIntervalTransactionEvent")
                * self._scale
            ),
        )

    async def _send(self, cp: ChargePoint, message: TxMessage) -> Any:
        try:
            return await call_checked(cp, call.TransactionEvent(**message.body))
        except CALL_FAILURES as exc:
            raise CallFailed(describe(exc)) from exc

    async def _confirmed(self, message: TxMessage, answer: Any) -> None:
        """The CSMS's verdict on the idToken (E05): remembered in the cache; a refused id
        of a running transaction stops it (TxCtrlr.StopTxOnInvalidId, true here); the
        groupIdToken it names becomes the transaction's group (C09), which matters for a
        session no Authorize preceded (a remote start, a start offline)."""
        info = answer.id_token_info
        token = message.body.get("id_token")
        if info is None or token is None:
            return
        result: AuthResult = await self._authorizer.remember(
            token["id_token"], result_from_info(info)
        )
        tx = self._running.get(message.body.get("evse", {}).get("id", 0))
        # (a Started, or the Updated that authorized a plug-in transaction: E02)
        if message.kind is TxKind.STOP or tx is None or tx.local_id != message.local_id:
            return
        if not result.accepted:
            log.warning("CSMS refused %s (%s): stopping", tx.id_tag, result.status)
            self._spawn(self._control.deauthorize(tx), f"ocpp201-deauthorize-{tx.local_id}")
        elif result.parent_id is not None:  # C09: a card of this group may stop it
            self._spawn(
                self._control.transaction_answered(tx, result.parent_id, False),
                f"ocpp201-start-answered-{tx.local_id}",
            )
