"""OCPP 2.0.1, the first slice (issue 14): the link, provisioning and the device model.

Each test runs the whole controller on simulated hardware with ``[ocpp] version =
"2.0.1"`` against the bundled CSMS, which speaks 2.0.1 to a station that asks for
``ocpp2.0.1`` and records every schema violation (the ``make_csms`` fixture fails the test
on any). The specification's use cases are named where they decide (B01 cold boot, B02
Pending, B03 Rejected, B06/B05 Get/SetVariables, A00 security profiles).
"""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from ocpp.v201 import call

from controller.local_csms import LocalCsms
from controller.ocpp201.charge_point import Ocpp201ChargePoint
from controller.ocppj.throttle import FRAME_BURST
from tests.support.csms import MakeCsms
from tests.support.sim_app import CP_ID, AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}


def variable(component: str, name: str, value: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": name}}
    if value is not None:
        item["attribute_value"] = value
    item.update(extra)
    return item


async def get(rig: AppRig, *items: dict[str, Any]) -> list[dict[str, Any]]:
    result = await rig.cp_call(call.GetVariables(get_variable_data=list(items)))
    return list(result.get_variable_result)


async def set_(rig: AppRig, *items: dict[str, Any]) -> list[dict[str, Any]]:
    result = await rig.cp_call(call.SetVariables(set_variable_data=list(items)))
    return list(result.set_variable_result)


# --- B01: the cold boot -----------------------------------------------------------------


async def test_station_connects_with_ocpp201_boots_with_power_up_and_reports_its_evse(
    csms: LocalCsms, tmp_path: Path
) -> None:
    chargepoint = {"chargepoint": {"id": CP_ID, "serial": "PI-0042"}}
    async with controller(csms, tmp_path, ocpp=V201, config=chargepoint) as rig:
        boot = await csms.wait_for("BootNotification")
        status = await rig.status("Available")  # waits for EVSE 1 (connector 1)
        session = csms._session(CP_ID)
        assert session.ws.subprotocol == "ocpp2.0.1"
    assert boot["reason"] == "PowerUp"
    station = boot["chargingStation"]
    assert station["serialNumber"] == "PI-0042"
    assert station["firmwareVersion"].startswith("picharge-")
    assert {"vendorName", "model"} <= station.keys()
    assert status == {
        "timestamp": status["timestamp"],
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    }


async def test_boot_interval_becomes_the_heartbeat_interval(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    csms = await make_csms(heartbeat_interval_s=1)
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        [interval] = await get(rig, variable("OCPPCommCtrlr", "HeartbeatInterval"))
        mark = rig.mark()
        await csms.wait_for("Heartbeat", after=mark, timeout_s=3)
    assert interval["attribute_status"] == "Accepted"
    assert interval["attribute_value"] == "1"


# --- B02 / B03: Pending and Rejected ----------------------------------------------------


async def test_pending_boot_is_retried_after_its_interval_and_nothing_else_is_sent(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    csms = await make_csms(boot_status="Pending", heartbeat_interval_s=1)
    async with controller(csms, tmp_path, ocpp=V201, wait_ready=False) as rig:
        await until(lambda: len(rig.sent("BootNotification")) >= 2, timeout_s=5)
        assert {r.action for r in csms.received} == {"BootNotification"}
        csms.boot_status = "Accepted"
        await rig.status("Available", timeout_s=5)
    boots = [r for r in csms.received if r.action == "BootNotification"]
    gaps = [b.monotonic_s - a.monotonic_s for a, b in itertools.pairwise(boots)]
    assert all(gap >= 0.95 for gap in gaps), gaps


async def test_rejected_boot_sends_nothing_until_its_interval_has_passed(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    # The CSMS records any call while Rejected, and any early retry, as a violation.
    csms = await make_csms(boot_status="Rejected", heartbeat_interval_s=1)
    async with controller(csms, tmp_path, ocpp=V201, wait_ready=False) as rig:
        await until(lambda: len(rig.sent("BootNotification")) >= 3, timeout_s=6)
        csms.boot_status = "Accepted"
        await rig.status("Available", timeout_s=5)


# --- one BootNotification per run -------------------------------------------------------


async def test_a_reconnect_sends_no_second_boot_notification(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        connected = len(csms.connection_attempts)
        mark = rig.mark()
        await csms.drop_connections()
        await until(lambda: len(csms.connection_attempts) > connected, timeout_s=10)
        await csms.wait_connected(CP_ID)
        await rig.status("Available", after=mark)  # the current status goes out again
        assert rig.sent("BootNotification", after=mark) == []
    assert len(rig.sent("BootNotification")) == 1


# --- A00: security profile 1 ------------------------------------------------------------


async def test_profile_1_sends_the_basic_auth_password_and_a_wrong_one_is_refused(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    password = "0123456789abcdefXYZ!"
    csms = await make_csms(basic_auth={CP_ID: password})
    ocpp = {**V201, "security_profile": 1, "password": password}
    async with controller(csms, tmp_path, ocpp=ocpp):
        pass
    accepted = [a for a in csms.connection_attempts if not a.refused]
    assert accepted
    header = accepted[0].authorization or ""
    assert base64.b64decode(header.removeprefix("Basic ")) == f"{CP_ID}:{password}".encode()

    csms.basic_auth = {CP_ID: "another-password-16"}
    tried = len(csms.connection_attempts)
    async with controller(csms, tmp_path / "2", ocpp=ocpp, wait_ready=False):
        await until(lambda: len(csms.connection_attempts) > tried, timeout_s=10)
        assert all(a.refused for a in csms.connection_attempts[tried:])
        assert CP_ID not in csms.connected


# --- B06 / B05: GetVariables and SetVariables ---------------------------------------------


async def test_get_variables_answers_every_per_variable_status(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        results = await get(
            rig,
            variable("OCPPCommCtrlr", "HeartbeatInterval"),
            variable("OCPPCommCtrlr", "NoSuchVariable"),
            variable("NoSuchCtrlr", "HeartbeatInterval"),
            variable("OCPPCommCtrlr", "HeartbeatInterval", attribute_type="MaxSet"),
            variable("SecurityCtrlr", "BasicAuthPassword"),
            variable("SecurityCtrlr", "Identity"),
        )
    statuses = [(r["attribute_status"], r.get("attribute_value")) for r in results]
    assert statuses == [
        ("Accepted", "300"),  # the BootNotification's interval
        ("UnknownVariable", None),
        ("UnknownComponent", None),
        ("NotSupportedAttributeType", None),
        ("Rejected", None),  # write-only: never told
        ("Accepted", CP_ID),
    ]


async def test_set_variables_statuses_and_a_new_heartbeat_interval_applies_at_once(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with controller(csms, tmp_path, ocpp=V201, state_dir=state) as rig:
        await set_(rig, variable("OCPPCommCtrlr", "HeartbeatInterval", "300"))
        mark = rig.mark()
        results = await set_(
            rig,
            variable("OCPPCommCtrlr", "HeartbeatInterval", "1"),
            variable("OCPPCommCtrlr", "HeartbeatInterval", "-5"),
            variable("OCPPCommCtrlr", "NoSuchVariable", "1"),
            variable("NoSuchCtrlr", "X", "1"),
            variable("OCPPCommCtrlr", "HeartbeatInterval", "1", attribute_type="Target"),
            variable("SecurityCtrlr", "Identity", "someone-else"),
            variable("OCPPCommCtrlr", "MessageTimeout", "20"),
        )
        await csms.wait_for("Heartbeat", after=mark, timeout_s=3)  # not after 300 s
    assert [r["attribute_status"] for r in results] == [
        "Accepted",
        "Rejected",  # below its minimum
        "UnknownVariable",
        "UnknownComponent",
        "NotSupportedAttributeType",
        "Rejected",  # read-only
        "RebootRequired",
    ]
    # Kept across a restart with the same state directory (HeartbeatInterval is the boot's).
    async with controller(csms, tmp_path, ocpp=V201, state_dir=state) as rig:
        [timeout] = await get(rig, variable("OCPPCommCtrlr", "MessageTimeout"))
    assert timeout["attribute_value"] == "20"


async def test_security_profile_can_only_be_raised(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        [no_password] = await set_(rig, variable("SecurityCtrlr", "SecurityProfile", "1"))
        [password] = await set_(
            rig, variable("SecurityCtrlr", "BasicAuthPassword", "0123456789abcdefXYZ!")
        )
    assert no_password["attribute_status"] == "Rejected"  # profile 1 needs a password
    assert password["attribute_status"] == "Accepted"


# --- RPC errors in 2.0.1 spelling ---------------------------------------------------------


async def test_malformed_calls_get_the_201_rpc_error_codes(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        mark = len(csms.raw_received)
        await csms.send_raw(CP_ID, '[2, "bad-1", "GetVariables", {"getVariableData": 5}]')
        await csms.send_raw(CP_ID, '[2, "bad-2", "GetVariables", {}]')
        await csms.send_raw(CP_ID, '[2, "bad-3", "GetVariables", {"getVariableData": [], "x": 1}]')
        await csms.send_raw(CP_ID, "[2, ")
        await csms.send_raw(CP_ID, '[2, "bad-5", "NoSuchAction", {}]')
        await csms.send_raw(CP_ID, '[2, "bad-6", "ClearDisplayMessage", {"id": 1}]')
        answers: dict[str, str] = {}
        for unique_id in ("bad-1", "bad-2", "bad-3", "-1", "bad-5", "bad-6"):
            frame = await csms.wait_for_raw(CP_ID, lambda t, u=unique_id: f'"{u}"' in t, after=mark)
            answers[unique_id] = json.loads(frame)[2]
        assert rig.app.adapter is not None
    assert answers == {
        "bad-1": "TypeConstraintViolation",
        "bad-2": "ProtocolError",  # a required field is missing
        "bad-3": "FormatViolation",  # never 1.6's FormationViolation
        "-1": "FormatViolation",
        "bad-5": "NotImplemented",  # OCPP-J 2.0.1: "not known by receiver"
        "bad-6": "NotSupported",  # "recognized but not supported"
    }


# --- a CSMS that does not wait for the answers --------------------------------------------


async def test_a_flood_of_calls_is_served_one_at_a_time_and_the_excess_refused_busy(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = most = 0
    serve = Ocpp201ChargePoint._serve

    async def counted(self: Ocpp201ChargePoint, message: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await serve(self, message)
        finally:
            running -= 1

    monkeypatch.setattr(Ocpp201ChargePoint, "_serve", counted)
    async with controller(csms, tmp_path, ocpp=V201) as rig:
        attempts = len(csms.connection_attempts)
        after = len(csms.raw_received)
        # within the frame bucket's burst: how fast a longer flood is read is
        # tests/test_csms_throttle.py's matter
        ids = [f"flood-{n}" for n in range(FRAME_BURST)]
        for uid in ids:
            frame = [
                2,
                uid,
                "GetVariables",
                {
                    "getVariableData": [
                        {
                            "component": {"name": "OCPPCommCtrlr"},
                            "variable": {"name": "HeartbeatInterval"},
                        }
                    ]
                },
            ]
            await csms.send_raw(CP_ID, json.dumps(frame))

        def answered() -> dict[str, list[Any]]:
            found = {}
            for raw in csms.raw_received[after:]:
                if raw.text.startswith(("[3,", "[4,")) and '"flood-' in raw.text:
                    answer = json.loads(raw.text)
                    found[answer[1]] = answer
            return found

        await until(lambda: len(answered()) == len(ids), timeout_s=30)
        got = answered().values()
        assert len(csms.connection_attempts) == attempts, "the link was dropped"
        assert rig.app.adapter is not None
    served = [a for a in got if a[0] == 3]
    refused = [a for a in got if a[0] == 4]
    assert served and all(a[2] == "GenericError" for a in refused)
    assert most == 1, f"{most} CALLs were served at the same time"
