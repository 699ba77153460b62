"""The charge point end to end: `picharge run --sim` against a CSMS speaking OCPP 1.6J.

Each test runs the real controller (supervisor, connector state machine, OCPP adapter,
drivers on simulated hardware) against the loopback CSMS of `controller.local_csms`, and
checks what the CSMS receives and what the hardware does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG, BLOCKED_TAG
from tests.support.sim_app import CP_ID, AppRig, controller
from tests.support.wait import until


@pytest.fixture
async def rig(csms: LocalCsms, tmp_path: Path) -> AsyncIterator[AppRig]:
    async with controller(csms, tmp_path) as r:
        yield r


async def test_boot_then_status_of_connector_0_and_each_connector(rig: AppRig) -> None:
    boot = await rig.csms.wait_for("BootNotification")
    assert boot["chargePointVendor"] == "picharge"
    await rig.status("Available", connector=0)
    await rig.status("Available", connector=1)


async def test_heartbeat_follows_the_interval_the_csms_gave(
    make_csms: Callable[..., Any], tmp_path: Path
) -> None:
    csms = await make_csms(heartbeat_interval_s=1)
    async with controller(csms, tmp_path) as rig:
        first = await rig.csms.wait_for("Heartbeat", timeout_s=3)
        del first
        count = len(rig.sent("Heartbeat"))
        # two more within 2.2 s: the interval (1 s) is what is checked, so the bound stays
        await until(lambda: len(rig.sent("Heartbeat")) - count >= 2, 2.2)


async def test_card_tap_authorizes_and_starts_a_transaction_with_the_meter(rig: AppRig) -> None:
    start = await rig.charging()
    authorize = await rig.csms.wait_for("Authorize")
    assert authorize["idTag"] == ACCEPTED_TAG
    assert start["connectorId"] == 1 and start["idTag"] == ACCEPTED_TAG
    assert (
        start["meterStart"] == round(rig.app.sim.connector(1).meter.energy_wh)
        or start["meterStart"] <= rig.app.sim.connector(1).meter.energy_wh
    )
    assert rig.hw("contactor_closed") is True


@pytest.mark.parametrize("status", ["Invalid", "Blocked", "Expired"])
async def test_invalid_blocked_and_expired_cards_do_not_charge(rig: AppRig, status: str) -> None:
    tag = "0BAD0C4D"
    if status != "Invalid":
        rig.csms.set_tag(tag, status)
    await rig.act("plug")
    await rig.status("Preparing")
    await rig.act("tap", uid=tag)
    await rig.csms.wait_for("Authorize", lambda p: p["idTag"] == tag)
    # nothing may happen here; the charger acts within tens of ms, so 1 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(1.0)
    assert not [r for r in rig.csms.received if r.action == "StartTransaction"]
    assert rig.hw("contactor_closed") is False


async def test_meter_values_carry_the_configured_measurands_from_the_meter(rig: AppRig) -> None:
    start = await rig.charging()
    del start

    def power_w(payload: dict[str, Any]) -> float:
        sampled = payload["meterValue"][0]["sampledValue"]
        found = [v for v in sampled if v.get("measurand") == "Power.Active.Import"]
        return float(found[0]["value"]) if found else 0.0

    # The first sample may fall before the car draws (a loaded machine stretches the ramp);
    # 16 A x 3 x 230 V from the simulated meter must show in a sample soon after.
    values = await rig.csms.wait_for(
        "MeterValues", lambda p: "transactionId" in p and power_w(p) > 10000, timeout_s=10
    )
    sampled = values["meterValue"][0]["sampledValue"]
    measurands = {v.get("measurand", "Energy.Active.Import.Register") for v in sampled}
    assert {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"} <= measurands


async def test_unplug_stops_with_ev_disconnected_and_transaction_data(rig: AppRig) -> None:
    start_conf_id = None
    await rig.charging()
    await until(
        lambda: [p for p in rig.sent("MeterValues") if "transactionId" in p],
        what="a meter value sampled while charging",
    )
    await rig.act("unplug")
    stop = await rig.csms.wait_for("StopTransaction")
    [record] = rig.csms.transactions.values()
    start_conf_id = record.transaction_id
    assert stop["transactionId"] == start_conf_id
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] > record.meter_start_wh
    assert stop.get("transactionData")
    await rig.status("Available", after=0)


async def test_remote_start_and_remote_stop(rig: AppRig) -> None:
    await rig.act("plug")
    await rig.status("Preparing")
    result = await rig.cp_call(call.RemoteStartTransaction(id_tag=ACCEPTED_TAG, connector_id=1))
    assert result.status == "Accepted"
    start = await rig.csms.wait_for("StartTransaction")
    assert start["idTag"] == ACCEPTED_TAG
    await rig.status("Charging")
    [record] = rig.csms.transactions.values()
    result = await rig.cp_call(call.RemoteStopTransaction(transaction_id=record.transaction_id))
    assert result.status == "Accepted"
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["reason"] == "Remote"
    await until(lambda: rig.hw("contactor_closed") is False, 1.0)


async def test_remote_start_is_rejected_for_an_unknown_connector(rig: AppRig) -> None:
    result = await rig.cp_call(call.RemoteStartTransaction(id_tag=ACCEPTED_TAG, connector_id=7))
    assert result.status == "Rejected"


async def test_remote_stop_of_an_unknown_transaction_is_rejected(rig: AppRig) -> None:
    result = await rig.cp_call(call.RemoteStopTransaction(transaction_id=999))
    assert result.status == "Rejected"


async def test_remote_start_authorizes_first_when_configured(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, {"AuthorizeRemoteTxRequests": True}) as rig:
        await rig.act("plug")
        result = await rig.cp_call(call.RemoteStartTransaction(id_tag=BLOCKED_TAG, connector_id=1))
        assert result.status == "Accepted"
        await rig.csms.wait_for("Authorize", lambda p: p["idTag"] == BLOCKED_TAG)
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert not [r for r in rig.csms.received if r.action == "StartTransaction"]


async def test_connection_loss_during_a_transaction_loses_nothing(rig: AppRig) -> None:
    await rig.charging()
    [record] = rig.csms.transactions.values()
    await rig.csms.drop_connections()
    await until(lambda: not rig.app.adapter.online, what="the charger to see the link down")
    await rig.act("unplug")  # the session ends while the link is down (1 s backoff)
    await until(lambda: rig.hw("contactor_closed") is False, 1.0)
    stop = await rig.csms.wait_for("StopTransaction", timeout_s=15)
    assert stop["transactionId"] == record.transaction_id
    assert stop["reason"] == "EVDisconnected"
    boots = [r for r in rig.csms.received if r.action == "BootNotification"]
    # it reconnected, and a reconnect is no boot (1.6 §4.2): the one BootNotification
    assert len(rig.csms.connection_attempts) >= 2 and len(boots) == 1


async def test_configuration_keys_read_change_and_reject(rig: AppRig) -> None:
    conf = await rig.cp_call(call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]))
    assert conf.configuration_key[0]["key"] == "HeartbeatInterval"
    assert conf.unknown_key == ["NoSuchKey"]
    ok = await rig.cp_call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="5"))
    assert ok.status == "Accepted"
    bad = await rig.cp_call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="-1"))
    assert bad.status == "Rejected"
    unknown = await rig.cp_call(call.ChangeConfiguration(key="NoSuchKey", value="1"))
    assert unknown.status == "NotSupported"
    readonly = await rig.cp_call(call.ChangeConfiguration(key="NumberOfConnectors", value="3"))
    assert readonly.status == "Rejected"


async def test_configuration_survives_a_restart(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path) as rig:
        ok = await rig.cp_call(call.ChangeConfiguration(key="ConnectionTimeOut", value="45"))
        assert ok.status == "Accepted"
    async with controller(csms, tmp_path) as rig:
        conf = await rig.cp_call(call.GetConfiguration(key=["connectiontimeout"]))
        assert conf.configuration_key[0]["value"] == "45"


async def test_malformed_frame_gets_a_callerror_and_changes_nothing(rig: AppRig) -> None:
    await rig.charging()
    before = len(rig.csms.raw_received)
    await rig.csms.send_raw(CP_ID, '[2, "abc", "RemoteStopTransaction", {"transactionId": "x"}]')
    frame = await rig.csms.wait_for_raw(CP_ID, lambda t: t.startswith("[4"), after=before)
    assert '"abc"' in frame
    assert any(code in frame for code in ("TypeConstraintViolation", "FormationViolation"))
    await rig.csms.send_raw(CP_ID, "this is not json")
    await rig.csms.wait_for_raw(
        CP_ID, lambda t: t.startswith("[4") and "FormationViolation" in t, after=before
    )
    # the contactor must stay closed after the bad frame; a late wake-up only widens the window
    await asyncio.sleep(0.3)
    assert rig.hw("contactor_closed") is True  # still charging
    rig.csms.violations.clear()


async def test_fault_is_reported_with_its_ocpp_error_code(rig: AppRig) -> None:
    await rig.charging()
    await rig.act("fault", fault="rcd")
    faulted = await rig.status("Faulted")
    assert faulted["errorCode"] == "GroundFailure"
    await until(lambda: rig.hw("contactor_closed") is False, 1.0)
    mark = rig.mark()
    await rig.act("fault", fault="clear")
    await rig.status("Charging", after=mark)


async def test_soft_reset_stops_the_transaction_and_restarts(rig: AppRig) -> None:
    await rig.charging()
    result = await rig.cp_call(call.Reset(type="Soft"))
    assert result.status == "Accepted"
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["reason"] == "SoftReset"
    await until(
        lambda: (
            rig.app.supervisor is not None
            and (rig.app.supervisor.restart_requested is ResetKind.SOFT)
        )
    )


async def test_availability_change_during_a_transaction_is_scheduled(rig: AppRig) -> None:
    await rig.charging()
    result = await rig.cp_call(call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert result.status == "Scheduled"
    await rig.act("unplug")
    await rig.status("Unavailable")


async def test_unlock_connector_stops_the_session(rig: AppRig) -> None:
    await rig.charging()
    result = await rig.cp_call(call.UnlockConnector(connector_id=1))
    assert result.status in ("Unlocked", "NotSupported")
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["reason"] == "UnlockCommand"


async def test_csms_limit_reaches_the_car_through_the_pwm(rig: AppRig) -> None:
    await rig.charging()
    [record] = rig.csms.transactions.values()
    profile = {
        "chargingProfileId": 7,
        "transactionId": record.transaction_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}],
        },
    }
    result = await rig.cp_call(
        call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
    )
    assert result.status == "Accepted"
    await until(lambda: rig.hw("ev_current_a") == pytest.approx(10.0, abs=0.2))


async def test_clear_cache_and_data_transfer_are_answered(rig: AppRig) -> None:
    assert (await rig.cp_call(call.ClearCache())).status == "Accepted"
    unknown = await rig.cp_call(call.DataTransfer(vendor_id="someone-else"))
    assert unknown.status == "UnknownVendorId"


async def test_invalid_id_at_start_stops_the_transaction(rig: AppRig) -> None:
    rig.csms.set_response(
        "StartTransaction",
        lambda request: {"transactionId": 77, "idTagInfo": {"status": "Invalid"}},
    )
    await rig.act("plug")
    await rig.act("tap", uid=ACCEPTED_TAG)
    stop = await rig.csms.wait_for("StopTransaction")
    assert stop["transactionId"] == 77
    assert stop["reason"] == "DeAuthorized"
    await until(lambda: rig.hw("contactor_closed") is False, 1.0)


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        ("weld", "PowerSwitchFailure"),
        ("meter", "PowerMeterFailure"),
        ("cp", "EVCommunicationError"),
        ("diode", "EVCommunicationError"),
        ("overtemp", "HighTemperature"),
    ],
)
async def test_each_fault_reaches_the_csms_with_its_error_code(
    csms: LocalCsms, tmp_path: Path, fault: str, error_code: str
) -> None:
    async with controller(csms, tmp_path) as rig:
        assert rig.app.supervisor is not None
        for rt in rig.app.supervisor.connectors.values():
            rt.overtemp_c = 60.0
        await rig.charging()
        await rig.act("fault", fault=fault)
        if fault == "weld":
            await rig.act("pause")  # the weld shows when the contactor should have opened
        faulted = await rig.status("Faulted")
        assert faulted["errorCode"] == error_code
        await until(
            lambda: (
                rig.app.supervisor is not None
                and not (rig.app.supervisor.connectors[1].machine.contactor_closed)
            ),
            1.0,
        )


async def test_reader_failure_is_reported_as_reader_failure(rig: AppRig) -> None:
    rig.app.sim.reader.set_silent(True)
    faulted = await rig.csms.wait_for(
        "StatusNotification", lambda p: p["errorCode"] == "ReaderFailure", timeout_s=15
    )
    assert faulted["connectorId"] in (0, 1)
    rig.app.sim.reader.set_silent(False)
    await rig.csms.wait_for(
        "StatusNotification",
        lambda p: p["errorCode"] == "NoError" and p["status"] == "Available",
        after=rig.mark(),
        timeout_s=15,
    )


async def test_session_continues_after_unplug_when_configured_so(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, {"StopTransactionOnEVSideDisconnect": False}) as rig:
        await rig.charging()
        await rig.act("unplug")
        await rig.status("SuspendedEV")
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert not [r for r in rig.csms.received if r.action == "StopTransaction"]
        assert rig.hw("contactor_closed") is False


async def test_authorization_without_a_car_expires_after_connection_timeout(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, {"ConnectionTimeOut": 1}) as rig:
        await rig.act("tap", uid=ACCEPTED_TAG)
        await rig.status("Preparing")
        await rig.status("Available", after=rig.mark())
        # the car comes a while after the authorization expired; how long does not matter
        await asyncio.sleep(0.3)
        await rig.act("plug")
        # nothing may happen here; the charger acts within tens of ms, so 0.8 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.8)
        assert not [r for r in rig.csms.received if r.action == "StartTransaction"]


async def test_two_connectors_report_and_charge_independently(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, connectors=2) as rig:
        await rig.status("Available", connector=2)
        await rig.app.sim.handle({"action": "plug", "connector": 2})
        await rig.status("Preparing", connector=2)
        await rig.act("tap", uid=ACCEPTED_TAG)
        start = await rig.csms.wait_for("StartTransaction")
        assert start["connectorId"] == 2
        await rig.status("Charging", connector=2)
        statuses = [
            r.payload["status"]
            for r in rig.csms.received
            if r.action == "StatusNotification" and r.payload["connectorId"] == 1
        ]
        assert statuses == ["Available"]


async def test_stopping_the_controller_ends_the_session_at_the_csms(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        await rig.charging()
    stop = await csms.wait_for("StopTransaction", timeout_s=1)
    assert stop["reason"] == "Reboot"
