"""OCPP 2.0.1 provisioning (issue 14, block B; M and O where no hardware exists), against the
whole controller on simulated hardware and the bundled CSMS (which fails a test on any schema
violation): SetNetworkProfile's slots and NetworkConfigurationPriority honoured at the next
boot, Reset of one EVSE, BootNotification reason Watchdog after a crash, the ISO 15118
certificate messages answered Failed without a PLC modem and DisplayMessage NotSupported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.connector_types import ConnectorStatus
from controller.local_csms import LocalCsms
from controller.ocpp201 import tx_points
from tests.support.csms import ACCEPTED_TAG, MakeCsms
from tests.support.device_model import (
    QUIET_KEYS,
    V201,
    card_session,
    remote_started,
    set_variable,
)
from tests.support.file_servers import closed_port
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

KEYS = QUIET_KEYS


def profile(url: str, security_profile: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "ocpp_version": "OCPP20",
        "ocpp_transport": "JSON",
        "ocpp_csms_url": url,
        "message_timeout": 30,
        "security_profile": security_profile,
        "ocpp_interface": "Wired0",
        **extra,
    }


async def priority(rig: AppRig, value: str) -> str:
    """SetVariables of OCPPCommCtrlr.NetworkConfigurationPriority: its status."""
    return await set_variable(rig, "OCPPCommCtrlr", "NetworkConfigurationPriority", value)


async def test_set_network_profile_accepts_a_usable_profile_and_rejects_the_rest(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answers = [
            await rig.cp_call(call.SetNetworkProfile(configuration_slot=slot, connection_data=data))
            for slot, data in [
                (1, profile("ws://csms.example:9000/ocpp")),
                (9, profile("ws://csms.example:9000/ocpp")),  # no such slot
                (2, profile("ws://csms.example/ocpp", ocpp_version="OCPP16")),
                (2, profile("ws://csms.example/ocpp", 2)),  # TLS profile on a plain URL
                (2, profile("wss://csms.example/ocpp", ocpp_transport="SOAP")),
            ]
        ]
        no_profile = await priority(rig, "2")
    assert [a.status for a in answers] == ["Accepted"] + ["Rejected"] * 4
    assert answers[1].status_info["reason_code"] == "InvalidProfile"
    assert no_profile == "Rejected"


async def test_the_preferred_network_profile_is_used_from_the_next_boot(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    first, second = await make_csms(), await make_csms()
    state = tmp_path / "state"
    async with controller(first, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state) as rig:
        stored = await rig.cp_call(
            call.SetNetworkProfile(configuration_slot=2, connection_data=profile(second.url))
        )
        chosen = await priority(rig, "2")
    assert (stored.status, chosen) == ("Accepted", "RebootRequired")
    booted_first = len(first.received)
    async with controller(
        first, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state, wait_ready=False
    ) as rig:
        await second.wait_for("StatusNotification")
        in_use = await second.call(
            rig.cp_id,
            call.SetNetworkProfile(configuration_slot=2, connection_data=profile(second.url)),
        )
    assert not [r for r in first.received[booted_first:] if r.action == "BootNotification"]
    assert in_use.status == "Rejected"  # the slot of the connection in use


async def test_a_reset_of_one_evse_ends_its_transaction_and_the_station_runs_on(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await remote_started(rig)
        unknown = await rig.cp_call(call.Reset(type="Immediate", evse_id=7))
        scheduled = await rig.cp_call(call.Reset(type="OnIdle", evse_id=1))
        assert rig.hw("contactor_closed")  # OnIdle waits for the transaction to end
        answer = await rig.cp_call(call.Reset(type="Immediate", evse_id=1))
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        await until(lambda: not rig.hw("contactor_closed"), timeout_s=10)
        heartbeat = await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))
        assert not rig.task.done()  # no restart of the controller
    assert (unknown.status, scheduled.status) == ("Rejected", "Scheduled")
    assert answer.status == "Accepted"
    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    assert ended["triggerReason"] == "ResetCommand"
    assert heartbeat.status == "Accepted"


async def test_after_a_crash_the_boot_says_watchdog_and_after_a_stop_power_up(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    reasons = []
    for crash in (True, False, False):
        mark = len(csms.received)
        async with controller(
            csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state, crash=crash
        ):
            boot = await csms.wait_for("BootNotification", after=mark)
            reasons.append(boot["reason"])
    assert reasons == ["PowerUp", "Watchdog", "PowerUp"]


async def test_iso_15118_certificates_fail_without_a_modem_and_display_messages_are_unsupported(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        ev_certificate = await rig.cp_call(
            call.Get15118EVCertificate(
                iso15118_schema_version="urn:iso:15118:2:2013:MsgDef",
                action="Install",
                exi_request="AAAA",
            )
        )
        status = await rig.cp_call(
            call.GetCertificateStatus(
                ocsp_request_data={
                    "hash_algorithm": "SHA256",
                    "issuer_name_hash": "a" * 64,
                    "issuer_key_hash": "b" * 64,
                    "serial_number": "01",
                    "responder_url": "http://ocsp.example/",
                }
            )
        )
        display = await rig.cp_call(
            call.SetDisplayMessage(
                message={
                    "id": 1,
                    "priority": "NormalCycle",
                    "message": {"format": "UTF8", "content": "hello"},
                }
            ),
            expect_error=True,
        )
    assert (ev_certificate.status, ev_certificate.status_info["reason_code"]) == (
        "Failed",
        "NoPLCModem",
    )
    assert (status.status, status.status_info["reason_code"]) == ("Failed", "NoPLCModem")
    assert display.error_code == "NotSupported"


def points(start: str, stop: str = "EVConnected,Authorized") -> dict[str, Any]:
    return {**KEYS, "TxCtrlr": {"TxStartPoint": f'"{start}"', "TxStopPoint": f'"{stop}"'}}


def session(rig: AppRig) -> Any:
    """The core's running session on connector 1 (None: none)."""
    assert rig.app.supervisor is not None
    return rig.app.supervisor.view(1).transaction


