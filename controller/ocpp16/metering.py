"""Meter values for the CSMS: sampled during a transaction, and clock-aligned.

The supervisor hands over every reading (about once a second, :meth:`Metering.meter_sampled`);
the 1.6 timers decide what is sent: MeterValueSampleInterval from the start of each
transaction (1.6 §9.1.9), ClockAlignedDataInterval boundaries for every connector, with or
without a transaction. A reading is used once per context, so a stale one is not resent.
Transactions keep their readings (``tx.samples``, bounded: :data:`MAX_TX_SAMPLES`) for the
StopTransaction's transaction data. Loop thread only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ocpp.v16 import call

from controller.csms.calls import CallFailed, Spawn
from controller.csms.key_timers import KeyTimers
from controller.csms.tasks import TaskSet
from controller.csms.timers import ClockAligned, Retimer
from controller.domain import ChargePointControl, MeterSample, ReadingContext, Transaction
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.meter_values import meter_value, parse_measurands
from controller.ocpp16.transaction_sender import TransactionSender
from controller.ocppj.caller import SessionCaller

if TYPE_CHECKING:
    from controller.ocpp16.charge_point import OcppChargePoint

log = logging.getLogger(__name__)

#: Meter samples kept per transaction for StopTxn*Data; beyond it every other one goes.
MAX_TX_SAMPLES = 240


def record(tx: Transaction, sample: MeterSample, context: ReadingContext) -> None:
    """Keep ``sample`` in ``tx.samples`` (thinned to every other one beyond the bound)."""
    tx.samples.append(dataclasses.replace(sample, context=context))
    if len(tx.samples) > MAX_TX_SAMPLES:
        tx.samples[:] = tx.samples[::2]


class Metering:
    """The latest readings and the sampling timers."""

    def __init__(
        self,
        *,
        control: ChargePointControl,
        config: OcppConfig,
        timers: KeyTimers,
        transactions: TransactionSender,
        caller: SessionCaller[OcppChargePoint],
        tasks: TaskSet,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._control = control
        self._config = config
        self._timers = timers
        self._transactions = transactions
        self._caller = caller
        self._tasks = tasks
        self._spawn: Spawn = tasks.spawn
        self._clock = clock
        self._latest: dict[int, MeterSample] = {}
        self._used: dict[tuple[int, ReadingContext], MeterSample] = {}
        self._samplers: dict[str, asyncio.Task[None]] = {}
        self._aligned = ClockAligned(
            lambda: self._timers.interval("ClockAlignedDataInterval"), clock
        )

    def latest(self, connector_id: int) -> MeterSample | None:
        """The connector's latest reading (TriggerMessage MeterValues)."""
        return self._latest.get(connector_id)

    def meter_sampled(self, sample: MeterSample) -> None:
        """Keep the latest reading; the sampling timers decide what is sent."""
        self._latest[sample.connector_id] = sample

    def transaction_started(self, tx: Transaction) -> None:
        """Record the reading at the start and sample periodically until the stop."""
        latest = self._latest.get(tx.connector_id)
        if latest is not None:
            record(tx, latest, ReadingContext.BEGIN)
        task = asyncio.create_task(
            self._sample_periodically(tx), name=f"ocpp16-sample-{tx.local_id}"
        )
        self._tasks.track(task)
        self._samplers[tx.local_id] = task

    def transaction_stopped(self, tx: Transaction) -> None:
        """Stop sampling and record the reading at the stop."""
        sampler = self._samplers.pop(tx.local_id, None)
        if sampler is not None:
            sampler.cancel()
        latest = self._latest.get(tx.connector_id)
        if latest is not None:
            record(tx, latest, ReadingContext.END)

    async def run_clock_aligned(self) -> None:
        """ClockAlignedDataInterval boundaries: every connector, with or without a transaction;
        until cancelled."""
        with self._timers.following(
            "ClockAlignedDataInterval", Retimer(self._aligned.until_next)
        ) as timer:
            while True:
                await timer.wait()
                self._aligned.fired()
                self._clock_aligned_tick()

    def _fresh(self, connector_id: int, context: ReadingContext) -> MeterSample | None:
        """The latest sample of a connector, once per context (a stale one is not resent)."""
        sample = self._latest.get(connector_id)
        if sample is None or self._used.get((connector_id, context)) is sample:
            return None
        self._used[(connector_id, context)] = sample
        return sample

    def _measurands(self, key: str) -> Sequence[Any]:
        return parse_measurands(self._config.get_list(key))

    async def _sample_periodically(self, tx: Transaction) -> None:
        """MeterValueSampleInterval from the start of the transaction (1.6 §9.1.9)."""
        timer = Retimer(lambda: self._timers.interval("MeterValueSampleInterval"))
        with self._timers.following("MeterValueSampleInterval", timer):
            while True:
                await timer.wait()
                sample = self._fresh(tx.connector_id, ReadingContext.PERIODIC)
                if sample is None:
                    continue
                record(tx, sample, ReadingContext.PERIODIC)
                measurands = self._measurands("MeterValuesSampledData")
                value = meter_value(sample, measurands, ReadingContext.PERIODIC)
                if value is not None:
                    self._transactions.meter_value(tx, value)

    def _clock_aligned_tick(self) -> None:
        measurands = self._measurands("MeterValuesAlignedData")
        for connector_id in self._control.connector_ids:
            sample = self._fresh(connector_id, ReadingContext.CLOCK)
            if sample is None:
                continue
            tx = self._transactions.running(connector_id)
            if tx is not None:
                record(tx, sample, ReadingContext.CLOCK)
            value = meter_value(sample, measurands, ReadingContext.CLOCK) if measurands else None
            if value is None:
                continue
            if tx is not None:
                self._transactions.meter_value(tx, value)
            elif self._caller.registered:
                request = call.MeterValues(connector_id=connector_id, meter_value=[value])
                self._spawn(self._send_untracked(request), f"ocpp16-aligned-{connector_id}")
            else:
                log.debug("offline: clock-aligned values of connector %d dropped", connector_id)

    async def _send_untracked(self, request: Any) -> None:
        try:
            await self._caller.call(request)
        except CallFailed as exc:
            log.warning("%s failed: %s", type(request).__name__, exc)
