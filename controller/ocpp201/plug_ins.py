"""2.0.1 transactions begun at the plug-in (E02, TxStartPoint EVConnected), kept on disk until
the core's session takes them over.

With EVConnected among the TxStartPoint members, a car plugged in before any authorization
begins a 2.0.1 transaction at once (Started, triggerReason CablePluggedIn, no idToken). The
core knows nothing of it yet: its session, journal row and contactor rules begin only at the
authorization, as for 1.6. This module keeps the part between: one record per connector
(the transactionId, when, the register), stored in the state database on the same storage
thread as the outbox row of its Started, so that whatever was queued is also remembered:

- an authorization while it runs makes the core's session take its id
  (:class:`~controller.domain.SessionIds`): from then on it is the core's transaction, in
  the journal under the same id, and the record goes;
- the car leaving, or TxCtrlr.EVConnectionTimeOut passing, with no authorization ends it
  (:mod:`.transactions`), and the record goes;
- a record found at start (the power went before any of these) is ended with PowerLoss:
  nothing the CSMS heard of stays open.

Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.connector_types import ConnectorStatus
from controller.csms.calls import Spawn
from controller.csms.queue import TxKind
from controller.csms.wire import iso_utc, parse_iso
from controller.domain import ChargePointControl, ConnectorView, Transaction
from controller.ocpp201 import tx_points
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.transactions import START_POINT, TransactionEvents, register_value
from controller.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "ocpp201.plug_in"  # key: the connector id


@dataclass(frozen=True, slots=True)
class PlugIn:
    """A transaction begun at the plug-in and not (yet) the core's session."""

    connector_id: int
    local_id: str
    started_at: dt.datetime
    meter_start_wh: float

    def stored(self) -> str:
        return json.dumps(
            {
                "id": self.local_id,
                "at": iso_utc(self.started_at),
                "meter_wh": self.meter_start_wh,
            }
        )


class PlugIns:
    """The plug-in transactions by connector, mirrored in the state database."""

    def __init__(self, storage: Storage, stored: Mapping[str, str]) -> None:
        self._storage = storage
        self._by_connector: dict[int, PlugIn] = {}
        for connector, text in stored.items():
            data = json.loads(text)
            self._by_connector[int(connector)] = PlugIn(
                int(connector), str(data["id"]), parse_iso(data["at"]), float(data["meter_wh"])
            )

    @classmethod
    async def load(cls, storage: Storage) -> PlugIns:
        return cls(storage, await storage.load_settings(NAMESPACE))

    def get(self, connector_id: int) -> PlugIn | None:
        return self._by_connector.get(connector_id)

    def all(self) -> list[PlugIn]:
        return list(self._by_connector.values())

    def begin(self, connector_id: int, at: dt.datetime, meter_wh: float) -> PlugIn:
        """A new plug-in transaction on ``connector_id``, recorded (queued on the storage
        thread ahead of its Started's outbox row)."""
        plug_in = PlugIn(connector_id, uuid.uuid4().hex, at, meter_wh)
        self._by_connector[connector_id] = plug_in
        text = plug_in.stored()
        self._storage.submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO settings (namespace, key, value) VALUES (?, ?, ?)",
                (NAMESPACE, str(connector_id), text),
            )
        )
        return plug_in

    def take(self, tx: Transaction) -> bool:
        """Whether the session ``tx`` took its connector's plug-in transaction's id (it is
        the core's now, in the journal): the record goes."""
        plug_in = self._by_connector.get(tx.connector_id)
        if plug_in is None or plug_in.local_id != tx.local_id:
            return False
        self.end(tx.connector_id)
        return True

    def end(self, connector_id: int) -> None:
        """Forget the connector's record (ended, or the core's session now)."""
        if self._by_connector.pop(connector_id, None) is None:
            return
        self._storage.submit(
            lambda conn: conn.execute(
                "DELETE FROM settings WHERE namespace = ? AND key = ?",
                (NAMESPACE, str(connector_id)),
            )
        )


