"""TriggerMessage over the OCPP 1.6 adapter: each message is answered first and then sent with
current information; unknown connectors are Rejected, what cannot be sent NotImplemented."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ocpp.v16 import call

from controller.connector_types import ConnectorStatus
from controller.ocpp16.triggers import decide
from drivers.errors import FaultKind
from tests.support.csms import ACCEPTED_TAG
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig, frame_index, sample
from tests.support.wait import until


async def ready(make_rig: MakeRig, **kwargs: Any) -> AdapterRig:
    rig = await make_rig(**kwargs)
    await rig.registered()
    return rig


async def trigger(rig: AdapterRig, message: str, connector_id: int | None = None) -> str:
    request = call.TriggerMessage(requested_message=message, connector_id=connector_id)
    return str((await rig.csms.call(CP_ID, request)).status)


async def test_a_triggered_heartbeat_goes_out_after_the_answer(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    raw_mark, mark = len(rig.csms.raw_received), len(rig.csms.received)
    assert await trigger(rig, "Heartbeat") == "Accepted"
    await rig.csms.wait_for("Heartbeat", after=mark)
    answer = frame_index(rig, raw_mark, '{"status":"Accepted"}')
    assert answer < frame_index(rig, raw_mark, '"Heartbeat"')


async def test_a_triggered_boot_notification_takes_the_new_heartbeat_interval(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    mark = len(rig.csms.received)
    rig.csms.heartbeat_interval_s = 77
    assert await trigger(rig, "BootNotification") == "Accepted"
    boot = await rig.csms.wait_for("BootNotification", after=mark)
    assert boot["chargePointModel"] == "picharge-pi"
    await until(lambda: rig.config.get("HeartbeatInterval") == "77")
    assert rig.adapter.registered


@pytest.mark.parametrize("message", ["DiagnosticsStatusNotification", "FirmwareStatusNotification"])
async def test_idle_diagnostics_and_firmware_statuses_are_sent(
    make_rig: MakeRig, message: str
) -> None:
    rig = await ready(make_rig)
    mark = len(rig.csms.received)
    assert await trigger(rig, message) == "Accepted"
    assert (await rig.csms.wait_for(message, after=mark)) == {"status": "Idle"}


async def test_status_notification_for_one_connector_for_0_and_for_all(make_rig: MakeRig) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    rig.control.report(2, ConnectorStatus.FAULTED, FaultKind.OVERTEMPERATURE)
    rig.control.report(1, ConnectorStatus.RESERVED)
    await rig.csms.wait_for("StatusNotification", lambda p: p["status"] == "Reserved")

    async def triggered(connector_id: int | None) -> list[tuple[int, str, str]]:
        mark = len(rig.csms.received)
        assert await trigger(rig, "StatusNotification", connector_id) == "Accepted"
        count = 3 if connector_id is None else 1
        await until(lambda: len(rig.csms.received) - mark >= count)
        return [
            (r.payload["connectorId"], r.payload["status"], r.payload["errorCode"])
            for r in rig.csms.received[mark:]
            if r.action == "StatusNotification"
        ]

    assert await triggered(2) == [(2, "Faulted", "HighTemperature")]
    assert await triggered(0) == [(0, "Available", "NoError")]
    assert await triggered(None) == [
        (0, "Available", "NoError"),
        (1, "Reserved", "NoError"),
        (2, "Faulted", "HighTemperature"),
    ]


async def test_meter_values_come_from_the_latest_sample_of_each_connector(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    assert await trigger(rig, "MeterValues") == "Rejected"  # nothing measured yet
    rig.adapter.meter_sampled(sample(1, 1000.0), None)
    rig.adapter.meter_sampled(sample(1, 1234.0), None)
    tx = rig.control.start(1, ACCEPTED_TAG, 1234.0)
    await until(lambda: tx.csms_id is not None)
    mark = len(rig.csms.received)
    assert await trigger(rig, "MeterValues", 1) == "Accepted"
    values = await rig.csms.wait_for("MeterValues", after=mark)
    assert values["connectorId"] == 1 and values["transactionId"] == tx.csms_id
    sampled = values["meterValue"][0]["sampledValue"]
    assert {v["context"] for v in sampled} == {"Trigger"}
    energy = [v for v in sampled if v["measurand"] == "Energy.Active.Import.Register"]
    assert energy == [
        {
            "value": "1234",
            "measurand": "Energy.Active.Import.Register",
            "unit": "Wh",
            "context": "Trigger",
        }
    ]
    assert await trigger(rig, "MeterValues", 2) == "Rejected"  # connector 2 has no sample
    mark = len(rig.csms.received)
    rig.adapter.meter_sampled(sample(2, 50.0), None)
    assert await trigger(rig, "MeterValues") == "Accepted"  # every connector
    await until(lambda: [r.action for r in rig.csms.received[mark:]].count("MeterValues") == 2)
    by_connector = {
        r.payload["connectorId"]: r.payload
        for r in rig.csms.received[mark:]
        if r.action == "MeterValues"
    }
    assert "transactionId" not in by_connector[2]


async def test_a_connector_that_does_not_exist_is_rejected(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    rig.adapter.meter_sampled(sample(1, 10.0), None)
    mark = len(rig.csms.received)
    for message in ("StatusNotification", "MeterValues", "Heartbeat"):
        assert await trigger(rig, message, 5) == "Rejected"
    assert await trigger(rig, "MeterValues", 0) == "Rejected"  # no main meter
    assert rig.actions(mark) == []


async def test_a_requested_message_outside_ocpp_16_is_a_callerror(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    after = len(rig.csms.raw_received)
    await rig.csms.send_raw(
        CP_ID, '[2,"t-1","TriggerMessage",{"requestedMessage":"LogStatusNotification"}]'
    )
    frame = await rig.csms.wait_for_raw(CP_ID, lambda t: '"t-1"' in t, after=after)
    assert json.loads(frame)[0] == 4


#: TriggerMessage.req's requestedMessage values in OCPP 1.6.
OCPP16_TRIGGERS = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)


def test_every_ocpp_16_trigger_is_served_and_others_are_not_implemented() -> None:
    def no_sample(connector_id: int) -> bool:
        return False

    profiles = ("Core", "RemoteTrigger")
    for message in OCPP16_TRIGGERS:
        expected = "Rejected" if message == "MeterValues" else "Accepted"
        assert decide(message, 1, (1,), no_sample, profiles) == expected, message
    for extended in ("LogStatusNotification", "SignChargePointCertificate"):
        assert decide(extended, None, (1,), no_sample, profiles) == "NotImplemented"
    assert decide("Heartbeat", None, (1,), no_sample, ("Core",)) == "NotImplemented"
