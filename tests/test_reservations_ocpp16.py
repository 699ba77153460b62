"""ReserveNow and CancelReservation over the OCPP 1.6 adapter (the charge point played by the
fake control): what OCPP itself refuses, what the charge point answers, the reservationId in
StartTransaction, and reservations kept across a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from ocpp.v16 import call

from controller.connector_types import ReservationEnd
from controller.csms.reservations import Reservation, ReservationBook
from controller.domain import Answer, Transaction, utc_now
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.settings import ReservationKeys
from controller.storage import Storage
from tests.support.csms import ACCEPTED_TAG
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, FakeControl, MakeRig
from tests.support.wait import until

TAG = ACCEPTED_TAG


def later(minutes: float = 30.0) -> dt.datetime:
    return (utc_now() + dt.timedelta(minutes=minutes)).replace(microsecond=0)


async def reserve(
    rig: AdapterRig,
    connector_id: int = 1,
    reservation_id: int = 11,
    expiry: dt.datetime | None = None,
    tag: str = TAG,
    parent: str | None = None,
) -> str:
    request = call.ReserveNow(
        connector_id=connector_id,
        expiry_date=(expiry or later()).isoformat(),
        id_tag=tag,
        reservation_id=reservation_id,
        parent_id_tag=parent,
    )
    return str((await rig.csms.call(CP_ID, request)).status)


async def stored(storage: Storage) -> list[tuple[Any, ...]]:
    return await storage.run(
        lambda conn: conn.execute(
            "SELECT reservation_id, connector_id, id_tag, parent_id FROM reservations"
            " ORDER BY reservation_id"
        ).fetchall()
    )


async def ready(make_rig: MakeRig, **kwargs: Any) -> AdapterRig:
    rig = await make_rig(**kwargs)
    await rig.registered()
    return rig


async def test_a_reservation_reaches_the_charge_point_and_is_stored_before_the_answer(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    expiry = later()
    assert await reserve(rig, expiry=expiry, parent="FAMILY") == "Accepted"
    assert rig.control.named("reserve") == [(1, TAG, "FAMILY", expiry, 11)]
    assert await stored(rig.storage) == [(11, 1, TAG, "FAMILY")]


async def test_what_ocpp_refuses_never_reaches_the_charge_point(make_rig: MakeRig) -> None:
    rig = await ready(make_rig, keys={"ReserveConnectorZeroSupported": "false"})
    assert await reserve(rig, connector_id=2) == "Rejected"  # no such connector
    assert await reserve(rig, connector_id=0) == "Rejected"  # connector 0 not supported
    assert await reserve(rig, expiry=utc_now() - dt.timedelta(seconds=1)) == "Rejected"
    bad_date = call.ReserveNow(1, "tomorrow at noon", TAG, 12)
    assert (await rig.csms.call(CP_ID, bad_date)).status == "Rejected"
    assert rig.control.named("reserve") == []
    assert await stored(rig.storage) == []


async def test_connector_0_is_reserved_when_supported(make_rig: MakeRig) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    assert await reserve(rig, connector_id=0, reservation_id=3) == "Accepted"
    assert rig.control.named("reserve")[0][0] == 0
    assert await stored(rig.storage) == [(3, 0, TAG, None)]


async def test_the_charge_points_refusals_are_answered_and_not_stored(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    for answer in (Answer.OCCUPIED, Answer.FAULTED, Answer.UNAVAILABLE):
        rig.control.reserve_answer = answer
        assert await reserve(rig) == answer.value
    assert await stored(rig.storage) == []


async def test_cancel_reservation_accepted_for_a_held_one_rejected_otherwise(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    assert await reserve(rig, reservation_id=11) == "Accepted"
    unknown = await rig.csms.call(CP_ID, call.CancelReservation(reservation_id=99))
    assert unknown.status == "Rejected"
    known = await rig.csms.call(CP_ID, call.CancelReservation(reservation_id=11))
    assert known.status == "Accepted"
    await until_stored(rig, [])


async def until_stored(rig: AdapterRig, expected: list[tuple[Any, ...]]) -> None:
    async def as_expected() -> bool:
        return await stored(rig.storage) == expected

    await until(as_expected, what=f"the stored reservations to be {expected}")


async def test_a_reservation_the_charge_point_ended_is_forgotten(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await reserve(rig, reservation_id=11) == "Accepted"
    assert await reserve(rig, reservation_id=12) == "Accepted"
    rig.adapter.reservation_ended(11, ReservationEnd.EXPIRED)
    await until_stored(rig, [(12, 1, TAG, None)])
    rig.adapter.reservation_ended(12, ReservationEnd.USED)
    await until_stored(rig, [])


async def test_the_start_of_a_reserved_session_names_the_reservation(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    tx = Transaction(uuid.uuid4().hex, 1, TAG, 100.0, utc_now(), reservation_id=11)
    rig.adapter.transaction_started(tx)
    start = await rig.csms.wait_for("StartTransaction")
    assert start["reservationId"] == 11
    plain = Transaction(uuid.uuid4().hex, 1, TAG, 100.0, utc_now())
    mark = len(rig.csms.received)
    rig.adapter.transaction_started(plain)
    assert "reservationId" not in await rig.csms.wait_for("StartTransaction", after=mark)
    [record] = [r for r in rig.csms.transactions.values() if r.reservation_id is not None]
    assert record.reservation_id == 11


async def test_a_reservation_that_cannot_be_stored_is_withdrawn_and_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    await rig.storage.close()  # every storage call fails from now on
    assert await reserve(rig) == "Rejected"
    assert rig.control.named("cancel_reservation") == [(11,)]
    assert rig.control.reservations == {}


# --- across a restart ---------------------------------------------------------------------


def _spawner(tasks: list[asyncio.Task[object]]) -> Any:
    def spawn(coro: Coroutine[Any, Any, object], name: str) -> None:
        tasks.append(asyncio.create_task(coro, name=name))

    return spawn


async def test_stored_reservations_are_made_again_at_start_unless_expired(tmp_path: Path) -> None:
    storage = await Storage.open(tmp_path / "state")
    tasks: list[asyncio.Task[object]] = []
    start = utc_now().replace(microsecond=0)
    try:
        config = OcppConfig(storage, number_of_connectors=2)
        await config.load()
        spawn = _spawner(tasks)
        first = ReservationBook(
            FakeControl((1, 2)), ReservationKeys(config), storage, lambda: start, spawn
        )
        hours = [start + dt.timedelta(hours=h) for h in (3, 1, 3)]
        assert await first.reserve(1, hours[0].isoformat(), TAG, 1, "FAMILY") == "Accepted"
        assert await first.reserve(0, hours[1].isoformat(), "CAFE0001", 2, None) == "Accepted"
        assert await first.reserve(2, hours[2].isoformat(), "BEEF0002", 3, None) == "Accepted"

        control = FakeControl((1, 2))  # the restarted charge point: connector 2 now occupied
        original = control.reserve

        async def occupied_2(connector_id: int, *args: Any) -> Answer:
            answer = await original(connector_id, *args)
            return Answer.OCCUPIED if connector_id == 2 else answer

        control.reserve = occupied_2  # type: ignore[method-assign]
        two_hours_on = start + dt.timedelta(hours=2)  # reservation 2 has expired
        restarted = ReservationBook(
            control, ReservationKeys(config), storage, lambda: two_hours_on, spawn
        )
        await restarted.restore()
        assert [c[:3] for c in control.named("reserve")] == [
            (1, TAG, "FAMILY"),
            (2, "BEEF0002", None),
        ]
        assert restarted.held == {1: Reservation(1, 1, TAG, "FAMILY", hours[0])}
        assert await stored(storage) == [(1, 1, TAG, "FAMILY")]
    finally:
        await asyncio.gather(*tasks)
        await storage.close()
