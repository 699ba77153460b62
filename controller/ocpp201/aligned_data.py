"""Clock-aligned meter values under 2.0.1 (J01), from AlignedDataCtrlr.

Every AlignedDataCtrlr.Interval seconds from midnight UTC, each EVSE's latest reading goes
out with AlignedDataCtrlr.Measurands and the context Sample.Clock:

- while a transaction runs on the EVSE, inside it: a TransactionEvent Updated with the
  trigger MeterValueClock, through the durable queue (kept offline, sent in order);
- otherwise as a MeterValuesRequest, sent only while registered (it is not a transaction
  message: offline it is dropped, as 1.6 does);
- for EVSE 0 on a station of several connectors, the sum of their meters
  (:mod:`.station_meter`) as a MeterValuesRequest (never inside a transaction), when every
  connector has a new reading;
- with SendDuringIdle true, only while no transaction runs on the station at all (we read
  the variable's "only ... when idle" that way: no clock-aligned value while charging).

Every AlignedDataCtrlr.TxEndedInterval seconds, the reading with TxEndedMeasurands is kept
for each running transaction and sent in its Ended event (SampledDataCtrlr's TxEnded* is
not in this slice). A reading is used once per purpose, so a stale one (meter silent) is
not sent again. An interval of 0 turns its part off. Loop thread only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from ocpp.v201 import call

from controller.csms.calls import CallFailed, Spawn
from controller.csms.key_timers import KeyTimers
from controller.csms.timers import ClockAligned, Retimer
from controller.domain import ChargePointControl, MeterSample
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.meter_values import meter_value
from controller.ocpp201.station_meter import STATION_EVSE, station_value
from controller.ocpp201.transactions import TransactionEvents
from controller.ocppj.caller import SessionCaller

log = logging.getLogger(__name__)

INTERVAL = "AlignedDataCtrlr.Interval"
TX_ENDED_INTERVAL = "AlignedDataCtrlr.TxEndedInterval"
CLOCK = "Sample.Clock"


class AlignedData:
    """The two clock-aligned timers of AlignedDataCtrlr and what they send or keep."""

    def __init__(
        self,
        *,
        model: DeviceModel,
        control: ChargePointControl,
        timers: KeyTimers,
        transactions: TransactionEvents,
        caller: SessionCaller[Any],
        latest: Callable[[int], MeterSample | None],
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._model = model
        self._control = control
        self._timers = timers
        self._transactions = transactions
        self._caller = caller
        self._latest = latest
        self._spawn = spawn
        self._clock = clock
        self._used: dict[tuple[int, str], MeterSample] = {}

    async def run_interval(self) -> None:
        """AlignedDataCtrlr.Interval boundaries; until cancelled."""
        await self._every(INTERVAL, self._interval_tick)

    async def run_tx_ended(self) -> None:
        """AlignedDataCtrlr.TxEndedInterval boundaries; until cancelled."""
        await self._every(TX_ENDED_INTERVAL, self._tx_ended_tick)

    async def _every(self, variable: str, tick: Callable[[], None]) -> None:
        aligned = ClockAligned(lambda: self._timers.interval(variable), self._clock)
        with self._timers.following(variable, Retimer(aligned.until_next)) as timer:
            while True:
                await timer.wait()
                aligned.fired()
                tick()

    def _fresh(self, connector_id: int, purpose: str) -> MeterSample | None:
        """The latest reading of a connector, once per purpose."""
        sample = self._latest(connector_id)
        if sample is None or self._used.get((connector_id, purpose)) is sample:
            return None
        self._used[(connector_id, purpose)] = sample
        return sample

    def _interval_tick(self) -> None:
        running = {tx.connector_id for tx in self._transactions.running()}
        if running and self._model.get_bool("AlignedDataCtrlr.SendDuringIdle"):
            return
        measurands = self._model.get_list("AlignedDataCtrlr.Measurands")
        for connector_id in self._control.connector_ids:
            sample = self._fresh(connector_id, INTERVAL)
            value = None if sample is None else meter_value(sample, measurands, CLOCK)
            if value is None:
                continue
            if connector_id in running:
                self._transactions.updated(connector_id, "MeterValueClock", value)
            elif self._caller.registered:
                request = call.MeterValues(evse_id=connector_id, meter_value=[value])
                self._spawn(self._send(request), f"ocpp201-aligned-{connector_id}")
            else:
                log.debug("offline: clock-aligned values of EVSE %d dropped", connector_id)
        self._station_tick(measurands)

    def _station_tick(self, measurands: list[str]) -> None:
        """EVSE 0's clock-aligned values, when every connector has a reading not yet used
        for it (a silent meter holds the station's back rather than repeating its value)."""
        latest = [self._latest(c) for c in self._control.connector_ids]
        samples = [s for s in latest if s is not None]
        purpose = f"{INTERVAL}@{STATION_EVSE}"
        if len(samples) < len(latest) or any(
            self._used.get((s.connector_id, purpose)) is s for s in samples
        ):
            return
        for sample in samples:
            self._used[(sample.connector_id, purpose)] = sample
        value = station_value(samples, measurands, CLOCK, max(s.timestamp for s in samples))
        if value is None:
            return
        if self._caller.registered:
            request = call.MeterValues(evse_id=STATION_EVSE, meter_value=[value])
            self._spawn(self._send(request), f"ocpp201-aligned-{STATION_EVSE}")

    def _tx_ended_tick(self) -> None:
        measurands = self._model.get_list("AlignedDataCtrlr.TxEndedMeasurands")
        for tx in self._transactions.running():
            sample = self._fresh(tx.connector_id, TX_ENDED_INTERVAL)
            value = None if sample is None else meter_value(sample, measurands, CLOCK)
            if value is not None:
                self._transactions.keep_for_end(tx.connector_id, value)

    async def _send(self, request: call.MeterValues) -> None:
        try:
            await self._caller.call(request)
        except CallFailed as exc:  # CallRefused too: a refusal is not retried
            log.warning("clock-aligned MeterValues of EVSE %d failed: %s", request.evse_id, exc)
