"""OCPP 1.6 conformance: the behaviours a certification-style suite found wrong (issue 17).

Each test drives the real controller on simulated hardware (``picharge run --sim``: the
supervisor, the connector state machines, the OCPP 1.6 adapter) against the bundled CSMS
and checks what the CSMS receives and what the hardware does. The section names say which
item of the issue a test covers, with the specification's wording where it decides.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.domain import Transaction
from controller.local_csms import ConnectionAttempt, LocalCsms, utc_timestamp
from tests.support.csms import ACCEPTED_TAG, UNKNOWN_TAG, MakeCsms
from tests.support.security import CP_ID as SEC_CP_ID
from tests.support.security import PASSWORD, charger
from tests.support.sim_app import CP_ID, AppRig, controller
from tests.support.wait import until

#: A card of the same group as ACCEPTED_TAG, as the CSMS answers for it (item 8).
GROUP_TAG = "CAFE0001"
GROUP = "GROUP-1"


def boot_index(csms: LocalCsms, after: int) -> int:
    """The index in the CSMS's record just past the first BootNotification from ``after``."""
    for i, item in enumerate(csms.received[after:], after):
        if item.action == "BootNotification":
            return i + 1
    raise AssertionError(f"no BootNotification after #{after}")


def running(rig: AppRig, connector: int = 1) -> Transaction | None:
    """The transaction the supervisor runs on ``connector``, if any."""
    assert rig.app.supervisor is not None
    return rig.app.supervisor.connectors[connector].transaction


def sent_after(csms: LocalCsms, action: str, after: int) -> list[dict[str, Any]]:
    return [r.payload for r in csms.received[after:] if r.action == action]


# --- BootNotification carries both serial numbers ----------------------------------------


async def test_boot_notification_carries_the_serial_as_charge_box_serial_number_too(
    csms: LocalCsms, tmp_path: Path
) -> None:
    chargepoint = {"chargepoint": {"id": CP_ID, "serial": "PI-0042"}}
    async with controller(csms, tmp_path, config=chargepoint):
        boot = await csms.wait_for("BootNotification")
    assert boot["chargePointSerialNumber"] == "PI-0042"
    assert boot["chargeBoxSerialNumber"] == "PI-0042"  # deprecated, still read by many


# --- 1. AuthorizationKey: Accepted, reconnect with the new key, fall back to the old -----


def accepted_attempts(csms: LocalCsms, after: int) -> list[ConnectionAttempt]:
    return [a for a in csms.connection_attempts[after:] if not a.refused]


def basic_credentials(attempt: ConnectionAttempt) -> bytes:
    """What an attempt's HTTP Basic header carries, decoded from base64: ``id:password``."""
    assert attempt.authorization is not None
    scheme, _, token = attempt.authorization.partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token)


@pytest.mark.parametrize(
    ("new_key", "on_the_wire"),
    [
        # 20 random bytes written as 40 hex digits, as the whitepaper has the CSMS make it:
        # the header carries the bytes (OCTT TC_085_CS: the "non hex representation").
        (
            "a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4",
            bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90f1e2d3c4"),
        ),
        # a password of plain text (16 to 20 characters, not 32 to 40 hex digits): as it is
        ("plain-text-key-17", b"plain-text-key-17"),
    ],
    ids=["hex-key-sent-as-its-bytes", "text-key-sent-as-text"],
)
async def test_a_new_authorization_key_is_accepted_and_the_charger_reconnects_with_it(
    tmp_path: Path, new_key: str, on_the_wire: bytes
) -> None:
    async with (
        LocalCsms(basic_auth={SEC_CP_ID: PASSWORD}) as csms,
        charger(csms, tmp_path, {"security_profile": 1, "password": PASSWORD}),
    ):
        await csms.wait_for("StatusNotification", timeout_s=10)
        first = accepted_attempts(csms, 0)[-1]
        assert basic_credentials(first) == f"{SEC_CP_ID}:{PASSWORD}".encode()
        attempts, mark = len(csms.connection_attempts), len(csms.received)
        csms.basic_auth = {SEC_CP_ID: new_key}  # the CSMS takes the key it sets
        changed = await csms.call(
            SEC_CP_ID, call.ChangeConfiguration(key="AuthorizationKey", value=new_key)
        )
        assert changed.status == "Accepted"
        # the charger closes the link by itself and comes back with the new key
        await until(lambda: accepted_attempts(csms, attempts), 10)
        assert basic_credentials(accepted_attempts(csms, attempts)[0]) == (
            SEC_CP_ID.encode() + b":" + on_the_wire
        )
        await csms.wait_connected(SEC_CP_ID)
        await csms.wait_for("StatusNotification", after=mark, timeout_s=10)
        assert sent_after(csms, "BootNotification", mark) == []  # a reconnect is no boot