class PlugInTransactions:
    """E02: when a plug-in begins a transaction, and how one no session took over ends."""

    def __init__(
        self,
        *,
        records: PlugIns,
        events: TransactionEvents,
        model: DeviceModel,
        control: ChargePointControl,
        clock: Callable[[], dt.datetime],
        spawn: Spawn,
        interval_scale: float,
    ) -> None:
        self._records = records
        self._events = events
        self._model = model
        self._control = control
        self._clock = clock
        self._spawn = spawn
        self._scale = interval_scale
        #: Connectors whose plug-in transaction timed out, until the car leaves.
        self._timed_out: set[int] = set()
        self._restored = False  # the last run's records are ended first (end_left_over)

    def session_id(self, connector_id: int) -> str | None:
        """:class:`~controller.domain.SessionIds`: the id the session starting on
        ``connector_id`` takes (its plug-in transaction's, if one runs)."""
        plug_in = self._records.get(connector_id)
        return None if plug_in is None else plug_in.local_id

    def status_changed(self, view: ConnectorView) -> None:
        """A car plugged into an idle EVSE (Preparing, no session) with EVConnected among
        the TxStartPoint members begins a transaction (Started, CablePluggedIn); the car
        leaving one that no session took over ends it (EVDisconnected)."""
        if not self._restored:  # the connectors' first statuses, before the link runs
            return
        connector_id = view.connector_id
        plug_in = self._records.get(connector_id)
        if not view.ev_connected:
            self._timed_out.discard(connector_id)
            if plug_in is not None and view.transaction is None:
                self._end(plug_in, "EVDisconnected", "EVCommunicationLost", "Idle")
            return
        if (
            plug_in is None
            and view.transaction is None
            and view.status is ConnectorStatus.PREPARING
            and connector_id not in self._timed_out
            and tx_points.EV_CONNECTED in self._model.get_list(START_POINT)
        ):
            self._begin(view)

    def _begin(self, view: ConnectorView) -> None:
        at = self._clock()
        meter_wh = 0.0 if view.reading is None else view.reading.energy_import_wh
        plug_in = self._records.begin(view.connector_id, at, meter_wh)  # before its Started
        log.info("transaction %s begins at the plug-in (E02)", plug_in.local_id)
        self._events.queue_event(
            TxKind.START,
            _as_transaction(plug_in),
            "CablePluggedIn",
            at,
            {"charging_state": "EVConnected"},
            register_value(meter_wh, at, "Transaction.Begin"),
            evse={"id": view.connector_id, "connector_id": 1},
        )
        self._spawn(self._timeout(plug_in), f"ocpp201-plug-in-{view.connector_id}")

    async def _timeout(self, plug_in: PlugIn) -> None:
        """TxCtrlr.EVConnectionTimeOut after the plug-in with no authorization: the
        transaction ends (Timeout); another begins only once the car has left."""
        await asyncio.sleep(self._model.get_int("TxCtrlr.EVConnectionTimeOut") * self._scale)
        if self._records.get(plug_in.connector_id) is plug_in:
            self._timed_out.add(plug_in.connector_id)
            self._end(plug_in, "Timeout", "EVConnectTimeout", "EVConnected")

    def _end(
        self,
        plug_in: PlugIn,
        stopped: str,
        trigger: str,
        state: str,
        at: dt.datetime | None = None,
    ) -> None:
        """Queue the Ended of a plug-in transaction no session took over, then forget it;
        its register at the end is the meter's now (``at`` given: the one at its begin)."""
        reading = None if at is not None else self._control.view(plug_in.connector_id).reading
        meter_wh = plug_in.meter_start_wh if reading is None else reading.energy_import_wh
        at = at or self._clock()
        log.info("plug-in transaction %s ends unauthorized (%s)", plug_in.local_id, stopped)
        self._events.queue_event(
            TxKind.STOP,
            _as_transaction(plug_in),
            trigger,
            at,
            {"charging_state": state, "stopped_reason": stopped},
            register_value(meter_wh, at, "Transaction.End"),
            evse={"id": plug_in.connector_id, "connector_id": 1},
        )
        self._records.end(plug_in.connector_id)

    def end_left_over(self) -> None:
        """At start, after power-loss recovery: a plug-in transaction the last run left
        (the power went before an authorization or the car's leaving) ends with PowerLoss at
        its begin; one a session had taken over is the journal's, and recovery ended it. A
        car found plugged in then begins a new one."""
        self._restored = True
        for plug_in in self._records.all():
            if self._events.ended(plug_in.local_id):
                self._records.end(plug_in.connector_id)
            else:
                self._end(plug_in, "PowerLoss", "AbnormalCondition", "Idle", plug_in.started_at)
        for connector_id in self._control.connector_ids:  # a car still there: a new one
            self.status_changed(self._control.view(connector_id))


def _as_transaction(plug_in: PlugIn) -> Transaction:
    """A plug-in transaction as the events take it: no idToken yet."""
    return Transaction(
        local_id=plug_in.local_id,
        connector_id=plug_in.connector_id,
        id_tag="",
        meter_start_wh=plug_in.meter_start_wh,
        started_at=plug_in.started_at,
    )
