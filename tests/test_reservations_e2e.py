"""Reservations end to end: the real controller on simulated hardware against the loopback
CSMS: ReserveNow holds a connector for one card, CancelReservation and expiry free it,
connector 0 holds one of two connectors, and reservations survive a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from ocpp.v16 import call

from controller.domain import utc_now
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig, controller

OTHER = "0C0FFEE0"


def expiry(seconds: float = 600.0) -> str:
    return (utc_now() + dt.timedelta(seconds=seconds)).isoformat()


async def reserve(
    rig: AppRig, connector_id: int = 1, reservation_id: int = 5, seconds: float = 600.0
) -> str:
    request = call.ReserveNow(connector_id, expiry(seconds), ACCEPTED_TAG, reservation_id)
    return str((await rig.cp_call(request)).status)


async def cancel(rig: AppRig, reservation_id: int) -> str:
    return str((await rig.cp_call(call.CancelReservation(reservation_id))).status)


def starts(csms: LocalCsms) -> list[dict[str, Any]]:
    return [r.payload for r in csms.received if r.action == "StartTransaction"]


async def test_a_reserved_connector_refuses_another_card_and_starts_for_its_own(
    csms: LocalCsms, tmp_path: Path
) -> None:
    csms.set_tag(OTHER, "Accepted")
    async with controller(csms, tmp_path) as rig:
        assert await reserve(rig) == "Accepted"
        await rig.status("Reserved")
        mark = rig.mark()
        await rig.act("plug")
        await rig.act("tap", uid=OTHER)
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("contactor_closed") is False and starts(csms) == []
        assert [r.action for r in csms.received[mark:]] == []  # still Reserved, nobody asked
        await rig.act("tap", uid=ACCEPTED_TAG)
        start = await csms.wait_for("StartTransaction")
        assert start["idTag"] == ACCEPTED_TAG and start["reservationId"] == 5
        await rig.status("Charging")
        assert await cancel(rig, 5) == "Rejected"  # used up by the transaction
        [record] = csms.transactions.values()
        assert record.reservation_id == 5


async def test_a_reservation_expires_and_a_cancelled_one_frees_the_connector(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        mark = rig.mark()
        assert await reserve(rig, reservation_id=1, seconds=1.0) == "Accepted"
        await rig.status("Reserved", after=mark)
        await rig.status("Available", after=rig.mark())  # at its expiry
        assert await cancel(rig, 1) == "Rejected"
        mark = rig.mark()
        assert await reserve(rig, reservation_id=2) == "Accepted"
        await rig.status("Reserved", after=mark)
        mark = rig.mark()
        assert await cancel(rig, 2) == "Accepted"
        await rig.status("Available", after=mark)
        await rig.charging()  # anyone may charge again
        assert "reservationId" not in starts(csms)[0]


async def test_a_connector_0_reservation_keeps_one_connector_for_its_card(
    csms: LocalCsms, tmp_path: Path
) -> None:
    csms.set_tag(OTHER, "Accepted")
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.status("Available", connector=2)
        assert await reserve(rig, connector_id=0, reservation_id=9) == "Accepted"
        await rig.status("Reserved", connector=1)
        await rig.app.sim.handle({"action": "plug", "connector": 2})
        await rig.act("tap", uid=OTHER)  # the free connector 2 is for anyone
        first = await csms.wait_for("StartTransaction")
        assert first["connectorId"] == 2 and "reservationId" not in first
        assert await reserve(rig, connector_id=0, reservation_id=10) == "Occupied"
        mark = rig.mark()
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        second = await csms.wait_for("StartTransaction", after=mark)
        assert second["connectorId"] == 1 and second["reservationId"] == 9


async def test_a_connector_0_reservation_moves_for_another_card_to_the_free_connector(
    csms: LocalCsms, tmp_path: Path
) -> None:
    csms.set_tag(OTHER, "Accepted")
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.status("Available", connector=2)
        assert await reserve(rig, connector_id=0, reservation_id=9) == "Accepted"
        await rig.status("Reserved", connector=1)
        mark = rig.mark()
        await rig.plugged(1)  # at the connector holding it
        await rig.act("tap", uid=OTHER)  # connector 2 is still free: one is left for it
        first = await csms.wait_for("StartTransaction")
        await rig.status("Reserved", connector=2, after=mark)
        mark = rig.mark()
        await rig.plugged(2)
        await rig.act("tap", uid=ACCEPTED_TAG)
        second = await csms.wait_for("StartTransaction", after=mark)
    assert first["connectorId"] == 1 and "reservationId" not in first
    assert second["connectorId"] == 2 and second["reservationId"] == 9


async def test_a_connector_0_reservation_is_used_by_its_card_on_any_connector(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.status("Available", connector=2)
        assert await reserve(rig, connector_id=0, reservation_id=9) == "Accepted"
        await rig.status("Reserved", connector=1)
        mark = rig.mark()
        await rig.app.sim.handle({"action": "plug", "connector": 2})
        await rig.status("Preparing", connector=2)
        await rig.act("tap", uid=ACCEPTED_TAG)
        start = await csms.wait_for("StartTransaction")
        assert start["connectorId"] == 2 and start["reservationId"] == 9
        await rig.status("Available", connector=1, after=mark)  # the reservation is gone


async def test_a_reservation_survives_a_restart_of_the_controller(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, connectors=2) as rig:
        assert await reserve(rig, connector_id=2, reservation_id=7) == "Accepted"
    mark = len(csms.received)
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.status("Reserved", connector=2, after=mark)  # restored before the boot
        mark = rig.mark()
        assert await cancel(rig, 7) == "Accepted"
        await rig.status("Available", connector=2, after=mark)