async def test_a_new_authorization_key_the_csms_refuses_gives_way_to_the_previous_one(
    tmp_path: Path,
) -> None:
    new_key = "fedcba9876543210fedcba9876543210"  # 16 bytes in hex
    async with (
        LocalCsms(basic_auth={SEC_CP_ID: PASSWORD}) as csms,  # never learns the new key
        charger(csms, tmp_path, {"security_profile": 1, "password": PASSWORD}),
    ):
        await csms.wait_for("StatusNotification", timeout_s=10)
        attempts, mark = len(csms.connection_attempts), len(csms.received)
        changed = await csms.call(
            SEC_CP_ID, call.ChangeConfiguration(key="AuthorizationKey", value=new_key)
        )
        assert changed.status == "Accepted"
        await until(lambda: accepted_attempts(csms, attempts), 15)
        tried = csms.connection_attempts[attempts:]
        assert tried[0].refused
        assert basic_credentials(tried[0]) == SEC_CP_ID.encode() + b":" + bytes.fromhex(new_key)
        back = accepted_attempts(csms, attempts)[0]
        assert basic_credentials(back) == f"{SEC_CP_ID}:{PASSWORD}".encode()
        await csms.wait_for("StatusNotification", after=mark, timeout_s=10)
        # the previous key is the key again: the next connection uses it at once
        attempts = len(csms.connection_attempts)
        await csms.drop_connections()
        await until(lambda: csms.connection_attempts[attempts:], 10)
        assert not csms.connection_attempts[attempts].refused


# --- 2. no offline decisions while online ---------------------------------------------------


