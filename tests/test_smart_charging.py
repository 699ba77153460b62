"""Smart charging over OCPP 1.6: SetChargingProfile, ClearChargingProfile, GetCompositeSchedule
and RemoteStartTransaction's profile, from a real loopback CSMS through the adapter to the
supervisor (a fake that records ``set_current_limit``); and the profile service on its own
with a clock of our own, for restarts, phases and time."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.charging_schedule import ConnectorRating, RateUnit
from controller.connector_types import ConnectorStatus, StopReason
from controller.csms.smart_charging import SmartCharging
from controller.domain import Transaction, utc_now
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.profiles import parse_profile
from controller.ocpp16.settings import SmartChargingKeys
from controller.storage import Storage
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, FakeControl, MakeRig
from tests.support.wait import until

TAG = "04A1B2C3"


def profile(
    purpose: str = "TxDefaultProfile",
    *periods: tuple[int, float],
    profile_id: int = 1,
    stack_level: int = 0,
    kind: str = "Relative",
    unit: str = "A",
    start: dt.datetime | None = None,
    duration: int | None = None,
    phases: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A chargingProfile in the library's snake_case; periods (start s, limit)."""
    schedule: dict[str, Any] = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [
            {"start_period": s, "limit": limit, **({"number_phases": phases} if phases else {})}
            for s, limit in (periods or ((0, 16.0),))
        ],
    }
    if start is not None:
        schedule["start_schedule"] = start.isoformat()
    if duration is not None:
        schedule["duration"] = duration
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
        **extra,
    }


async def ready(make_rig: MakeRig, **kwargs: Any) -> AdapterRig:
    rig = await make_rig(**kwargs)
    await rig.registered()
    return rig


async def set_profile(rig: AdapterRig, connector_id: int, body: dict[str, Any]) -> str:
    result = await rig.csms.call(CP_ID, call.SetChargingProfile(connector_id, body))
    return str(result.status)


def limits(rig: AdapterRig) -> list[tuple[Any, ...]]:
    return rig.control.named("set_current_limit")


def last_limit(rig: AdapterRig, connector_id: int = 1) -> float | None:
    found = [limit for c, limit in limits(rig) if c == connector_id]
    assert found, f"no limit was pushed to connector {connector_id}"
    return found[-1]  # type: ignore[no-any-return]


# --- the stack ------------------------------------------------------------------------------


