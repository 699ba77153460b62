"""The two OCPP versions as the fault trials (bench/fault_trials.py) see them.

One trial driver and one judge serve both versions; what differs is here, in a small class
per version: how a trial's keys are preset, which CSMS calls start and end a transaction,
how the bundled CSMS's record of them reads as neutral :class:`TxView` rows (what the judge
checks: closed exactly once, the stop reason, the register at the end not below the start,
and under 2.0.1 seqNo without gaps), and how a queued message is recognised on the wire
(the outage trials match every message the charger queued with what arrived).

Under 1.6 the CSMS gives each transaction its id (StartTransaction's answer) and a
StopTransaction closes it; under 2.0.1 the charger's own id names it in every
TransactionEvent, Started and Ended open and close it, and each event has a seqNo: an
identical repeat of one seqNo is a redelivery (at least once), a repeat that differs or a
missing number is a fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.local_csms import LocalCsms, Received, parse_timestamp

Payload = dict[str, Any]


@dataclass
class TxView:
    """One transaction as the CSMS knows it, version-neutral."""

    tx_id: str
    meter_start_wh: float | None
    meter_stop_wh: float | None  # None: never ended
    stop_reason: str | None
    ends: list[str] = field(default_factory=list)  # each end message received (JSON)
    redelivered: int = 0  # identical repeats of its messages (at least once)
    problems: list[str] = field(default_factory=list)  # e.g. a seqNo gap

    @property
    def closed(self) -> bool:
        return self.meter_stop_wh is not None


def _write_keys(path: Path, keys: Mapping[str, Any]) -> Path:
    """A ``--ocpp-keys`` preset: ``key = value`` lines, a mapping value as a TOML table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {v}\n" for k, v in keys.items() if not isinstance(v, Mapping)]
    for table, values in keys.items():
        if isinstance(values, Mapping):
            lines += [f"[{table}]\n", *(f"{k} = {v}\n" for k, v in values.items())]
    path.write_text("".join(lines))
    return path


class V16:
    """OCPP 1.6J."""

    version = "1.6"
    #: a meter sample every second, no clock-aligned values, quick retries
    keys: Mapping[str, Any] = {
        "HeartbeatInterval": 300,
        "MeterValueSampleInterval": 1,
        "ClockAlignedDataInterval": 0,
        "TransactionMessageRetryInterval": 1,
        "WebSocketPingInterval": 1,
        "ConnectionTimeOut": 60,
    }
    #: the CSMS calls a trial's hooks run in, and which moment of a transaction each is
    hooked = ("StartTransaction", "StopTransaction")

    def write_keys(self, path: Path) -> Path:
        return _write_keys(path, self.keys)

    def moment(self, action: str, request: Payload) -> str | None:
        """``start`` or ``stop`` when ``request`` starts or ends a transaction."""
        return {"StartTransaction": "start", "StopTransaction": "stop"}.get(action)

    def connector_is(self, status: str) -> tuple[str, Any]:
        """The StatusNotification predicate of connector 1 in ``status`` (Preparing: plugged)."""
        return "StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == status

    def plugged(self) -> tuple[str, Any]:
        return self.connector_is("Preparing")

    def charging(self) -> tuple[str, Any]:
        return self.connector_is("Charging")

    def started(self) -> tuple[str, Any]:
        return "StartTransaction", lambda p: True

    def ended(self) -> tuple[str, Any]:
        return "StopTransaction", lambda p: True

    def known(self, csms: LocalCsms, cp: str) -> set[str]:
        return {str(t) for t, r in csms.transactions.items() if r.cp_id == cp}

    def transactions(self, csms: LocalCsms, cp: str, known: set[str], mark: int) -> list[TxView]:
        """The transactions opened since ``known`` was taken; their stops from ``mark`` on."""
        stops: dict[str, list[str]] = {}
        for item in csms.received[mark:]:
            if item.cp_id == cp and item.action == "StopTransaction":
                text = json.dumps(item.payload, sort_keys=True)
                stops.setdefault(str(item.payload["transactionId"]), []).append(text)
        views = []
        for tid, record in csms.transactions.items():
            if str(tid) in known or record.cp_id != cp:
                continue
            ends = stops.get(str(tid), [])
            # a StopTransaction without a reason means Local (OCPP 1.6 §6.49)
            reason = None if record.stopped_at is None else record.stop_reason or "Local"
            views.append(
                TxView(
                    tx_id=str(tid),
                    meter_start_wh=record.meter_start_wh,
                    meter_stop_wh=record.meter_stop_wh,
                    stop_reason=reason,
                    ends=ends,
                    redelivered=len(ends) - len(set(ends)),
                )
            )
        return views

    # --- the outage trials: queued messages on the wire ----------------------------------

    def is_transaction_message(self, item: Received) -> bool:
        return item.action in ("StartTransaction", "StopTransaction") or (
            item.action == "MeterValues" and "transactionId" in item.payload
        )

    def queued_key(self, kind: str, body: Mapping[str, Any]) -> tuple[str, str]:
        """What identifies a queued message (kind, snake_case body) on the wire: its call and
        timestamp (1.6 messages carry no number)."""
        return kind, self.queued_stamp(kind, body)

    def wire_key(self, item: Received) -> tuple[str, str]:
        return item.action, self.wire_stamp(item.payload)

    def queued_stamp(self, kind: str, body: Mapping[str, Any]) -> str:
        if kind == "MeterValues":
            return str(body["meter_value"][0]["timestamp"])
        return str(body["timestamp"])

    def wire_stamp(self, payload: Payload) -> str:
        if "meterValue" in payload and "timestamp" not in payload:
            return str(payload["meterValue"][0]["timestamp"])
        return str(payload["timestamp"])

    def csms_id(self, csms: LocalCsms, cp: str, start: Received) -> str | None:
        """The id the CSMS gave the transaction ``start`` opened."""
        moment = parse_timestamp(self.wire_stamp(start.payload))
        for tid, record in csms.transactions.items():
            if record.cp_id == cp and record.started_at == moment:
                return str(tid)
        return None

    def carried_id(self, item: Received) -> str | None:
        value = item.payload.get("transactionId")
        return None if value is None else str(value)


