"""OCPP 2.0.1 reservations of any EVSE on a two-EVSE station (issue 14, H01): ReserveNow
without evseId keeps one EVSE for its idToken, not a given one. No EVSE shows Reserved while
another is free (H01.FR.20/24 of the errata); another driver may start on either EVSE, and
once only one is left it shows Reserved, and it is the reserving driver's.

The whole controller on simulated hardware (``--sim-connectors 2``) against the bundled CSMS
speaking 2.0.1; the ``csms`` fixture fails a test on any schema violation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.domain import utc_now
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.device_model import QUIET_KEYS, V201, tx_event
from tests.support.sim_app import AppRig, controller

DRIVER = "D0000001"


def evse_status(evse_id: int, status: str) -> Any:
    return lambda p: p["evseId"] == evse_id and p["connectorStatus"] == status


def shown(rig: AppRig, after: int) -> list[tuple[int, str]]:
    """The (evseId, connectorStatus) of every StatusNotification since ``after``."""
    return [(p["evseId"], p["connectorStatus"]) for p in rig.sent("StatusNotification", after)]


async def test_an_any_evse_reservation_shows_reserved_only_when_the_last_free_evse_is_needed(
    csms: LocalCsms, tmp_path: Path
) -> None:
    csms.set_tag(DRIVER, "Accepted")
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}, connectors=2) as rig:
        mark = rig.mark()
        expires = (utc_now() + dt.timedelta(minutes=10)).isoformat()
        token = {"id_token": DRIVER, "type": "ISO14443"}
        reserve = call.ReserveNow(id=71, expiry_date_time=expires, id_token=token)
        assert (await rig.cp_call(reserve)).status == "Accepted"
        # the EVSE the station keeps for it tells the CSMS it is still Available
        await csms.wait_for("StatusNotification", evse_status(1, "Available"), after=mark)
        while_both_free = shown(rig, mark)
        # another driver takes EVSE 1: not refused, and EVSE 2 is now the one kept
        await rig.plugged(1)
        await rig.act("tap", uid=ACCEPTED_TAG)
        other = await csms.wait_for("TransactionEvent", tx_event("Started"), after=mark)
        await csms.wait_for("StatusNotification", evse_status(2, "Reserved"), after=mark)
        # the reserving driver charges on it, using the reservation up
        started_mark = rig.mark()
        await rig.plugged(2)
        await rig.act("tap", uid=DRIVER)
        mine = await csms.wait_for("TransactionEvent", tx_event("Started"), after=started_mark)
    assert while_both_free and all(status == "Available" for _, status in while_both_free)
    assert other["evse"]["id"] == 1 and "reservationId" not in other
    assert other["idToken"]["idToken"] == ACCEPTED_TAG
    assert mine["evse"]["id"] == 2 and mine["reservationId"] == 71
    assert not rig.sent("ReservationStatusUpdate")  # used up: the Started event told it