async def test_the_highest_stack_level_wins_within_a_purpose(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await set_profile(rig, 1, profile("TxDefaultProfile", (0, 10.0))) == "Accepted"
    assert limits(rig) == [(1, 10.0)]
    higher = profile("TxDefaultProfile", (0, 20.0), profile_id=2, stack_level=3)
    assert await set_profile(rig, 1, higher) == "Accepted"
    assert last_limit(rig) == 20.0  # the higher level wins, though it allows more
    assert (await rig.csms.call(CP_ID, call.ClearChargingProfile(id=2))).status == "Accepted"
    assert last_limit(rig) == 10.0


async def test_same_id_or_same_purpose_and_stack_level_replaces(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    await set_profile(rig, 1, profile("TxDefaultProfile", (0, 10.0), profile_id=1))
    await set_profile(rig, 1, profile("TxDefaultProfile", (0, 12.0), profile_id=1))
    assert last_limit(rig) == 12.0 and len(rig.adapter._profiles.book) == 1
    await set_profile(rig, 1, profile("TxDefaultProfile", (0, 14.0), profile_id=9))
    assert last_limit(rig) == 14.0 and [p.profile_id for p in rig.adapter._profiles.book] == [9]


async def test_the_charge_point_maximum_caps_every_connector_whatever_the_default(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    await set_profile(rig, 0, profile("TxDefaultProfile", (0, 16.0)))
    cap = profile("ChargePointMaxProfile", (0, 10.0), profile_id=2, kind="Absolute")
    assert await set_profile(rig, 0, cap) == "Accepted"
    assert (last_limit(rig, 1), last_limit(rig, 2)) == (10.0, 10.0)
    cleared = await rig.csms.call(
        CP_ID, call.ClearChargingProfile(charging_profile_purpose="ChargePointMaxProfile")
    )
    assert cleared.status == "Accepted"
    assert (last_limit(rig, 1), last_limit(rig, 2)) == (16.0, 16.0)


async def test_a_tx_profile_overrides_the_default_and_ends_with_its_transaction(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    await set_profile(rig, 0, profile("TxDefaultProfile", (0, 8.0)))
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    body = profile("TxProfile", (0, 24.0), profile_id=5, transaction_id=tx.csms_id)
    assert await set_profile(rig, 1, body) == "Accepted"
    assert last_limit(rig) == 24.0
    rig.control.stop(tx, 100, StopReason.LOCAL, id_tag=TAG)
    await until(lambda: last_limit(rig) == 8.0)
    assert [p.profile_id for p in rig.adapter._profiles.book] == [1]


async def test_a_home_energy_manager_pauses_with_a_zero_amp_default_profile(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    tx = rig.control.start(1, TAG, 0)
    pause = profile("TxDefaultProfile", (0, 0.0), kind="Absolute", stack_level=1)
    assert await set_profile(rig, 1, pause) == "Accepted"
    assert last_limit(rig) == 0.0
    resume = profile("TxDefaultProfile", (0, 11.0), kind="Absolute", stack_level=1)
    assert await set_profile(rig, 1, resume) == "Accepted"
    assert last_limit(rig) == 11.0 and tx.running


# --- what is refused ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connector_id", "body"),
    [
        (1, profile("ChargePointMaxProfile", kind="Absolute")),
        (0, profile("TxProfile")),
        (1, profile("TxProfile")),  # no transaction runs
        (3, profile("TxDefaultProfile")),
        (1, profile("TxDefaultProfile", transaction_id=7)),
        (1, profile("TxDefaultProfile", kind="Recurring", recurrency_kind="Daily")),  # no start
        (1, profile("TxDefaultProfile", (0, -1.0))),
        (1, profile("TxDefaultProfile", (60, 10.0))),
        (1, profile("TxDefaultProfile", (0, 10.0), (0, 8.0))),
        (1, profile("TxDefaultProfile", valid_to="2001-01-01T00:00:00Z")),
        (1, profile("TxDefaultProfile", phases=4)),
        (1, profile("TxDefaultProfile", duration=0)),
    ],
    ids=[
        "cp-max-on-a-connector",
        "tx-on-connector-0",
        "tx-without-transaction",
        "unknown-connector",
        "transaction-id-on-a-default",
        "recurring-without-start",
        "negative-limit",
        "first-period-late",
        "periods-out-of-order",
        "expired",
        "four-phases",
        "zero-duration",
    ],
)
async def test_a_profile_that_cannot_be_followed_is_rejected_and_changes_nothing(
    make_rig: MakeRig, connector_id: int, body: dict[str, Any]
) -> None:
    rig = await ready(make_rig)
    assert await set_profile(rig, connector_id, body) == "Rejected"
    assert limits(rig) == [] and len(rig.adapter._profiles.book) == 0


async def test_a_tx_profile_for_another_transaction_is_rejected(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    assert tx.csms_id is not None
    wrong = profile("TxProfile", transaction_id=tx.csms_id + 1)
    assert await set_profile(rig, 1, wrong) == "Rejected"
    assert await set_profile(rig, 1, profile("TxProfile")) == "Accepted"  # the running one


async def test_the_smart_charging_keys_bound_what_is_accepted(make_rig: MakeRig) -> None:
    rig = await ready(
        make_rig,
        keys={
            "ChargeProfileMaxStackLevel": "2",
            "ChargingScheduleAllowedChargingRateUnit": "Current",
            "ChargingScheduleMaxPeriods": "2",
            "MaxChargingProfilesInstalled": "2",
        },
    )
    assert await set_profile(rig, 1, profile(stack_level=3)) == "Rejected"
    assert await set_profile(rig, 1, profile(unit="W")) == "Rejected"
    assert await set_profile(rig, 1, profile("TxDefaultProfile", (0, 6), (60, 7), (120, 8))) == (
        "Rejected"
    )
    assert await set_profile(rig, 1, profile(stack_level=2, profile_id=1)) == "Accepted"
    assert await set_profile(rig, 1, profile(stack_level=1, profile_id=2)) == "Accepted"
    assert await set_profile(rig, 1, profile(stack_level=0, profile_id=3)) == "Rejected"  # full
    assert await set_profile(rig, 1, profile("TxDefaultProfile", (0, 9.0), profile_id=2)) == (
        "Accepted"  # a replacement does not need room
    )


async def test_the_smart_charging_profile_and_its_keys_are_reported(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.GetConfiguration())
    values = {entry["key"]: entry for entry in result.configuration_key}
    assert "SmartCharging" in values["SupportedFeatureProfiles"]["value"].split(",")
    for key, value in {
        "ChargeProfileMaxStackLevel": "8",
        "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
        "ChargingScheduleMaxPeriods": "48",
        "MaxChargingProfilesInstalled": "16",
    }.items():
        assert values[key] == {"key": key, "readonly": True, "value": value}
    change = await rig.csms.call(CP_ID, call.ChangeConfiguration("ChargeProfileMaxStackLevel", "9"))
    assert change.status == "Rejected"


# --- ClearChargingProfile --------------------------------------------------------------------


async def test_clear_charging_profile_by_id_connector_purpose_and_stack_level(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    for connector_id, body in [
        (0, profile("ChargePointMaxProfile", kind="Absolute", profile_id=1)),
        (0, profile("TxDefaultProfile", profile_id=2, stack_level=0)),
        (1, profile("TxDefaultProfile", profile_id=3, stack_level=1)),
        (2, profile("TxDefaultProfile", profile_id=4, stack_level=1)),
        (2, profile("TxDefaultProfile", profile_id=5, stack_level=2)),
    ]:
        assert await set_profile(rig, connector_id, body) == "Accepted"

    def left() -> list[int]:
        return sorted(p.profile_id for p in rig.adapter._profiles.book)

    async def clear(**criteria: Any) -> str:
        return str((await rig.csms.call(CP_ID, call.ClearChargingProfile(**criteria))).status)

    assert await clear(id=3) == "Accepted" and left() == [1, 2, 4, 5]
    assert await clear(id=3) == "Unknown"
    assert await clear(connector_id=2, stack_level=2) == "Accepted" and left() == [1, 2, 4]
    assert await clear(connector_id=1) == "Unknown"
    assert await clear(connector_id=0, charging_profile_purpose="TxDefaultProfile") == "Accepted"
    assert left() == [1, 4]
    assert await clear(stack_level=1) == "Accepted" and left() == [1]
    assert await clear() == "Accepted" and left() == []
    assert await clear() == "Unknown"


# --- time ------------------------------------------------------------------------------------


@dataclass
class Timed:
    """set_current_limit calls with the wall-clock time they arrived."""

    calls: list[tuple[int, float | None, dt.datetime]] = field(default_factory=list)

    def install(self, control: FakeControl) -> None:
        original = control.set_current_limit

        def record(connector_id: int, current_a: float | None) -> None:
            self.calls.append((connector_id, current_a, utc_now()))
            original(connector_id, current_a)

        control.set_current_limit = record  # type: ignore[method-assign]


@pytest.mark.timing  # the limit must follow within 0.1 s of wall-clock time: run alone
async def test_each_schedule_boundary_reaches_the_supervisor_on_time(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    timed = Timed()
    timed.install(rig.control)
    start = utc_now() + dt.timedelta(seconds=0.1)
    body = profile("TxDefaultProfile", (0, 16.0), (1, 0.0), kind="Absolute", start=start)
    body["charging_schedule"]["duration"] = 2
    assert await set_profile(rig, 1, body) == "Accepted"
    await until(lambda: len(timed.calls) == 3, timeout_s=4)
    assert [(c, limit) for c, limit, _ in timed.calls] == [
        (1, 16.0),
        (1, 0.0),
        (1, None),  # the duration is over: nothing limits any more
    ]
    lags = [
        (moment - (start + dt.timedelta(seconds=n))).total_seconds()
        for n, (_, _, moment) in enumerate(timed.calls)
    ]
    print(f"limits pushed {[round(lag * 1000, 1) for lag in lags]} ms after their boundaries")
    assert all(0 <= lag < 0.1 for lag in lags), lags


@pytest.mark.timing  # the limit must follow within 0.1 s of wall-clock time: run alone
async def test_a_relative_default_counts_from_the_start_of_the_transaction(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    ramp = profile("TxDefaultProfile", (0, 6.0), (1, 16.0))
    assert await set_profile(rig, 1, ramp) == "Accepted"
    assert limits(rig) == [(1, 6.0)]  # no transaction: the first period
    assert rig.control.link is not None
    tx = Transaction("t-1", 1, TAG, 0.0, utc_now() - dt.timedelta(seconds=0.7))
    rig.control.transactions[1] = tx
    rig.control.link.transaction_started(tx)
    await until(lambda: last_limit(rig) == 16.0, timeout_s=2)
    lag = (utc_now() - (tx.started_at + dt.timedelta(seconds=1))).total_seconds()
    assert 0 <= lag < 0.1, lag


async def test_a_profile_valid_from_later_takes_over_then(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    await set_profile(rig, 1, profile("TxDefaultProfile", (0, 16.0)))
    later = utc_now() + dt.timedelta(seconds=0.5)
    night = profile(
        "TxDefaultProfile", (0, 6.0), profile_id=2, stack_level=1, valid_from=later.isoformat()
    )
    assert await set_profile(rig, 1, night) == "Accepted"
    assert limits(rig) == [(1, 16.0)]
    await until(lambda: last_limit(rig) == 6.0, timeout_s=2)
    assert utc_now() >= later


# --- GetCompositeSchedule --------------------------------------------------------------------


async def test_the_composite_schedule_is_the_minimum_of_the_maximum_and_the_default(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    await set_profile(rig, 0, profile("ChargePointMaxProfile", (0, 20.0), kind="Absolute"))
    await set_profile(rig, 1, profile("TxDefaultProfile", (0, 24.0), (600, 10.0), profile_id=2))
    result = await rig.csms.call(CP_ID, call.GetCompositeSchedule(connector_id=1, duration=3600))
    assert result.status == "Accepted" and result.connector_id == 1
    schedule = result.charging_schedule
    assert schedule["charging_rate_unit"] == "A" and schedule["duration"] == 3600
    assert schedule["start_schedule"] == result.schedule_start
    assert schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 20.0},
        {"start_period": 600, "limit": 10.0},
    ]
    watts = await rig.csms.call(
        CP_ID, call.GetCompositeSchedule(connector_id=2, duration=60, charging_rate_unit="W")
    )
    assert watts.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 13_800.0}  # 20 A x 3 phases x 230 V
    ]
    grid = await rig.csms.call(CP_ID, call.GetCompositeSchedule(connector_id=0, duration=60))
    assert grid.charging_schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 20}]


async def test_without_profiles_the_composite_is_the_connector_maximum_and_unknown_is_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.GetCompositeSchedule(connector_id=1, duration=60))
    assert result.charging_schedule["charging_schedule_period"] == [
        {"start_period": 0, "limit": 32.0}
    ]
    unknown = await rig.csms.call(CP_ID, call.GetCompositeSchedule(connector_id=4, duration=60))
    assert unknown.status == "Rejected"


# --- RemoteStartTransaction ------------------------------------------------------------------


async def test_a_remote_starts_profile_is_in_force_before_the_start_and_ends_with_it(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    body = profile("TxProfile", (0, 13.5), (3600, 6.0))
    result = await rig.csms.call(
        CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=body)
    )
    assert result.status == "Accepted"
    names = [name for name, _ in rig.control.calls if name != "apply_settings"]
    assert names == ["set_current_limit", "remote_start"]  # the limit came first
    assert limits(rig) == [(1, 13.5)]
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: [p.transaction_key for p in rig.adapter._profiles.book] == [tx.local_id])
    [held] = rig.adapter._profiles.book
    assert held.transaction_key == tx.local_id
    rig.control.stop(tx, 1, StopReason.LOCAL, id_tag=TAG)
    await until(lambda: limits(rig) == [(1, 13.5), (1, None)])


async def test_a_remote_starts_profile_goes_when_its_session_never_began(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    body = profile("TxProfile", (0, 13.5))
    await rig.csms.call(
        CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=body)
    )
    rig.control.report(1, ConnectorStatus.PREPARING)
    rig.control.report(1, ConnectorStatus.AVAILABLE)  # ConnectionTimeOut: no EV came
    await until(lambda: limits(rig) == [(1, 13.5), (1, None)])
    assert len(rig.adapter._profiles.book) == 0


async def test_a_remote_start_with_a_profile_it_cannot_follow_is_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    for body in (profile("TxDefaultProfile"), profile("TxProfile", (0, -2.0))):
        result = await rig.csms.call(
            CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=body)
        )
        assert result.status == "Rejected"
    assert rig.control.named("remote_start") == [] and limits(rig) == []


async def test_a_remote_start_on_a_busy_connector_leaves_its_sessions_profile_alone(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    rig.control.start(1, "SOMEONE", 0)
    assert await set_profile(rig, 1, profile("TxProfile", (0, 9.0))) == "Accepted"
    body = profile("TxProfile", (0, 20.0), profile_id=2)
    result = await rig.csms.call(
        CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=body)
    )
    assert result.status == "Rejected"
    assert [p.profile_id for p in rig.adapter._profiles.book] == [1]
    assert limits(rig) == [(1, 9.0)]


async def test_a_refused_remote_start_takes_its_profile_back(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    rig.control.remote_start_answer = False
    body = profile("TxProfile", (0, 10.0))
    result = await rig.csms.call(
        CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1, charging_profile=body)
    )
    assert result.status == "Rejected"
    assert limits(rig) == [(1, 10.0), (1, None)] and len(rig.adapter._profiles.book) == 0


async def test_on_several_connectors_a_remote_starts_profile_follows_the_chosen_connector(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    body = profile("TxProfile", (0, 7.0))
    result = await rig.csms.call(
        CP_ID, call.RemoteStartTransaction(id_tag=TAG, charging_profile=body)
    )
    assert result.status == "Accepted" and limits(rig) == []  # no connector known yet
    rig.control.start(1, "SOMEONE", 0)  # another card's session does not take it
    tx = rig.control.start(2, TAG.lower(), 0)  # idTags compare without case
    await until(lambda: limits(rig) == [(2, 7.0)])
    [held] = rig.adapter._profiles.book
    assert (held.connector_id, held.transaction_key) == (2, tx.local_id)


# --- the service on its own: a clock of our own, restarts, phases ---------------------------


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2024, 3, 4, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class Bench:
    """A SmartCharging on real storage with a fake supervisor and clock; :meth:`boot` builds
    a fresh one on the same storage (a restart)."""

    storage: Storage
    config: OcppConfig
    clock: Clock
    control: FakeControl
    ratings: dict[int, ConnectorRating]
    service: SmartCharging | None = None
    task: asyncio.Task[None] | None = None
    spawned: set[asyncio.Task[Any]] = field(default_factory=set)

    async def boot(self) -> SmartCharging:
        await self.halt()
        self.control.calls.clear()
        self.service = SmartCharging(
            control=self.control,
            settings=SmartChargingKeys(self.config),
            parse=parse_profile,
            storage=self.storage,
            spawn=lambda coro, name: self.spawned.add(asyncio.create_task(coro, name=name)),
            clock=self.clock,
            ratings=self.ratings,
        )
        service = self.service
        self.task = asyncio.create_task(service.run())
        await until(lambda: service.running)  # loaded and applied
        return service

    async def settle(self) -> None:
        await asyncio.gather(*self.spawned)
        self.spawned.clear()

    async def halt(self) -> None:
        await self.settle()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def rows(self) -> int:
        conn = sqlite3.connect(self.storage.path)
        try:
            return int(conn.execute("SELECT count(*) FROM charging_profiles").fetchone()[0])
        finally:
            conn.close()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    storage = await Storage.open(tmp_path / "state")
    config = OcppConfig(storage, number_of_connectors=2)
    await config.load()
    made = Bench(storage, config, Clock(), FakeControl((1, 2)), {1: ConnectorRating(1, 16.0)})
    try:
        yield made
    finally:
        await made.halt()
        await storage.close()


async def test_profiles_hold_again_after_a_restart_and_cleared_ones_do_not(bench: Bench) -> None:
    service = await bench.boot()
    cap = profile("ChargePointMaxProfile", (0, 10.0), kind="Absolute")
    assert await service.install(0, cap)
    assert await service.install(2, profile("TxDefaultProfile", (0, 6.0), profile_id=2))
    assert await service.install(1, profile("TxDefaultProfile", (0, 8.0), profile_id=3))
    assert await service.clear(3, None, None, None)
    service = await bench.boot()
    assert sorted(p.profile_id for p in service.book) == [1, 2]
    assert sorted(bench.control.named("set_current_limit")) == [(1, 10.0), (2, 6.0)]
    assert bench.rows() == 2


async def test_an_absolute_schedule_without_a_start_keeps_its_start_across_a_restart(
    bench: Bench,
) -> None:
    service = await bench.boot()
    body = profile("TxDefaultProfile", (0, 16.0), (600, 6.0), kind="Absolute")
    assert await service.install(1, body)
    bench.clock.advance(900)
    service = await bench.boot()
    assert service.limit_a(1, bench.clock()) == 6.0


async def test_a_tx_profile_stays_with_its_transaction_across_a_restart(bench: Bench) -> None:
    tx = Transaction("local-1", 1, TAG, 0.0, bench.clock(), csms_id=41)
    bench.control.transactions[1] = tx
    service = await bench.boot()
    assert await service.install(1, profile("TxProfile", (0, 9.0), transaction_id=41))
    service = await bench.boot()
    assert bench.control.named("set_current_limit") == [(1, 9.0)]
    del bench.control.transactions[1]  # after the restart another transaction runs
    bench.control.transactions[1] = Transaction("local-2", 1, TAG, 0.0, bench.clock())
    service.refresh()
    assert bench.control.named("set_current_limit")[-1] == (1, None)
    service.transaction_stopped(tx)
    await bench.settle()
    assert bench.rows() == 0


async def test_limits_in_watts_use_the_connectors_phases_or_the_periods(bench: Bench) -> None:
    service = await bench.boot()
    watts = profile("TxDefaultProfile", (0, 3680.0), unit="W")  # 16 A on one phase
    assert await service.install(0, watts)
    assert service.limit_a(1, bench.clock()) == pytest.approx(16.0)  # configured single-phase
    assert service.limit_a(2, bench.clock()) == pytest.approx(16.0 / 3)  # default three
    three = profile("TxDefaultProfile", (0, 11_040.0), unit="W", phases=3, profile_id=2)
    assert await service.install(1, three)
    assert service.limit_a(1, bench.clock()) == pytest.approx(16.0)  # numberPhases wins
    answer = service.composite(1, 60, RateUnit.WATTS)
    # in the period's own phases: 16 A on three phases (the connector's one would say 3680)
    assert answer is not None and answer.periods == ((0, 11_040.0, 3),)


async def test_a_daily_profile_wraps_around_midnight(bench: Bench) -> None:
    service = await bench.boot()
    evening = bench.clock().replace(hour=22)
    night = profile(
        "TxDefaultProfile",
        (0, 16.0),
        (8 * 3600, 6.0),
        kind="Recurring",
        recurrency_kind="Daily",
        start=evening - dt.timedelta(days=3),
    )
    assert await service.install(1, night)
    assert service.limit_a(1, bench.clock()) == 6.0  # 12:00
    assert service.limit_a(1, evening) == 16.0
    assert service.limit_a(1, evening + dt.timedelta(hours=7, minutes=59)) == 16.0
    assert service.limit_a(1, evening + dt.timedelta(hours=8)) == 6.0
    answer = service.composite(1, 86_400, None)
    assert answer is not None
    assert answer.periods == ((0, 6.0, None), (10 * 3600, 16.0, None), (18 * 3600, 6.0, None))


async def test_a_profile_that_cannot_be_stored_is_rejected(bench: Bench) -> None:
    service = await bench.boot()
    await bench.storage.close()
    assert not await service.install(1, profile())
    assert len(service.book) == 0 and bench.control.named("set_current_limit") == []
