"""OCPP 2.0.1 transactions (issue 14, blocks C and E): Authorize with an ISO14443 idToken,
TransactionEvent Started/Updated/Ended through the durable queue, power-loss recovery.

The whole controller runs on simulated hardware against the bundled CSMS speaking 2.0.1;
the ``make_csms`` fixture fails a test on any schema violation of what the station sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG, UNKNOWN_TAG
from tests.support.sim_app import CP_ID, AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
#: Fast TransactionEvent Updated (MeterValuePeriodic) and quick retries.
KEYS = {
    "OCPPCommCtrlr": {
        "HeartbeatInterval": 2,
        "WebSocketPingInterval": 0,
        "MessageAttemptIntervalTransactionEvent": 1,
    },
    "SampledDataCtrlr": {"TxUpdatedInterval": 1},
}


def drew_energy(event: dict[str, Any]) -> bool:
    """A MeterValuePeriodic event whose register shows energy drawn."""
    if event["triggerReason"] != "MeterValuePeriodic":
        return False
    values = event["meterValue"][0]["sampledValue"]
    return any(v["measurand"] == "Energy.Active.Import.Register" and v["value"] > 0 for v in values)


def events(csms: LocalCsms) -> list[dict[str, Any]]:
    """The TransactionEvents of the one transaction the CSMS knows, in order."""
    [(key, found)] = list(csms.transaction_events.items())
    assert key[0] == CP_ID
    return found


async def charge(rig: AppRig, tag: str = ACCEPTED_TAG) -> dict[str, Any]:
    """Plug in, tap ``tag``, let the car draw: the Started event."""
    await rig.act("plug")
    await rig.status("Occupied")
    await rig.act("tap", uid=tag.lower())  # the reader gives hex; the idToken is uppercase
    started = await rig.csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    await rig.act("charge")
    await until(lambda: rig.hw("contactor_closed"), timeout_s=10)
    return started


async def test_a_session_is_authorized_started_updated_and_ended_in_sequence(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        started = await charge(rig)
        authorize = await csms.wait_for("Authorize")
        await csms.wait_for("TransactionEvent", drew_energy)
        await rig.act("unplug")
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert not rig.hw("contactor_closed")
    assert authorize["idToken"] == {"idToken": ACCEPTED_TAG.upper(), "type": "ISO14443"}
    tx_id = started["transactionInfo"]["transactionId"]
    assert len(tx_id) <= 36
    assert started["triggerReason"] == "Authorized"
    assert started["idToken"]["idToken"] == ACCEPTED_TAG.upper()
    assert started["evse"] == {"id": 1, "connectorId": 1}
    begin = started["meterValue"][0]["sampledValue"][0]
    assert begin["context"] == "Transaction.Begin"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert ended["triggerReason"] == "EVCommunicationLost"
    end = ended["meterValue"][0]["sampledValue"][0]
    assert end["context"] == "Transaction.End"
    assert end["value"] > begin["value"]  # the car drew energy
    sent = events(csms)
    assert [e["seqNo"] for e in sent] == list(range(len(sent)))
    assert {e["transactionInfo"]["transactionId"] for e in sent} == {tx_id}
    assert (sent[0]["eventType"], sent[-1]["eventType"]) == ("Started", "Ended")
    states = [e["transactionInfo"].get("chargingState") for e in sent]
    assert "Charging" in states
    periodic = [e for e in sent if e["triggerReason"] == "MeterValuePeriodic"]
    measurands = {v["measurand"] for v in periodic[0]["meterValue"][0]["sampledValue"]}
    assert {"Energy.Active.Import.Register", "Power.Active.Import"} <= measurands
    assert not any(e.get("offline") for e in sent)


async def test_an_unknown_card_is_refused_and_nothing_starts(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await rig.act("plug")
        await rig.act("charge")
        await rig.act("tap", uid=UNKNOWN_TAG)
        answer = await csms.wait_for("Authorize")
        for _ in range(20):  # two seconds: a closed contactor would show long before
            assert not rig.hw("contactor_closed")
            await asyncio.sleep(0.1)
    assert answer["idToken"]["idToken"] == UNKNOWN_TAG
    assert csms.transaction_events == {}


async def test_events_raised_offline_are_flagged_and_delivered_in_order_after_reconnect(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await charge(rig)
        csms.refuse_connections = True
        await csms.drop_connections()
        await rig.act("unplug")  # Ended while the CSMS is out of reach
        await until(lambda: not rig.hw("contactor_closed"), timeout_s=10)
        csms.refuse_connections = False
        ended = await csms.wait_for(
            "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout_s=20
        )
    assert ended["offline"] is True
    # A message in flight when the link drops is sent again (at least once): the
    # CSMS sees a repeat with the same seqNo and identical content, never a gap.
    first: dict[int, dict[str, Any]] = {}
    for event in events(csms):
        assert first.setdefault(event["seqNo"], event) == event
    assert list(first) == list(range(len(first)))


async def test_power_loss_ends_the_interrupted_transaction_after_the_restart(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with controller(
        csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state, crash=True
    ) as rig:
        started = await charge(rig)
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic"
        )
    before = len(events(csms))
    # The car may still be plugged in after the restart: any first status will do.
    async with controller(
        csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state, ready_status=None
    ):
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
    tx_id = started["transactionInfo"]["transactionId"]
    assert ended["transactionInfo"]["transactionId"] == tx_id
    assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
    sent = events(csms)
    assert len(sent) > before
    # Delivery is at least once: an event whose answer was lost in the crash comes again,
    # the same event (same seqNo and content); the Ended continues the numbering.
    by_seq: dict[int, dict[str, Any]] = {}
    for event in sent:
        assert by_seq.setdefault(event["seqNo"], event) == event
    assert sorted(by_seq) == list(range(len(by_seq)))
    assert ended["seqNo"] == len(by_seq) - 1
