"""OCPP 2.0.1 reservations (issue 14, block H): ReserveNow for an EVSE or any EVSE with every
answer, the reserved EVSE's status, only the reserving idToken or its group may start (H03),
CancelReservation (H02), ReservationStatusUpdate when a reservation expires or is removed
(H01), ReservationCtrlr, and a reservation kept across a restart.

The whole controller runs on simulated hardware against the bundled CSMS speaking 2.0.1;
the ``csms`` fixture fails a test on any schema violation of what the station sent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.domain import utc_now
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.device_model import (
    QUIET_KEYS,
    V201,
    expire_reservation_offline,
    set_variable,
    tx_event,
)
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

KEYS = QUIET_KEYS
DRIVER = "D0000001"
FLEET_CARD = "F0000002"
TOKEN = {"id_token": DRIVER, "type": "ISO14443"}


def expiry(seconds: float = 600.0) -> str:
    return (utc_now() + dt.timedelta(seconds=seconds)).isoformat()


async def reserve(
    rig: AppRig, reservation_id: int = 5, seconds: float = 600.0, **extra: Any
) -> str:
    """ReserveNow for DRIVER (``evse_id=1`` etc. in ``extra``); its status."""
    request = call.ReserveNow(
        id=reservation_id, expiry_date_time=expiry(seconds), id_token=TOKEN, **extra
    )
    return str((await rig.cp_call(request)).status)


async def cancel(rig: AppRig, reservation_id: int) -> str:
    return str((await rig.cp_call(call.CancelReservation(reservation_id=reservation_id))).status)


def update(reservation_id: int, status: str) -> Any:
    return lambda p: p == {"reservationId": reservation_id, "reservationUpdateStatus": status}


def authorized_with_group(request: dict[str, Any]) -> dict[str, Any]:
    """The CSMS's answer: every card Accepted, FLEET_CARD in DRIVER's group."""
    info: dict[str, Any] = {"status": "Accepted"}
    if request["idToken"]["idToken"] == FLEET_CARD:
        info["groupIdToken"] = {"idToken": "FLEET", "type": "Central"}
    return {"idTokenInfo": info}


async def test_a_reserved_evse_starts_only_for_its_token_group_and_the_start_names_it(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        csms.set_response("Authorize", authorized_with_group)
        csms.set_response("TransactionEvent", authorized_with_group)
        mark = rig.mark()
        group = {"id_token": "FLEET", "type": "Central"}
        assert await reserve(rig, 5, evse_id=1, group_id_token=group) == "Accepted"
        await rig.status("Reserved", mark)
        await rig.act("plug")
        await rig.act("charge")
        await rig.act("tap", uid=ACCEPTED_TAG)  # accepted by the CSMS, not the reserving one
        await csms.wait_for("Authorize", lambda p: p["idToken"]["idToken"] == ACCEPTED_TAG)
        # nothing may happen after the answer; the charger acts within tens of ms, so 0.5 s
        # is a wide margin on a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("contactor_closed") is False
        assert not rig.sent("TransactionEvent")
        await rig.act("tap", uid=FLEET_CARD)  # of the reservation's group
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
        cancelled = await cancel(rig, 5)  # used up by the transaction
    assert started["reservationId"] == 5
    assert started["idToken"] == {"idToken": FLEET_CARD, "type": "ISO14443"}
    assert cancelled == "Rejected"
    assert not rig.sent("ReservationStatusUpdate")  # the Started event told the CSMS


async def test_a_reservation_of_any_evse_holds_one_for_its_token(
    csms: LocalCsms, tmp_path: Path
) -> None:
    csms.set_tag(DRIVER, "Accepted")
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        assert await reserve(rig, 8) == "Accepted"  # no evseId: any EVSE
        await rig.status("Reserved", mark)
        await rig.act("plug")
        await rig.act("tap", uid=DRIVER)
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
        assert await set_variable(rig, "ReservationCtrlr", "NonEvseSpecific", "false") == (
            "Accepted"
        )
        unspecified = await reserve(rig, 9)
    assert started["reservationId"] == 8
    assert unspecified == "Rejected"


async def test_an_expired_reservation_is_reported_and_frees_the_evse(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        assert await reserve(rig, 11, seconds=1.5, evse_id=1) == "Accepted"
        await rig.status("Reserved", mark)
        await csms.wait_for("ReservationStatusUpdate", update(11, "Expired"), after=mark)
        await rig.status("Available", mark)
        gone = await cancel(rig, 11)
    assert gone == "Rejected"


async def test_cancel_frees_the_evse_and_an_unknown_reservation_is_rejected(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        assert await reserve(rig, 12, evse_id=1) == "Accepted"
        await rig.status("Reserved", mark)
        mark = rig.mark()
        answers = (await cancel(rig, 12), await cancel(rig, 12), await cancel(rig, 99))
        await rig.status("Available", mark)
    assert answers == ("Accepted", "Rejected", "Rejected")
    assert not rig.sent("ReservationStatusUpdate")  # the CSMS cancelled it: it knows


async def test_a_fault_removes_the_reservation_and_each_refusal_has_its_answer(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        assert await reserve(rig, 21, evse_id=1) == "Accepted"
        mark = rig.mark()
        await rig.act("fault", fault="rcd")
        await rig.status("Faulted", mark)
        await csms.wait_for("ReservationStatusUpdate", update(21, "Removed"), after=mark)
        faulted = await reserve(rig, 22, evse_id=1)
        mark = rig.mark()
        await rig.act("fault", fault="clear")
        await rig.status("Available", mark)
        unknown_evse = await reserve(rig, 23, evse_id=2)
        other_type = await reserve(rig, 24, evse_id=1, connector_type="cCCS2")
        type2 = await reserve(rig, 25, evse_id=1, connector_type="sType2")
        assert await cancel(rig, 25) == "Accepted"
        await rig.cp_call(call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1}))
        unavailable = await reserve(rig, 26, evse_id=1)
        await rig.cp_call(call.ChangeAvailability(operational_status="Operative", evse={"id": 1}))
        await rig.act("plug")
        await rig.status("Occupied")
        occupied = await reserve(rig, 27, evse_id=1)
        assert await set_variable(rig, "ReservationCtrlr", "Enabled", "false") == "Accepted"
        await rig.act("unplug")
        await rig.status("Available", mark)
        disabled = await reserve(rig, 28, evse_id=1)
    assert faulted == "Faulted"
    assert (unknown_evse, other_type, type2) == ("Rejected", "Rejected", "Accepted")
    assert (unavailable, occupied, disabled) == ("Unavailable", "Occupied", "Rejected")


async def test_a_reservation_survives_a_restart(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        assert await reserve(rig, 31, evse_id=1) == "Accepted"
        await rig.status("Reserved")
    async with controller(
        csms, tmp_path, KEYS, ocpp=V201, base_keys={}, ready_status="Reserved"
    ) as rig:
        cancelled = await cancel(rig, 31)
    assert cancelled == "Accepted"


async def test_a_reservation_that_expires_offline_or_while_off_is_reported_after_the_boot(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        assert await reserve(rig, 41, seconds=1.0, evse_id=1) == "Accepted"
        await expire_reservation_offline(rig)
        mark = rig.mark()
        csms.refuse_connections = False
        await csms.wait_for("ReservationStatusUpdate", update(41, "Expired"), after=mark)
        assert await reserve(rig, 42, seconds=1.0, evse_id=1) == "Accepted"
        until_expired = time.monotonic() + 1.2
    # the behaviour under test is the reservation's time passing while the station is off
    await asyncio.sleep(max(0.0, until_expired - time.monotonic()))
    mark = len(csms.received)
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await csms.wait_for("ReservationStatusUpdate", update(42, "Expired"), after=mark)
        cancelled = await cancel(rig, 42)
    assert cancelled == "Rejected"
