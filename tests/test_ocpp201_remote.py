"""OCPP 2.0.1 remote control (issue 14, blocks B, F, G, P): RequestStart/StopTransaction,
GetTransactionStatus, ChangeAvailability, UnlockConnector, TriggerMessage, Reset with the
next boot's reason, DataTransfer; each against the whole controller on simulated hardware
and the bundled CSMS (``make_csms`` fails a test on any schema violation).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.connector_types import ConnectorStatus
from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from tests.support.device_model import remote_started
from tests.support.sim_app import controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
KEYS = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 300, "WebSocketPingInterval": 0},
    "SampledDataCtrlr": {"TxUpdatedInterval": 0},
}


def event(kind: str) -> Any:
    return lambda p: p["eventType"] == kind


async def test_a_remote_start_and_stop_are_reported_with_their_ids_and_reasons(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        started = await remote_started(rig)
        tx_id = started["transactionInfo"]["transactionId"]
        running = await rig.cp_call(call.GetTransactionStatus(transaction_id=tx_id))
        unknown = await rig.cp_call(call.RequestStopTransaction(transaction_id="no-such-tx"))
        stop = await rig.cp_call(call.RequestStopTransaction(transaction_id=tx_id))
        ended = await csms.wait_for("TransactionEvent", event("Ended"))
        await until(lambda: not rig.hw("contactor_closed"), timeout_s=10)
        adapter = rig.app.adapter
        assert adapter is not None
        await until(lambda: adapter.queued == 0, what="the Ended answered")  # type: ignore[attr-defined]
        finished = await rig.cp_call(call.GetTransactionStatus(transaction_id=tx_id))
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 7
    assert (running.ongoing_indicator, unknown.status, stop.status) == (
        True,
        "Rejected",
        "Accepted",
    )
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert ended["triggerReason"] == "RemoteStop"
    assert (finished.ongoing_indicator, finished.messages_in_queue) == (False, False)


async def test_change_availability_of_an_evse_and_of_the_station(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        off = await rig.cp_call(
            call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
        )
        await rig.status("Unavailable", mark)
        unknown = await rig.cp_call(
            call.ChangeAvailability(operational_status="Inoperative", evse={"id": 9})
        )
        # each EVSE has one connector, number 1: its connector alone is the EVSE
        no_connector = await rig.cp_call(
            call.ChangeAvailability(
                operational_status="Operative", evse={"id": 1, "connector_id": 2}
            )
        )
        assert rig.app.supervisor.view(1).status is ConnectorStatus.UNAVAILABLE  # unchanged
        mark = rig.mark()
        on = await rig.cp_call(call.ChangeAvailability(operational_status="Operative"))
        await rig.status("Available", mark)
        await remote_started(rig)
        scheduled = await rig.cp_call(
            call.ChangeAvailability(operational_status="Inoperative", evse={"id": 1})
        )
        assert rig.hw("contactor_closed")  # the session goes on
    assert (off.status, unknown.status, on.status) == ("Accepted", "Rejected", "Accepted")
    assert no_connector.status == "Rejected"
    assert scheduled.status == "Scheduled"


async def test_unlock_connector_answers_unknown_and_ongoing_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        unknown = await rig.cp_call(call.UnlockConnector(evse_id=5, connector_id=1))
        await remote_started(rig)
        busy = await rig.cp_call(call.UnlockConnector(evse_id=1, connector_id=1))
        assert rig.hw("contactor_closed")  # never unlocked under a running session
    assert unknown.status == "UnknownConnector"
    assert busy.status == "OngoingAuthorizedTransaction"


async def test_trigger_message_sends_what_it_accepts(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        mark = rig.mark()
        heartbeat = await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))
        await csms.wait_for("Heartbeat", after=mark)
        status = await rig.cp_call(
            call.TriggerMessage(
                requested_message="StatusNotification", evse={"id": 1, "connector_id": 1}
            )
        )
        await rig.status("Available", mark)
        boot = await rig.cp_call(call.TriggerMessage(requested_message="BootNotification"))
        log = await rig.cp_call(call.TriggerMessage(requested_message="LogStatusNotification"))
        idle = await csms.wait_for("LogStatusNotification", after=mark)
        await remote_started(rig)
        mark = rig.mark()
        tx = await rig.cp_call(call.TriggerMessage(requested_message="TransactionEvent"))
        triggered = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "Trigger", after=mark
        )
        meter = await rig.cp_call(call.TriggerMessage(requested_message="MeterValues"))
        values = await csms.wait_for("MeterValues", after=mark)
    assert (heartbeat.status, status.status, tx.status, meter.status) == ("Accepted",) * 4
    assert boot.status == "Rejected"  # F06.FR.17: the boot was already Accepted
    assert log.status == "Accepted"
    assert idle == {"status": "Idle"}  # no upload under way: no requestId
    assert triggered["eventType"] == "Updated"
    assert values["evseId"] == 1
    assert values["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


async def test_a_reset_restarts_and_the_next_boot_says_remote_reset(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state) as rig:
        per_evse = await rig.cp_call(call.Reset(type="Immediate", evse_id=1))
        answer = await rig.cp_call(call.Reset(type="Immediate"))
        kind = await asyncio.wait_for(asyncio.shield(rig.task), 10)
    assert (per_evse.status, answer.status, kind) == ("Accepted", "Accepted", ResetKind.HARD)
    reasons = []
    for _ in range(2):
        mark = len(csms.received)
        async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state):
            boot = await csms.wait_for("BootNotification", after=mark)
            reasons.append(boot["reason"])
    assert reasons == ["RemoteReset", "PowerUp"]  # the note is taken once


async def test_data_transfer_knows_no_vendor(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await rig.cp_call(call.DataTransfer(vendor_id="com.example"))
    assert answer.status == "UnknownVendorId"