async def test_tx_start_point_power_path_closed_starts_the_transaction_at_the_contactor(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(
        csms, tmp_path, points("PowerPathClosed"), ocpp=V201, base_keys={}
    ) as rig:
        tx = await card_session(rig)
        await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))  # a round trip
        before = rig.sent("TransactionEvent")
        await rig.act("charge")
        started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        assert rig.hw("contactor_closed")
    assert before == []  # authorized with the car connected, but the path still open
    assert started["transactionInfo"] == {"transactionId": tx.local_id, "chargingState": "Charging"}
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["idToken"]["idToken"] == ACCEPTED_TAG


async def test_a_session_ending_before_its_start_point_is_never_a_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, points("EnergyTransfer"), ocpp=V201, base_keys={}) as rig:
        await card_session(rig)
        mark = rig.mark()
        await rig.act("unplug")
        await rig.status("Available", mark)
        await until(lambda: session(rig) is None, what="the session over")
    assert rig.sent("TransactionEvent") == []


async def test_tx_stop_point_power_path_closed_ends_the_transaction_when_the_car_pauses(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = points("EVConnected,Authorized", "PowerPathClosed")
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        await card_session(rig)
        await rig.act("charge")
        await until(lambda: rig.hw("contactor_closed"), timeout_s=10)
        await rig.act("pause")
        ended = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        await until(lambda: session(rig) is None, what="the session stopped")
        await rig.act("charge")  # a new transaction needs a new authorization
        await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))
        assert not rig.hw("contactor_closed")
    assert ended["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    assert ended["triggerReason"] == "ChargingStateChanged"


async def test_tx_points_offer_only_what_the_charger_can_detect(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        bay = await set_variable(rig, "TxCtrlr", "TxStartPoint", "ParkingBayOccupancy")
        energy = await set_variable(rig, "TxCtrlr", "TxStartPoint", "EnergyTransfer")
    assert (bay, energy) == ("Rejected", "Accepted")


def evse_item(
    variable: str, attribute: str = "Actual", component: str = "EVSE", **evse: Any
) -> dict[str, Any]:
    return {
        "component": {"name": component, "evse": {"id": 1, **evse}},
        "variable": {"name": variable},
        "attribute_type": attribute,
    }


async def test_the_evse_components_power_has_actual_target_and_max_set_and_none_is_writable(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await remote_started(rig)

        async def drawing() -> bool:
            got = await rig.cp_call(call.GetVariables(get_variable_data=[evse_item("Power")]))
            return float(got.get_variable_result[0]["attribute_value"] or 0) > 1000

        await until(drawing, what="EVSE.Power showing the car draw", interval_s=0.1)
        got = await rig.cp_call(
            call.GetVariables(
                get_variable_data=[
                    evse_item("Power", "MaxSet"),
                    evse_item("Power", "Target"),
                    evse_item("AvailabilityState", component="Connector", connector_id=1),
                    evse_item("SupplyPhases"),
                    evse_item("Power", id=9),
                    evse_item("Voltage"),
                ]
            )
        )
        written = await rig.cp_call(
            call.SetVariables(
                set_variable_data=[
                    {**evse_item("Power", "MaxSet"), "attribute_value": "7000"},
                    {**evse_item("Power", "Target"), "attribute_value": "7000"},
                    {**evse_item("Power", id=9), "attribute_value": "7000"},
                ]
            )
        )
        mark = rig.mark()
        report = await rig.cp_call(
            call.GetReport(request_id=12, component_variable=[{"component": {"name": "EVSE"}}])
        )
        notified = await csms.wait_for("NotifyReport", after=mark)
    results = [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result]
    target = results.pop(1)
    assert target[0] == "Accepted" and 0 < float(target[1] or 0) <= 32 * 3 * 230  # the offer
    assert results == [
        ("Accepted", str(32 * 3 * 230)),
        ("Accepted", "Occupied"),
        ("Accepted", "3"),
        ("UnknownComponent", None),
        ("UnknownVariable", None),
    ]
    assert [r["attribute_status"] for r in written.set_variable_result] == [
        "Rejected",
        "Rejected",  # a limit is smart charging's: no second way round it
        "UnknownComponent",
    ]
    assert report.status == "Accepted"
    power = next(i for i in notified["reportData"] if i["variable"]["name"] == "Power")
    assert [a["type"] for a in power["variableAttribute"]] == ["Actual", "Target", "MaxSet"]
    assert power["variableCharacteristics"]["supportsMonitoring"] is True


async def test_bounded_ctrlr_variables_tell_their_min_set_and_max_set_and_keep_them(
    csms: LocalCsms, tmp_path: Path
) -> None:
    def item(component: str, variable: str, attribute: str) -> dict[str, Any]:
        return {
            "component": {"name": component},
            "variable": {"name": variable},
            "attribute_type": attribute,
        }

    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        got = await rig.cp_call(
            call.GetVariables(
                get_variable_data=[
                    item("SecurityCtrlr", "SecurityProfile", "MinSet"),
                    item("SecurityCtrlr", "SecurityProfile", "MaxSet"),
                    item("OCPPCommCtrlr", "MessageTimeout", "MinSet"),
                    item("OCPPCommCtrlr", "MessageTimeout", "MaxSet"),  # unbounded above
                    item("OCPPCommCtrlr", "HeartbeatInterval", "Target"),
                ]
            )
        )
        written = await rig.cp_call(
            call.SetVariables(
                set_variable_data=[
                    {**item("SecurityCtrlr", "SecurityProfile", "MaxSet"), "attribute_value": "1"},
                    {
                        **item("OCPPCommCtrlr", "HeartbeatInterval", "Target"),
                        "attribute_value": "9",
                    },
                ]
            )
        )
    assert [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result] == [
        ("Accepted", "0"),
        ("Accepted", "3"),
        ("Accepted", "1"),
        ("NotSupportedAttributeType", None),
        ("NotSupportedAttributeType", None),
    ]
    assert [r["attribute_status"] for r in written.set_variable_result] == [
        "Rejected",
        "NotSupportedAttributeType",
    ]


async def test_tx_start_point_energy_transfer_starts_the_transaction_once_energy_flows(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, points("EnergyTransfer"), ocpp=V201, base_keys={}) as rig:
        tx = await card_session(rig)
        await rig.act("charge")
        started = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        power_w = rig.hw("power_w")
    assert started["transactionInfo"]["transactionId"] == tx.local_id
    assert started["triggerReason"] == "ChargingStateChanged"
    assert power_w > 10  # energy flows by the time the transaction begins


def test_energy_transfer_is_reached_only_when_power_flows_with_the_path_closed() -> None:
    charging, paused = ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV
    assert tx_points.start_wait(["EnergyTransfer"]) is tx_points.Wait.ENERGY
    assert tx_points.start_wait(["EnergyTransfer", "PowerPathClosed"]) is tx_points.Wait.POWER_PATH
    assert tx_points.start_wait(["EnergyTransfer", "Authorized"]) is None
    assert not tx_points.reached(tx_points.Wait.ENERGY, charging, None)
    assert not tx_points.reached(tx_points.Wait.ENERGY, charging, tx_points.FLOW_W)
    assert tx_points.reached(tx_points.Wait.ENERGY, charging, 1500.0)
    assert not tx_points.reached(tx_points.Wait.ENERGY, paused, 1500.0)
    assert tx_points.reached(tx_points.Wait.POWER_PATH, charging, None)


async def test_after_a_power_cut_a_transaction_that_began_is_ended_and_no_other(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = points("PowerPathClosed")
    ended = []
    for charge in (False, True):  # a session waiting for its start point, then one charging
        state = tmp_path / f"state-{charge}"
        async with controller(
            csms, tmp_path, keys, ocpp=V201, base_keys={}, state_dir=state, crash=True
        ) as rig:
            tx = await card_session(rig, charge=charge)
            if charge:  # the Started answered: nothing of the transaction is queued any more
                await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
                await until(lambda r=rig: r.app.adapter.queued == 0, what="the Started answered")
        mark = len(csms.received)
        async with controller(
            csms, tmp_path, keys, ocpp=V201, base_keys={}, state_dir=state, ready_status=None
        ) as rig:
            if charge:
                await csms.wait_for(
                    "TransactionEvent", lambda p: p["eventType"] == "Ended", after=mark
                )
            await rig.cp_call(call.TriggerMessage(requested_message="Heartbeat"))  # settled
            ended.append(
                [
                    (
                        e["transactionInfo"]["transactionId"] == tx.local_id,
                        e["transactionInfo"]["stoppedReason"],
                    )
                    for e in rig.sent("TransactionEvent", mark)
                    if e["eventType"] == "Ended"
                ]
                + [e["eventType"] for e in rig.sent("TransactionEvent", mark) if not charge]
            )
    # (A Started in flight at the crash may come again: delivery is at least once.)
    assert ended == [[], [(True, "PowerLoss")]]


async def test_an_unreachable_network_profile_falls_back_to_the_configured_csms(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    nowhere = f"ws://127.0.0.1:{closed_port()}/ocpp"
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state) as rig:
        await rig.cp_call(
            call.SetNetworkProfile(configuration_slot=1, connection_data=profile(nowhere))
        )
        attempts = await set_variable(rig, "OCPPCommCtrlr", "NetworkProfileConnectionAttempts", "1")
        chosen = await priority(rig, "1")
    assert (attempts, chosen) == ("Accepted", "RebootRequired")
    mark = len(csms.received)
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}, state_dir=state):
        boot = await csms.wait_for("BootNotification", after=mark)  # after one refused try
    assert boot["reason"] == "PowerUp"
