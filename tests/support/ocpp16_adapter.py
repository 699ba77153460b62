"""The rig of the OCPP 1.6 adapter tests: the adapter against a real CSMS, with a fake supervisor.

- :class:`FakeControl` plays the supervisor (:class:`~controller.domain.ChargePointControl`):
  it records every request from the CSMS, answers as told, and offers helpers that do what
  the supervisor does on the CsmsLink side (start and stop transactions, report statuses).
- ``make_rig`` (a fixture): a real :class:`LocalCsms`, a real :class:`Storage` and
  :class:`OcppConfig` in ``tmp_path`` and an :class:`Ocpp16Adapter` running against them
  with every protocol timer shrunk (``interval_scale`` 0.1: an OCPP "1 s" is 0.1 s).
  Teardown stops everything and, through ``make_csms``, fails the test on any OCPP 1.6J
  violation the CSMS saw (schema, timestamps, calls while Rejected).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.connector_types import ConnectorStatus, ReservationEnd, StopReason
from controller.csms.link import LinkTiming
from controller.domain import (
    Answer,
    ConnectorView,
    CsmsSettings,
    MeterSample,
    ReadingContext,
    ResetKind,
    Transaction,
    utc_now,
)
from controller.local_csms import LocalCsms
from controller.ocpp16 import Ocpp16Adapter
from controller.ocpp16.keys import OcppConfig
from controller.storage import Storage
from drivers.base import MeterReading
from drivers.errors import FaultKind
from tests.support.csms import MakeCsms

CP_ID = "CP-TEST-1"

#: Every protocol timer shrunk for tests: an OCPP interval of 1 s lasts 0.1 s.
FAST = LinkTiming(
    response_timeout_s=1.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.4,
    backoff_jitter=0.2,
    open_timeout_s=2.0,
    close_timeout_s=0.5,
    boot_retry_s=0.2,
    interval_scale=0.1,
)


def reading(
    energy_wh: float,
    *,
    phases: int = 3,
    current_a: float = 16.0,
    voltage_v: float = 230.0,
    frequency_hz: float | None = 50.0,
    total_power_w: float | None = None,
) -> MeterReading:
    """A meter reading; a single-phase meter (``phases=1``) has no L2/L3 values."""

    def per_phase(value: float) -> tuple[float | None, float | None, float | None]:
        return (value, value if phases == 3 else None, value if phases == 3 else None)

    power = current_a * voltage_v
    return MeterReading(
        voltage_v=per_phase(voltage_v),
        current_a=per_phase(current_a),
        power_w=per_phase(power),
        total_power_w=total_power_w if total_power_w is not None else power * phases,
        energy_import_wh=energy_wh,
        frequency_hz=frequency_hz,
        taken_at=0.0,
    )


def sample(connector_id: int, energy_wh: float, **kwargs: Any) -> MeterSample:
    return MeterSample(
        connector_id, utc_now(), reading(energy_wh, **kwargs), 16.0, ReadingContext.PERIODIC
    )


@dataclass
class FakeControl:
    """The supervisor as the CSMS side sees it: records requests, answers as told."""

    ids: tuple[int, ...] = (1,)
    statuses: dict[int, ConnectorStatus] = field(default_factory=dict)
    faults: dict[int, FaultKind | None] = field(default_factory=dict)
    transactions: dict[int, Transaction] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    remote_start_answer: bool = True
    unlock_answer: Answer = Answer.UNLOCKED
    availability_answer: Answer = Answer.ACCEPTED
    reserve_answer: Answer = Answer.ACCEPTED
    reservations: dict[int, tuple[int, str, str | None, dt.datetime]] = field(default_factory=dict)
    link: Ocpp16Adapter | None = None

    def __post_init__(self) -> None:
        for c in self.ids:
            self.statuses.setdefault(c, ConnectorStatus.AVAILABLE)
            self.faults.setdefault(c, None)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]

    # ChargePointControl
    @property
    def connector_ids(self) -> tuple[int, ...]:
        return self.ids

    def view(self, connector_id: int) -> ConnectorView:
        return ConnectorView(
            connector_id,
            self.statuses[connector_id],
            self.faults[connector_id],
            self.transactions.get(connector_id),
            None,
            16.0,
        )

    def transaction_by_csms_id(self, csms_id: int) -> Transaction | None:
        return next((t for t in self.transactions.values() if t.csms_id == csms_id), None)

    async def remote_start(self, id_tag: str, connector_id: int | None, authorized: bool) -> bool:
        self.calls.append(("remote_start", (id_tag, connector_id, authorized)))
        return self.remote_start_answer

    async def remote_stop(self, tx: Transaction) -> bool:
        self.calls.append(("remote_stop", (tx,)))
        return True

    async def deauthorize(self, tx: Transaction) -> None:
        self.calls.append(("deauthorize", (tx,)))

    async def stop_transaction(self, tx: Transaction, reason: StopReason) -> bool:
        self.calls.append(("stop_transaction", (tx, reason)))
        return True

    async def transaction_answered(
        self, tx: Transaction, parent_id: str | None, withhold_energy: bool
    ) -> None:
        self.calls.append(("transaction_answered", (tx, parent_id, withhold_energy)))

    async def reset(self, kind: ResetKind) -> Answer:
        self.calls.append(("reset", (kind,)))
        return Answer.ACCEPTED

    async def unlock(self, connector_id: int) -> Answer:
        self.calls.append(("unlock", (connector_id,)))
        return self.unlock_answer

    async def change_availability(self, connector_id: int, available: bool) -> Answer:
        self.calls.append(("change_availability", (connector_id, available)))
        return self.availability_answer

    def set_current_limit(self, connector_id: int, current_a: float | None) -> None:
        self.calls.append(("set_current_limit", (connector_id, current_a)))

    def apply_settings(self, settings: CsmsSettings) -> None:
        self.calls.append(("apply_settings", (settings,)))

    async def reserve(
        self,
        connector_id: int,
        id_tag: str,
        parent_id: str | None,
        expiry: dt.datetime,
        reservation_id: int,
    ) -> Answer:
        """Holds what it accepts in ``reservations`` (id -> connector, tag, parent, expiry)."""
        self.calls.append(("reserve", (connector_id, id_tag, parent_id, expiry, reservation_id)))
        if self.reserve_answer is Answer.ACCEPTED:
            self.reservations[reservation_id] = (connector_id, id_tag, parent_id, expiry)
        return self.reserve_answer

    async def cancel_reservation(self, reservation_id: int) -> Answer:
        self.calls.append(("cancel_reservation", (reservation_id,)))
        if self.reservations.pop(reservation_id, None) is None:
            return Answer.REJECTED
        if self.link is not None:
            self.link.reservation_ended(reservation_id, ReservationEnd.CANCELLED)
        return Answer.ACCEPTED

    # the supervisor's side of the CsmsLink
    def start(self, connector_id: int, id_tag: str, meter_wh: float) -> Transaction:
        assert self.link is not None
        tx = Transaction(uuid.uuid4().hex, connector_id, id_tag, meter_wh, utc_now())
        self.transactions[connector_id] = tx
        self.link.transaction_started(tx)
        return tx

    def stop(
        self, tx: Transaction, meter_wh: float, reason: StopReason, id_tag: str | None = None
    ) -> None:
        assert self.link is not None
        tx.meter_stop_wh = meter_wh
        tx.stopped_at = utc_now()
        tx.stop_reason = reason
        tx.stop_id_tag = id_tag
        self.transactions.pop(tx.connector_id, None)
        self.link.transaction_stopped(tx)

    def report(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None = None
    ) -> None:
        assert self.link is not None
        self.statuses[connector_id] = status
        self.faults[connector_id] = fault
        self.link.status_changed(connector_id, status, fault)


@dataclass
class AdapterRig:
    csms: LocalCsms
    adapter: Ocpp16Adapter
    control: FakeControl
    config: OcppConfig
    storage: Storage
    task: asyncio.Task[None]

    async def registered(self, timeout_s: float = 3.0, after: int = 0) -> None:
        """Wait until a boot was accepted and its status sweep went out (from ``after``)."""
        await self.csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == self.control.ids[-1],
            timeout_s=timeout_s,
            after=after,
        )
        assert self.adapter.registered

    async def stop_adapter(self) -> None:
        """Cancel the adapter; fail (rather than hang) if it does not stop within 5 s."""
        self.task.cancel()
        await asyncio.wait({self.task}, timeout=5)
        assert self.task.done(), "the adapter did not stop when cancelled"

    def actions(self, after: int = 0) -> list[str]:
        return [r.action for r in self.csms.received[after:]]


MakeRig = Callable[..., Awaitable[AdapterRig]]


def build_adapter(
    csms: LocalCsms,
    control: FakeControl,
    config: OcppConfig,
    storage: Storage,
    **extra: Any,
) -> Ocpp16Adapter:
    """The adapter every rig uses (test identity, FAST timing unless ``extra`` says
    otherwise), linked to ``control``; ``extra`` adds constructor arguments."""
    extra.setdefault("timing", FAST)
    adapter = Ocpp16Adapter(
        url=csms.url,
        chargepoint_id=CP_ID,
        vendor="picharge",
        model="picharge-pi",
        serial="SN-1",
        firmware_version="0.1.0",
        control=control,
        config=config,
        storage=storage,
        **extra,
    )
    control.link = adapter
    return adapter


@pytest.fixture(name="make_rig")
async def make_rig_fixture(make_csms: MakeCsms, tmp_path: Path) -> AsyncIterator[MakeRig]:
    rigs: list[AdapterRig] = []

    async def make(
        *,
        keys: dict[str, str] | None = None,
        connectors: Sequence[int] = (1,),
        csms: LocalCsms | None = None,
        timing: LinkTiming = FAST,
        clock: Callable[[], dt.datetime] = utc_now,
        state: Path | None = None,
        adapter_args: Mapping[str, Any] | None = None,
        **csms_kwargs: Any,
    ) -> AdapterRig:
        """A started adapter; ``csms_kwargs`` make its CSMS unless ``csms`` is given, its
        state lives in ``state`` (a new directory unless given: the same one is the same
        charger after a restart), ``adapter_args`` add constructor arguments."""
        if csms is None:
            csms = await make_csms(**csms_kwargs)
        storage = await Storage.open(state or tmp_path / f"state{len(rigs)}")
        config = OcppConfig(storage, number_of_connectors=len(connectors), defaults=keys)
        await config.load()
        control = FakeControl(tuple(connectors))
        adapter = build_adapter(
            csms, control, config, storage, clock=clock, timing=timing, **(adapter_args or {})
        )
        task = asyncio.create_task(adapter.run(), name="adapter")
        rig = AdapterRig(csms, adapter, control, config, storage, task)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.stop_adapter()
        await rig.storage.close()


async def started(make_rig: MakeRig, **keys: str) -> AdapterRig:
    """A rig with ``keys`` preset, once its charger registered."""
    rig = await make_rig(keys=keys or None)
    await rig.registered()
    return rig


def frame_index(rig: AdapterRig, after: int, wanted: str) -> int:
    """Index in raw_received (from ``after``) of the first frame containing ``wanted``."""
    for i, frame in enumerate(rig.csms.raw_received[after:], after):
        if wanted in frame.text:
            return i
    raise AssertionError(f"no frame with {wanted}")
