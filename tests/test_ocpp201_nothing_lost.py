"""Nothing of OCPP 2.0.1 is lost in a power cut (issue 14): a ReservationStatusUpdate raised
while offline and the clock-aligned values kept for a transaction's Ended event
(AlignedDataCtrlr.TxEndedInterval) are in the state database, so the controller's next run
delivers them.

The whole controller on simulated hardware against the bundled CSMS speaking 2.0.1; a
power cut is the run task cancelled (``crash=True``: no shutdown), the restart a new
controller on the same state directory. The ``csms`` fixture fails a test on any schema
violation of what the station sent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.domain import utc_now
from controller.local_csms import LocalCsms
from controller.ocpp201.ended_values import NAMESPACE as ENDED_VALUES
from controller.ocpp201.reservation_updates import NAMESPACE as RESERVATION_UPDATES
from tests.support.csms import ACCEPTED_TAG
from tests.support.device_model import QUIET_KEYS, V201, expire_reservation_offline, tx_event
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

TX_ENDED_KEYS = {**QUIET_KEYS, "AlignedDataCtrlr": {"TxEndedInterval": 1}}


async def stored(rig: AppRig, namespace: str) -> dict[str, str]:
    """What the station keeps in its state database under ``namespace``."""
    storage = rig.app.storage
    assert storage is not None
    return await storage.load_settings(namespace)


def stored_count(rig: AppRig, namespace: str) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return len(await stored(rig, namespace))

    return count


def nothing_stored(rig: AppRig, namespace: str) -> Callable[[], Awaitable[bool]]:
    async def empty() -> bool:
        return not await stored(rig, namespace)

    return empty


async def test_a_reservation_update_raised_offline_is_delivered_after_a_power_cut(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}, crash=True) as rig:
        expires = (utc_now() + dt.timedelta(seconds=1)).isoformat()
        token = {"id_token": "D0000001", "type": "ISO14443"}
        reserve = call.ReserveNow(id=61, expiry_date_time=expires, id_token=token, evse_id=1)
        assert (await rig.cp_call(reserve)).status == "Accepted"
        await expire_reservation_offline(rig)
        await until(stored_count(rig, RESERVATION_UPDATES), what="the update on disk")
        kept = await stored(rig, RESERVATION_UPDATES)
    assert kept == {"61": "Expired"}
    assert not [r for r in csms.received if r.action == "ReservationStatusUpdate"]
    csms.refuse_connections = False
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}) as rig:
        update = await csms.wait_for("ReservationStatusUpdate")
        await until(nothing_stored(rig, RESERVATION_UPDATES), what="the answered row gone")
    assert update == {"reservationId": 61, "reservationUpdateStatus": "Expired"}
    mark = len(csms.received)
    async with controller(csms, tmp_path, QUIET_KEYS, ocpp=V201, base_keys={}):
        pass  # answered: the next boot has nothing more to say about it
    assert not [r for r in csms.received[mark:] if r.action == "ReservationStatusUpdate"]


async def _at_least(count: Callable[[], Awaitable[int]], n: int) -> bool:
    return await count() >= n


def contexts(payload: dict[str, Any]) -> list[str]:
    return [v["context"] for mv in payload["meterValue"] for v in mv["sampledValue"]]


@pytest.mark.parametrize("link", ["online", "offline"])
async def test_the_values_kept_for_the_ended_event_survive_a_power_cut(
    csms: LocalCsms, tmp_path: Path, link: str
) -> None:
    async with controller(
        csms, tmp_path, TX_ENDED_KEYS, ocpp=V201, base_keys={}, crash=True
    ) as rig:
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
        if link == "offline":  # the Ended is the first the CSMS hears after the start
            csms.refuse_connections = True
            await csms.drop_connections()
        await rig.act("charge")
        count = stored_count(rig, ENDED_VALUES)
        await until(lambda: _at_least(count, 2), what="two values on disk", timeout_s=10)
        kept = await stored(rig, ENDED_VALUES)
    tx_id = started["transactionInfo"]["transactionId"]
    assert all(key.startswith(f"{tx_id}:") for key in kept)
    csms.refuse_connections = False
    async with controller(
        csms, tmp_path, TX_ENDED_KEYS, ocpp=V201, base_keys={}, ready_status=None
    ) as rig:
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        await until(nothing_stored(rig, ENDED_VALUES), what="the used values gone")
    assert ended["transactionInfo"] == {
        "transactionId": tx_id,
        "chargingState": "Idle",
        "stoppedReason": "PowerLoss",
    }
    values = contexts(ended)
    # at least the values on disk at the cut, then the register at the end
    assert values[-1] == "Transaction.End"
    assert len(values) - 1 >= len(kept) and set(values[:-1]) == {"Sample.Clock"}, values
