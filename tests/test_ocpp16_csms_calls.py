"""What the CSMS may ask of the charge point over OCPP 1.6, and what it is answered: each
request reaches the supervisor (a fake here) as the right domain call, with no outgoing call
awaited inside a handler; actions we do not serve get NotImplemented or NotSupported."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.v16 import call

from controller.domain import Answer, CsmsSettings, ResetKind
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig
from tests.support.wait import until

TAG = "04A1B2C3"


def constant_profile(
    purpose: str = "TxDefaultProfile",
    limit: float = 10.0,
    *,
    unit: str = "A",
    periods: int = 1,
    profile_id: int = 7,
    stack_level: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "charging_profile_id": profile_id,
        "stack_level": stack_level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": "Relative",
        "charging_schedule": {
            "charging_rate_unit": unit,
            "charging_schedule_period": [
                {"start_period": 60 * n, "limit": limit} for n in range(periods)
            ],
        },
        **extra,
    }


async def ready(make_rig: MakeRig, **kwargs: Any) -> AdapterRig:
    rig = await make_rig(**kwargs)
    await rig.registered()
    return rig


async def test_remote_start_reaches_the_supervisor_already_authorized_by_default(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1))
    assert result.status == "Accepted"
    assert rig.control.named("remote_start") == [(TAG, 1, True)]


async def test_remote_start_asks_for_authorization_first_with_authorize_remote_tx_requests(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, keys={"AuthorizeRemoteTxRequests": "true"})
    result = await rig.csms.call(CP_ID, call.RemoteStartTransaction(id_tag=TAG))
    assert result.status == "Accepted"
    assert rig.control.named("remote_start") == [(TAG, None, False)]


async def test_remote_start_on_an_unknown_connector_or_refused_is_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=3))
    assert result.status == "Rejected" and rig.control.named("remote_start") == []
    rig.control.remote_start_answer = False
    result = await rig.csms.call(CP_ID, call.RemoteStartTransaction(id_tag=TAG, connector_id=1))
    assert result.status == "Rejected"


async def test_remote_stop_of_a_known_transaction_is_accepted_and_unknown_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    unknown = await rig.csms.call(CP_ID, call.RemoteStopTransaction(transaction_id=99))
    assert unknown.status == "Rejected"
    known = await rig.csms.call(CP_ID, call.RemoteStopTransaction(transaction_id=tx.csms_id))
    assert known.status == "Accepted" and rig.control.named("remote_stop") == [(tx,)]


@pytest.mark.parametrize("kind", ["Soft", "Hard"])
async def test_reset_is_accepted_and_then_handed_to_the_supervisor(
    make_rig: MakeRig, kind: str
) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.Reset(type=kind))
    assert result.status == "Accepted"
    await until(lambda: rig.control.named("reset") == [(ResetKind(kind),)])


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answer.UNLOCKED, "Unlocked"),
        (Answer.UNLOCK_FAILED, "UnlockFailed"),
        (Answer.NOT_SUPPORTED, "NotSupported"),
    ],
)
async def test_unlock_connector_answers_what_the_supervisor_did(
    make_rig: MakeRig, answer: Answer, status: str
) -> None:
    rig = await ready(make_rig)
    rig.control.unlock_answer = answer
    result = await rig.csms.call(CP_ID, call.UnlockConnector(connector_id=1))
    assert result.status == status and rig.control.named("unlock") == [(1,)]


async def test_unlock_of_an_unknown_connector_is_not_supported(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.UnlockConnector(connector_id=2))
    assert result.status == "NotSupported" and rig.control.named("unlock") == []


@pytest.mark.parametrize(
    ("connector_id", "kind", "answer", "status"),
    [
        (0, "Inoperative", Answer.ACCEPTED, "Accepted"),
        (1, "Inoperative", Answer.SCHEDULED, "Scheduled"),
        (1, "Operative", Answer.REJECTED, "Rejected"),
    ],
)
async def test_change_availability_answers_what_the_supervisor_decided(
    make_rig: MakeRig, connector_id: int, kind: str, answer: Answer, status: str
) -> None:
    rig = await ready(make_rig)
    rig.control.availability_answer = answer
    result = await rig.csms.call(CP_ID, call.ChangeAvailability(connector_id, kind))
    assert result.status == status
    assert rig.control.named("change_availability") == [(connector_id, kind == "Operative")]


async def test_change_availability_of_an_unknown_connector_is_rejected(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(CP_ID, call.ChangeAvailability(5, "Inoperative"))
    assert result.status == "Rejected" and rig.control.named("change_availability") == []


async def test_data_transfer_knows_our_vendor_and_message_ids_only(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    other = await rig.csms.call(CP_ID, call.DataTransfer(vendor_id="acme", message_id="x"))
    assert other.status == "UnknownVendorId"
    unknown = await rig.csms.call(CP_ID, call.DataTransfer(vendor_id="PiCharge", message_id="x"))
    assert unknown.status == "UnknownMessageId"
    known = await rig.csms.call(
        CP_ID, call.DataTransfer(vendor_id="picharge", message_id="ConnectorStatus")
    )
    assert known.status == "Accepted"
    assert json.loads(known.data)[0] == {
        "connectorId": 1,
        "status": "Available",
        "fault": None,
        "transactionId": None,
        "energyWh": None,
        "offeredA": 16.0,
    }


async def test_get_configuration_lists_known_keys_and_names_unknown_ones(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    result = await rig.csms.call(
        CP_ID, call.GetConfiguration(key=["heartbeatinterval", "NoSuchKey"])
    )
    assert result.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}
    ]
    assert result.unknown_key == ["NoSuchKey"]
    every = await rig.csms.call(CP_ID, call.GetConfiguration())
    keys = {entry["key"] for entry in every.configuration_key}
    assert {"NumberOfConnectors", "MeterValuesSampledData", "WebSocketPingInterval"} <= keys


async def test_change_configuration_validates_persists_and_reaches_the_supervisor(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    accepted = await rig.csms.call(CP_ID, call.ChangeConfiguration("ConnectionTimeOut", "30"))
    assert accepted.status == "Accepted"
    pushed = len(rig.control.named("apply_settings"))
    assert rig.control.named("apply_settings")[-1] == (
        CsmsSettings(stop_on_ev_disconnect=True, connection_timeout_s=30.0),
    )
    assert (await rig.storage.load_settings("ocpp16"))["ConnectionTimeOut"] == "30"
    invalid = await rig.csms.call(CP_ID, call.ChangeConfiguration("ConnectionTimeOut", "soon"))
    assert invalid.status == "Rejected"
    readonly = await rig.csms.call(CP_ID, call.ChangeConfiguration("NumberOfConnectors", "4"))
    assert readonly.status == "Rejected"
    unknown = await rig.csms.call(CP_ID, call.ChangeConfiguration("NoSuchKey", "1"))
    assert unknown.status == "NotSupported"
    assert len(rig.control.named("apply_settings")) == pushed  # a refused change pushes nothing


async def test_domain_settings_reach_the_supervisor_when_the_adapter_starts(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, keys={"StopTransactionOnEVSideDisconnect": "false"})
    assert rig.control.named("apply_settings")[-1] == (
        CsmsSettings(stop_on_ev_disconnect=False, connection_timeout_s=60.0),
    )


async def test_a_constant_default_profile_limits_every_connector_until_cleared(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, connectors=(1, 2))
    result = await rig.csms.call(CP_ID, call.SetChargingProfile(0, constant_profile(limit=16)))
    assert result.status == "Accepted"
    assert rig.control.named("set_current_limit") == [(1, 16.0), (2, 16.0)]
    own = await rig.csms.call(
        CP_ID, call.SetChargingProfile(2, constant_profile(limit=8, profile_id=8))
    )
    assert own.status == "Accepted"  # connector 2's own default wins over connector 0's
    assert rig.control.named("set_current_limit")[-1] == (2, 8.0)
    cleared = await rig.csms.call(CP_ID, call.ClearChargingProfile(id=8))
    assert cleared.status == "Accepted"
    assert rig.control.named("set_current_limit")[-1] == (2, 16.0)
    everything = await rig.csms.call(CP_ID, call.ClearChargingProfile())
    assert everything.status == "Accepted"
    assert rig.control.named("set_current_limit")[-2:] == [(1, None), (2, None)]
    nothing = await rig.csms.call(CP_ID, call.ClearChargingProfile())
    assert nothing.status == "Unknown"


async def test_a_tx_profile_needs_the_running_transaction(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    without = await rig.csms.call(CP_ID, call.SetChargingProfile(1, constant_profile("TxProfile")))
    assert without.status == "Rejected"
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)
    assert tx.csms_id is not None
    wrong = constant_profile("TxProfile", transaction_id=tx.csms_id + 1)
    assert (await rig.csms.call(CP_ID, call.SetChargingProfile(1, wrong))).status == "Rejected"
    right = constant_profile("TxProfile", 6, transaction_id=tx.csms_id)
    assert (await rig.csms.call(CP_ID, call.SetChargingProfile(1, right))).status == "Accepted"
    assert rig.control.named("set_current_limit") == [(1, 6.0)]


@pytest.mark.parametrize(
    "request_",
    [
        call.Heartbeat(),  # a charge point's own call: no CSMS asks it of the charger
    ],
    ids=lambda r: type(r).__name__,
)
async def test_actions_we_do_not_serve_get_not_implemented(
    make_rig: MakeRig, request_: object
) -> None:
    rig = await ready(make_rig)
    with pytest.raises(OcppNotImplemented):
        await rig.csms.call(CP_ID, request_)
    assert rig.control.calls == [c for c in rig.control.calls if c[0] == "apply_settings"]


async def test_an_action_ocpp_16_does_not_know_gets_not_supported(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    after = len(rig.csms.raw_received)
    await rig.csms.send_raw(CP_ID, '[2,"u-1","GetVariables",{}]')
    frame = await rig.csms.wait_for_raw(CP_ID, lambda t: '"u-1"' in t, after=after)
    assert json.loads(frame)[:3] == [4, "u-1", "NotSupported"]


async def test_a_slow_handler_does_not_hold_up_the_answers_to_our_own_calls(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    unlocked = asyncio.Event()

    unlocking: list[int] = []

    async def slow_unlock(connector_id: int) -> Answer:
        unlocking.append(connector_id)
        await unlocked.wait()
        return Answer.UNLOCKED

    rig.control.unlock = slow_unlock  # type: ignore[method-assign]
    pending = asyncio.create_task(rig.csms.call(CP_ID, call.UnlockConnector(1)))
    await until(lambda: unlocking == [1], what="the Unlock handler to be waiting")
    assert (await rig.adapter.authorize(TAG)).accepted  # answered while Unlock is pending
    unlocked.set()
    assert (await pending).status == "Unlocked"