async def test_remote_start_and_stop_while_the_boot_is_pending_are_rejected(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    csms = await make_csms(boot_status="Pending", heartbeat_interval_s=300)
    keys = {"AuthorizeRemoteTxRequests": False, "AllowOfflineTxForUnknownId": True}
    async with controller(csms, tmp_path, keys, wait_ready=False) as rig:
        await csms.wait_for("BootNotification")
        started = await rig.cp_call(call.RemoteStartTransaction(id_tag=ACCEPTED_TAG))
        assert started.status == "Rejected"
        stopped = await rig.cp_call(call.RemoteStopTransaction(transaction_id=1))
        assert stopped.status == "Rejected"
        await rig.act("plug")
        await until(lambda: rig.hw("cp_state") == "B")
        assert running(rig) is None and not rig.hw("contactor_closed")


async def malformed_authorize_answer(csms: LocalCsms, request: dict[str, Any]) -> None:
    """Answer the Authorize being handled with a CALLRESULT that breaks the schema (a status
    OCPP does not define), then let the CSMS's own answer become a stray CALLERROR."""
    frame = next(
        f.text
        for f in reversed(csms.raw_received)
        if '"Authorize"' in f.text and request["idTag"] in f.text
    )
    unique_id = json.loads(frame)[1]
    await csms.send_raw(CP_ID, json.dumps([3, unique_id, {"idTagInfo": {"status": "MaybeLater"}}]))
    raise RuntimeError("answered already")  # the library sends a CALLERROR, ignored as late


async def callerror_authorize_answer(csms: LocalCsms, request: dict[str, Any]) -> None:
    raise RuntimeError("the CSMS fails")  # the library answers InternalError


@pytest.mark.parametrize(
    "answer", [malformed_authorize_answer, callerror_authorize_answer], ids=["malformed", "error"]
)
async def test_an_unusable_authorize_answer_online_refuses_the_card_not_the_offline_rules(
    csms: LocalCsms, tmp_path: Path, answer: Any
) -> None:
    keys = {"LocalAuthorizeOffline": True, "AllowOfflineTxForUnknownId": True}
    async with controller(csms, tmp_path, keys) as rig:
        csms.set_response(
            "Authorize",
            lambda request: answer(csms, request) if request["idTag"] == UNKNOWN_TAG else None,
        )
        mark = rig.mark()
        await rig.act("tap", uid=UNKNOWN_TAG)
        await rig.status("Preparing", mark)  # waiting for the answer (and then the car)
        await csms.wait_for("Authorize", after=mark)
        # refused: the connector is free again (accepted offline, it would wait for the car)
        await rig.status("Available", mark)
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        start = await csms.wait_for("StartTransaction", after=mark)
        assert start["idTag"] == ACCEPTED_TAG
        assert (await rig.app.adapter.authorize(UNKNOWN_TAG)).accepted is False  # type: ignore[union-attr]


# --- 3. GetCompositeSchedule keeps numberPhases ---------------------------------------------


async def test_the_composite_schedule_keeps_the_number_of_phases_of_each_period(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        begin = dt.datetime.now(dt.UTC).replace(microsecond=0)
        periods = [
            {"startPeriod": 0, "limit": 16, "numberPhases": 3},
            {"startPeriod": 60, "limit": 16},  # absent: 3 phases, the same as before
            {"startPeriod": 120, "limit": 16, "numberPhases": 1},  # differs in phases only
            {"startPeriod": 180, "limit": 10, "numberPhases": 1},
        ]
        profile = {
            "chargingProfileId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": utc_timestamp(begin),
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": periods,
            },
        }
        result = await rig.cp_call(
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert result.status == "Accepted"
        answer = await rig.cp_call(
            call.GetCompositeSchedule(connector_id=1, duration=600, charging_rate_unit="A")
        )
    assert answer.status == "Accepted"
    start = dt.datetime.fromisoformat(answer.schedule_start)
    shift = int((start - begin).total_seconds())  # the composite starts a moment later
    got = [
        (p["start_period"], p["limit"], p.get("number_phases"))
        for p in answer.charging_schedule["charging_schedule_period"]
    ]
    assert got == [(0, 16, 3), (120 - shift, 16, 1), (180 - shift, 10, 1)]


# --- 4. a StopTransaction is never dropped ----------------------------------------------------


async def test_stop_transaction_is_sent_when_the_start_was_refused_with_callerrors(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {"TransactionMessageAttempts": 2, "TransactionMessageRetryInterval": 0}
    async with controller(csms, tmp_path, keys) as rig:

        def refuse(request: dict[str, Any]) -> None:
            raise RuntimeError("the CSMS cannot take this StartTransaction")

        csms.set_response("StartTransaction", refuse)
        mark = rig.mark()
        await rig.charging()
        await until(lambda: len(rig.sent("StartTransaction", mark)) == 2)  # both attempts
        values = await csms.wait_for("MeterValues", after=mark)
        await rig.act("unplug")
        stop = await csms.wait_for("StopTransaction", after=mark)
    start = rig.sent("StartTransaction", mark)[0]
    assert stop["transactionId"] == -1  # no id was ever given (see controller.csms.queue)
    assert stop["reason"] == "EVDisconnected"
    assert stop["meterStop"] > start["meterStart"]
    assert values["connectorId"] == 1 and "transactionId" not in values


# --- 5. availability survives a restart -------------------------------------------------------


@pytest.mark.parametrize("connector", [1, 0], ids=["connector", "charge-point"])
@pytest.mark.parametrize("crash", [False, True], ids=["restart", "crash"])
async def test_an_inoperative_connector_stays_unavailable_after_a_restart(
    csms: LocalCsms, tmp_path: Path, connector: int, crash: bool
) -> None:
    async with controller(csms, tmp_path, crash=crash) as rig:
        answer = await rig.cp_call(
            call.ChangeAvailability(connector_id=connector, type="Inoperative")
        )
        assert answer.status == "Accepted"
        await rig.status("Unavailable")
        mark = rig.mark()
    async with controller(csms, tmp_path, ready_status=None) as rig:
        booted = boot_index(csms, mark)  # the messages after this boot, not before it
        await rig.status("Unavailable", booted)
        statuses = sent_after(csms, "StatusNotification", booted)
        assert [p["status"] for p in statuses if p["connectorId"] == 1] == ["Unavailable"]
        assert [p["status"] for p in statuses if p["connectorId"] == 0] == ["Unavailable"]
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        answer = await rig.cp_call(
            call.ChangeAvailability(connector_id=connector, type="Operative")
        )
        assert answer.status == "Accepted"
        await rig.status("Preparing", booted)
        mark = rig.mark()
    async with controller(csms, tmp_path, ready_status=None):
        booted = boot_index(csms, mark)
        await csms.wait_for("StatusNotification", lambda p: p["connectorId"] == 1, after=booted)
        assert "Unavailable" not in [
            p["status"] for p in sent_after(csms, "StatusNotification", booted)
        ]


# --- 6. BootNotification only on boot -------------------------------------------------------


async def test_a_reconnect_sends_no_boot_and_keeps_the_heartbeat_interval_the_csms_set(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        changed = await rig.cp_call(call.ChangeConfiguration(key="HeartbeatInterval", value="1"))
        assert changed.status == "Accepted"
        mark = rig.mark()
        await csms.drop_connections()
        await csms.wait_for("StatusNotification", after=mark)  # registered again
        await csms.wait_for("Heartbeat", after=rig.mark(), timeout_s=5)
        conf = await rig.cp_call(call.GetConfiguration(key=["HeartbeatInterval"]))
        assert conf.configuration_key[0]["value"] == "1"
        assert sent_after(csms, "BootNotification", mark) == []
        mark = rig.mark()
    async with controller(csms, tmp_path) as rig:  # a real boot: its interval applies
        boot_index(csms, mark)
        conf = await rig.cp_call(call.GetConfiguration(key=["HeartbeatInterval"]))
        assert conf.configuration_key[0]["value"] == str(csms.heartbeat_interval_s)


# --- 7. Invalid at StartTransaction, StopTransactionOnInvalidId false ------------------------


async def test_an_id_refused_at_start_without_stop_on_invalid_id_suspends_the_energy(
    csms: LocalCsms, tmp_path: Path
) -> None:
    # 1.6 §4.8: a refused id at StartTransaction.conf, StopTransactionOnInvalidId false: the
    # Charge Point should "only stop energy delivery to the vehicle"; the transaction goes on.
    async with controller(csms, tmp_path, {"StopTransactionOnInvalidId": False}) as rig:

        async def refuse_once_charging(request: dict[str, Any]) -> dict[str, Any]:
            # answered once the car draws, so what follows is the answer's doing
            await until(lambda: rig.hw("ev_current_a") > 15.0)
            return {"transactionId": 77, "idTagInfo": {"status": "Invalid"}}

        csms.set_response("StartTransaction", refuse_once_charging)
        mark = rig.mark()
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        await rig.status("Charging", mark)
        charging = rig.mark()
        await csms.wait_for("StartTransaction", after=mark)
        await rig.status("SuspendedEVSE", charging)
        await until(lambda: rig.hw("contactor_closed") is False)
        await until(lambda: rig.hw("offered_current_a") == 0)  # the PWM offers nothing
        tx = running(rig)
        assert tx is not None and tx.csms_id == 77  # kept
        assert sent_after(csms, "StopTransaction", mark) == []
        await rig.act("unplug")
        stop = await csms.wait_for("StopTransaction", after=mark)
    assert stop["transactionId"] == 77 and stop["reason"] == "EVDisconnected"


# --- 8. the parentIdTag of StartTransaction.conf counts ----------------------------------


async def test_a_card_of_the_parent_the_start_answer_named_stops_the_transaction(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        csms.set_response(
            "StartTransaction",
            lambda request: {
                "transactionId": 501,
                "idTagInfo": {"status": "Accepted", "parentIdTag": GROUP},
            },
        )
        csms.set_response(
            "Authorize",
            lambda request: (
                {"idTagInfo": {"status": "Accepted", "parentIdTag": GROUP}}
                if request["idTag"] == GROUP_TAG
                else None
            ),
        )
        mark = rig.mark()
        await rig.charging()  # the Authorize of ACCEPTED_TAG named no parent
        await rig.act("tap", uid=GROUP_TAG)
        stop = await csms.wait_for("StopTransaction", after=mark)
        assert stop["transactionId"] == 501
        assert stop["idTag"] == GROUP_TAG and stop.get("reason", "Local") == "Local"
        await until(lambda: rig.hw("contactor_closed") is False)