class V201:
    """OCPP 2.0.1."""

    version = "2.0.1"
    keys: Mapping[str, Any] = {
        "OCPPCommCtrlr": {
            "HeartbeatInterval": 300,
            "WebSocketPingInterval": 1,
            "MessageAttemptIntervalTransactionEvent": 1,
        },
        "SampledDataCtrlr": {"TxUpdatedInterval": 1},
        "AlignedDataCtrlr": {"Interval": 0},
    }
    hooked = ("TransactionEvent",)

    def write_keys(self, path: Path) -> Path:
        return _write_keys(path, self.keys)

    def moment(self, action: str, request: Payload) -> str | None:
        if action != "TransactionEvent":
            return None
        return {"Started": "start", "Ended": "stop"}.get(request["eventType"])

    def connector_is(self, status: str) -> tuple[str, Any]:
        return "StatusNotification", lambda p: p["evseId"] == 1 and p["connectorStatus"] == status

    def plugged(self) -> tuple[str, Any]:
        return self.connector_is("Occupied")

    def charging(self) -> tuple[str, Any]:
        return "TransactionEvent", lambda p: p["transactionInfo"].get("chargingState") == "Charging"

    def started(self) -> tuple[str, Any]:
        return "TransactionEvent", lambda p: p["eventType"] == "Started"

    def ended(self) -> tuple[str, Any]:
        return "TransactionEvent", lambda p: p["eventType"] == "Ended"

    def known(self, csms: LocalCsms, cp: str) -> set[str]:
        return {tid for c, tid in csms.transaction_events if c == cp}

    def transactions(self, csms: LocalCsms, cp: str, known: set[str], mark: int) -> list[TxView]:
        views = []
        for (c, tid), events in csms.transaction_events.items():
            if c != cp or tid in known:
                continue
            view = TxView(tid, None, None, None)
            by_seq: dict[int, Payload] = {}
            for event in events:
                first = by_seq.setdefault(event["seqNo"], event)
                if first is event:
                    continue
                if first == event:
                    view.redelivered += 1
                else:
                    view.problems.append(f"{tid}: seqNo {event['seqNo']} repeated differently")
            missing = sorted(set(range(max(by_seq, default=-1) + 1)) - set(by_seq))
            if missing:
                view.problems.append(f"{tid}: seqNo {missing} never arrived")
            for event in by_seq.values():
                if event["eventType"] == "Started":
                    view.meter_start_wh = _register(event, "Transaction.Begin")
                elif event["eventType"] == "Ended":
                    view.meter_stop_wh = _register(event, "Transaction.End")
                    view.stop_reason = event["transactionInfo"].get("stoppedReason", "Local")
            view.ends = [json.dumps(e, sort_keys=True) for e in events if e["eventType"] == "Ended"]
            if view.meter_start_wh is None:
                view.problems.append(f"{tid}: no Started with the register")
            views.append(view)
        return views

    def is_transaction_message(self, item: Received) -> bool:
        return item.action == "TransactionEvent"

    def queued_key(self, kind: str, body: Mapping[str, Any]) -> tuple[str, int]:
        """A queued event on the wire: its transaction and seqNo."""
        return str(body["transaction_info"]["transaction_id"]), int(body["seq_no"])

    def wire_key(self, item: Received) -> tuple[str, int]:
        return str(item.payload["transactionInfo"]["transactionId"]), int(item.payload["seqNo"])

    def queued_stamp(self, kind: str, body: Mapping[str, Any]) -> str:
        return str(body["timestamp"])

    def wire_stamp(self, payload: Payload) -> str:
        return str(payload["timestamp"])

    def csms_id(self, csms: LocalCsms, cp: str, start: Received) -> str | None:
        return self.carried_id(start)  # the charger's own id

    def carried_id(self, item: Received) -> str | None:
        return str(item.payload["transactionInfo"]["transactionId"])


def _register(event: Payload, context: str) -> float | None:
    """The Energy.Active.Import.Register value of ``context`` in a TransactionEvent."""
    for value in event.get("meterValue", []):
        for sampled in value["sampledValue"]:
            if (
                sampled.get("context") == context
                and sampled.get("measurand") == "Energy.Active.Import.Register"
            ):
                return float(sampled["value"])
    return None


Dialect = V16 | V201
DIALECTS: dict[str, Dialect] = {"1.6": V16(), "2.0.1": V201()}
