"""OCPP 2.0.1 transactions begun at the plug-in (E02, TxCtrlr.TxStartPoint EVConnected):
Started (CablePluggedIn, no idToken) when the car is plugged in, the authorization an
Updated (Authorized, with the idToken) of the same transaction, and a transaction never
authorized ended by the car leaving, by TxCtrlr.EVConnectionTimeOut or, after a power cut,
with PowerLoss. The contactor still closes only for an authorized session. Against the whole
controller on simulated hardware and the bundled CSMS (which records schema violations);
a power cut is the run task cancelled (``crash=True``) and the restart a new run on the same
state directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG
from tests.support.device_model import QUIET_KEYS, TOKEN, V201, tx_event
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until


def keys(**tx_ctrlr: Any) -> dict[str, Any]:
    return {**QUIET_KEYS, "TxCtrlr": {"TxStartPoint": '"EVConnected,Authorized"', **tx_ctrlr}}


def events(csms: LocalCsms, tx_id: str) -> list[dict[str, Any]]:
    return [
        r.payload
        for r in csms.received
        if r.action == "TransactionEvent" and r.payload["transactionInfo"]["transactionId"] == tx_id
    ]


def on_state(csms: LocalCsms, tmp_path: Path, **kwargs: Any) -> Any:
    """The controller on ``tmp_path/state``: a run cut by a power cut (``crash=True``) and
    the restart after it (the car may still be plugged in: ``ready_status=None``)."""
    return controller(
        csms, tmp_path, keys(), ocpp=V201, base_keys={}, state_dir=tmp_path / "state", **kwargs
    )


async def plugged(rig: AppRig) -> dict[str, Any]:
    """Plug in (no card): the Started it begins."""
    await rig.act("plug")
    return await rig.csms.wait_for("TransactionEvent", tx_event("Started"))


async def round_trip(rig: AppRig) -> None:
    """A CSMS call answered: what the charger did before it has been sent."""
    await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))


async def test_a_transaction_begins_at_the_plug_in_and_a_card_authorizes_it(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(), ocpp=V201, base_keys={}) as rig:
        started = await plugged(rig)
        await rig.act("charge")  # the car asks for energy: nobody has authorized it
        await rig.status("Occupied")
        await round_trip(rig)
        closed_before_card = rig.hw("contactor_closed")
        await rig.act("tap", uid=ACCEPTED_TAG.lower())
        authorized = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "Authorized"
        )
        await until(lambda: rig.hw("contactor_closed"), timeout_s=10)
        session = rig.app.supervisor.view(1).transaction  # type: ignore[union-attr]
        assert session is not None
        await rig.cp_call(
            call.RequestStopTransaction(transaction_id=started["transactionInfo"]["transactionId"])
        )
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
    tx_id = started["transactionInfo"]["transactionId"]
    assert started["triggerReason"] == "CablePluggedIn"
    assert "idToken" not in started
    assert started["transactionInfo"]["chargingState"] == "EVConnected"
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert not closed_before_card  # the contactor waits for the authorization
    assert authorized["eventType"] == "Updated"
    assert authorized["transactionInfo"]["transactionId"] == tx_id
    assert authorized["idToken"] == {"idToken": ACCEPTED_TAG, "type": "ISO14443"}
    assert session.local_id == tx_id  # the core's session is the same transaction
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    kinds = [e["eventType"] for e in events(csms, tx_id)]
    assert (kinds[0], kinds[-1], kinds.count("Started")) == ("Started", "Ended", 1)
    assert [e["seqNo"] for e in events(csms, tx_id)] == list(range(len(kinds)))
    assert csms.violations == []


async def test_a_transaction_never_authorized_ends_when_the_car_leaves(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(), ocpp=V201, base_keys={}) as rig:
        started = await plugged(rig)
        await rig.act("unplug")
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        assert rig.app.supervisor.view(1).transaction is None  # type: ignore[union-attr]
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "EVCommunicationLost",
        "EVDisconnected",
    )
    assert ended["seqNo"] == 1
    assert csms.violations == []


async def test_a_transaction_never_authorized_ends_after_the_ev_connection_timeout(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(
        csms, tmp_path, keys(EVConnectionTimeOut=1), ocpp=V201, base_keys={}
    ) as rig:
        started = await plugged(rig)
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"), timeout_s=10)
        mark = rig.mark()
        await rig.act("tap", uid=ACCEPTED_TAG.lower())  # the car is still there
        second = await csms.wait_for("TransactionEvent", tx_event("Started"), after=mark)
    assert ended["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "EVConnectTimeout",
        "Timeout",
    )
    # a card afterwards begins a transaction of its own, at its authorization
    assert second["transactionInfo"]["transactionId"] != ended["transactionInfo"]["transactionId"]
    assert (second["triggerReason"], second["idToken"]["idToken"]) == ("Authorized", ACCEPTED_TAG)


async def test_a_power_cut_before_the_authorization_still_ends_the_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with on_state(csms, tmp_path, crash=True) as rig:
        started = await plugged(rig)
    # the car is still plugged in after the restart: a new transaction begins for it
    async with on_state(csms, tmp_path, ready_status=None):
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        first_id = started["transactionInfo"]["transactionId"]
        again = await csms.wait_for(
            "TransactionEvent",
            lambda p: (
                p["triggerReason"] == "CablePluggedIn"
                and p["transactionInfo"]["transactionId"] != first_id
            ),
        )
    tx_id = started["transactionInfo"]["transactionId"]
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert (ended["triggerReason"], ended["transactionInfo"]["stoppedReason"]) == (
        "AbnormalCondition",
        "PowerLoss",
    )
    # (at least once: the Started may come again after the restart, the same event)
    assert sorted({e["seqNo"] for e in events(csms, tx_id)}) == [0, 1]
    assert again["seqNo"] == 0


async def test_a_power_cut_after_the_authorization_ends_it_once_as_the_journal_says(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with on_state(csms, tmp_path, crash=True) as rig:
        started = await plugged(rig)
        await rig.act("tap", uid=ACCEPTED_TAG.lower())
        await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Authorized")
    async with on_state(csms, tmp_path, ready_status=None) as rig:
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        await round_trip(rig)
    tx_id = started["transactionInfo"]["transactionId"]
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    assert [e["eventType"] for e in events(csms, tx_id)].count("Ended") == 1


async def test_a_remote_start_authorizes_a_transaction_begun_at_the_plug_in(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, keys(), ocpp=V201, base_keys={}) as rig:
        started = await plugged(rig)
        answer = await rig.cp_call(
            call.RequestStartTransaction(id_token=TOKEN, remote_start_id=41, evse_id=1)
        )
        authorized = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "RemoteStart"
        )
    assert answer.status == "Accepted"
    assert answer.transaction_id == started["transactionInfo"]["transactionId"]
    assert authorized["eventType"] == "Updated"
    assert (
        authorized["transactionInfo"]["transactionId"]
        == (started["transactionInfo"]["transactionId"])
    )
    assert authorized["transactionInfo"]["remoteStartId"] == 41
    assert authorized["idToken"] == {"idToken": ACCEPTED_TAG, "type": "Central"}
