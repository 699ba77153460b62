"""ExtendedTriggerMessage over the OCPP 1.6 adapter: each requested message reaches the CSMS
after the answer (the firmware's SignedFirmwareStatusNotification, the GetLog status with
the running requestId, a SignCertificate with a fresh CSR), and connectors are checked."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from ocpp.v16 import call

from controller.ocpp16.extended_trigger import decide_extended
from tests.support.diagnostics import MakeDiagRig, get_log
from tests.support.file_servers import HttpFiles
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig, frame_index, sample
from tests.support.wait import until


async def extended(rig: AdapterRig, message: str, connector_id: int | None = None) -> str:
    request = call.ExtendedTriggerMessage(requested_message=message, connector_id=connector_id)
    return str((await rig.csms.call(CP_ID, request)).status)


async def triggered(
    rig: AdapterRig, message: str, sent: str, connector_id: int | None = None
) -> dict[str, Any]:
    """Trigger ``message``; what arrives as ``sent``, checked to follow the answer."""
    raw_mark, mark = len(rig.csms.raw_received), len(rig.csms.received)
    assert await extended(rig, message, connector_id) == "Accepted"
    payload = await rig.csms.wait_for(sent, after=mark, timeout_s=3)
    answer = frame_index(rig, raw_mark, '{"status":"Accepted"}')
    assert answer < frame_index(rig, raw_mark, f'"{sent}"')
    return payload


EACH = [
    ("BootNotification", "BootNotification", None),
    ("Heartbeat", "Heartbeat", None),
    ("StatusNotification", "StatusNotification", 1),
    ("MeterValues", "MeterValues", 1),
    ("FirmwareStatusNotification", "SignedFirmwareStatusNotification", None),
    ("LogStatusNotification", "LogStatusNotification", None),
    ("SignChargePointCertificate", "SignCertificate", None),
]


@pytest.mark.parametrize(("message", "sent", "connector_id"), EACH)
async def test_each_requested_message_arrives_after_the_answer(
    make_rig: MakeRig, message: str, sent: str, connector_id: int | None
) -> None:
    rig = await make_rig(keys={"CpoName": "picharge test CPO"})
    await rig.registered()
    rig.adapter.meter_sampled(sample(1, 1234.0), None)
    payload = await triggered(rig, message, sent, connector_id)
    if message == "BootNotification":
        assert payload["chargePointModel"] == "picharge-pi"
    if message == "StatusNotification":
        assert (payload["connectorId"], payload["status"]) == (1, "Available")
    if message == "MeterValues":
        sampled = payload["meterValue"][0]["sampledValue"]
        assert {v["context"] for v in sampled} == {"Trigger"}
    if message in ("FirmwareStatusNotification", "LogStatusNotification"):
        assert payload == {"status": "Idle"}  # nothing ran: no requestId
    if message == "SignChargePointCertificate":
        assert payload["csr"].startswith("-----BEGIN CERTIFICATE REQUEST-----")


async def test_the_log_status_names_the_running_upload_then_idle(
    make_diag_rig: MakeDiagRig,
) -> None:
    rig = await make_diag_rig()
    gate = threading.Event()
    with HttpFiles(gate=gate) as server:
        assert (await get_log(rig.csms, f"{server.base}/u", request_id=42))[0] == "Accepted"
        await until(lambda: len(server.requests) == 1)
        uploading = await triggered(rig, "LogStatusNotification", "LogStatusNotification")
        assert uploading == {"status": "Uploading", "requestId": 42}
        gate.set()
        await rig.csms.wait_for("LogStatusNotification", lambda p: p["status"] == "Uploaded")
    assert await triggered(rig, "LogStatusNotification", "LogStatusNotification") == {
        "status": "Idle"
    }


async def test_connectors_are_checked_and_nothing_is_sent_when_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(connectors=(1, 2))
    await rig.registered()
    mark = len(rig.csms.received)
    assert await extended(rig, "StatusNotification", 5) == "Rejected"  # no connector 5
    assert await extended(rig, "Heartbeat", 1) == "Rejected"  # a heartbeat has no connector
    assert await extended(rig, "LogStatusNotification", 2) == "Rejected"
    assert await extended(rig, "MeterValues", 2) == "Rejected"  # nothing measured yet
    assert await extended(rig, "MeterValues", 0) == "Rejected"  # no main meter
    assert rig.actions(mark) == []
    assert (await triggered(rig, "Heartbeat", "Heartbeat", 0)) == {}  # 0: the charge point
    mark = len(rig.csms.received)
    assert await extended(rig, "StatusNotification") == "Accepted"  # 0 and every connector
    await until(lambda: rig.actions(mark).count("StatusNotification") == 3)


def test_a_message_outside_the_whitepaper_list_is_not_implemented() -> None:
    def has_sample(connector_id: int) -> bool:
        return True

    assert decide_extended("DiagnosticsStatusNotification", None, (1,), has_sample) == (
        "NotImplemented"
    )
    assert decide_extended("SignChargePointCertificate", 0, (1,), has_sample) == "Accepted"
