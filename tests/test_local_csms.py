"""The bundled CSMS, tested with a minimal charge point built on the ``ocpp`` library's client
role over a real websocket: what it answers, what it records, and its fault knobs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import OCPPError
from ocpp.messages import CallError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from controller.local_csms import (
    LocalCsms,
    UnexpectedResult,
    cp_id_from_path,
    parse_timestamp,
)
from tests.support.csms import ACCEPTED_TAG, BLOCKED_TAG, EXPIRED_TAG, UNKNOWN_TAG, MakeCsms

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

OCPP16 = Subprotocol("ocpp1.6")
NOW = "2025-01-01T12:00:00.000Z"
LATER = "2025-01-01T12:30:00.000Z"


class MiniChargePoint(ChargePoint):
    """Just enough of a charge point: answers Reset, records every frame it receives."""

    def __init__(self, cp_id: str, ws: ClientConnection) -> None:
        super().__init__(cp_id, ws, response_timeout=5)
        self.ws = ws
        self.frames: list[str] = []
        self.resets: list[str] = []
        self.holding = asyncio.Event()  # set while UnlockConnector is held unanswered

    async def route_message(self, raw_msg: str) -> None:
        self.frames.append(raw_msg)
        message = json.loads(raw_msg) if raw_msg.startswith("[2,") else None
        if message is not None and message[2] == "ChangeAvailability":
            await self.ws.send(json.dumps([4, message[1], "Oops", "not an OCPP code", {}]))
            return
        await super().route_message(raw_msg)

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> call_result.Reset:
        self.resets.append(type)
        return call_result.Reset(status="Accepted")

    @on(Action.unlock_connector)
    async def on_unlock(self, **_: Any) -> call_result.UnlockConnector:
        self.holding.set()
        await asyncio.Event().wait()  # never answers: the test cancels the charge point
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.clear_cache, skip_schema_validation=True)
    def on_clear_cache(self, **_: Any) -> call_result.ClearCache:
        return call_result.ClearCache(status="Perhaps")  # not a ClearCacheStatus


@contextlib.asynccontextmanager
async def charge_point(
    csms: LocalCsms, cp_id: str = "CP1", **connect_kwargs: Any
) -> AsyncIterator[MiniChargePoint]:
    async with connect(csms.url + cp_id, subprotocols=[OCPP16], **connect_kwargs) as ws:
        cp = MiniChargePoint(cp_id, ws)
        task = asyncio.create_task(cp.start())
        await csms.wait_connected(cp_id, timeout_s=2)
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task


async def boot(cp: MiniChargePoint) -> Any:
    return await cp.call(
        call.BootNotification(charge_point_model="Wallbox", charge_point_vendor="picharge")
    )


def start_tx(id_tag: str = ACCEPTED_TAG, meter_start: int = 1000) -> call.StartTransaction:
    return call.StartTransaction(
        connector_id=1, id_tag=id_tag, meter_start=meter_start, timestamp=NOW
    )


def energy_value(wh: int, timestamp: str = NOW) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register"}],
    }


# --- boot, heartbeat, authorize -----------------------------------------------------------


async def test_boot_is_accepted_with_the_configured_interval_and_the_current_utc_time(
    make_csms: MakeCsms,
) -> None:
    csms = await make_csms(heartbeat_interval_s=42)
    async with charge_point(csms) as cp:
        result = await boot(cp)
    assert (result.status, result.interval) == ("Accepted", 42)
    assert result.current_time.endswith("Z")
    sent_at = parse_timestamp(result.current_time)
    assert sent_at is not None
    assert abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) < 5
    assert [(r.cp_id, r.action) for r in csms.received] == [("CP1", "BootNotification")]
    assert csms.received[0].payload == {
        "chargePointModel": "Wallbox",
        "chargePointVendor": "picharge",
    }


@pytest.mark.parametrize("status", ["Pending", "Rejected"])
async def test_boot_answers_pending_or_rejected_when_configured(
    make_csms: MakeCsms, status: str
) -> None:
    csms = await make_csms(boot_status=status, heartbeat_interval_s=7)
    async with charge_point(csms) as cp:
        result = await boot(cp)
    assert (result.status, result.interval) == (status, 7)


async def test_after_a_rejected_boot_only_a_boot_retried_after_the_interval_is_in_order(
    make_csms: MakeCsms,
) -> None:
    csms = await make_csms(boot_status="Rejected", heartbeat_interval_s=1)
    async with charge_point(csms) as cp:
        await boot(cp)
        await cp.call(call.Heartbeat())
        await boot(cp)  # too early
        assert [v.problem.split(" ")[0] for v in csms.violations] == ["Heartbeat", "boot"]
        assert "interval 1 s" in csms.violations[1].problem
        csms.violations.clear()
        csms.boot_status = "Accepted"
        # the retry interval the CSMS gave must pass before a new boot; longer is harmless
        await asyncio.sleep(1.0)
        assert (await boot(cp)).status == "Accepted"
        await cp.call(call.Heartbeat())
    assert csms.violations == []


async def test_heartbeat_answers_the_current_utc_time(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        result = await cp.call(call.Heartbeat())
    sent_at = parse_timestamp(result.current_time)
    assert sent_at is not None and sent_at.utcoffset() == dt.timedelta(0)


async def test_authorize_answers_from_the_tag_table_case_insensitively_and_invalid_otherwise(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms) as cp:
        statuses = [
            (await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
            for tag in (ACCEPTED_TAG.lower(), BLOCKED_TAG, EXPIRED_TAG, UNKNOWN_TAG)
        ]
        csms.set_tag(UNKNOWN_TAG, "Accepted")
        csms.set_tag(ACCEPTED_TAG, None)
        later = [
            (await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
            for tag in (UNKNOWN_TAG, ACCEPTED_TAG)
        ]
    assert statuses == ["Accepted", "Blocked", "Expired", "Invalid"]
    assert later == ["Accepted", "Invalid"]


def test_unknown_tag_or_boot_status_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="Fine"):
        LocalCsms(authorized_tags={"AB": "Fine"})
    with pytest.raises(ValueError, match="Later"):
        LocalCsms(boot_status="Later")


# --- transactions -------------------------------------------------------------------------


async def test_transactions_get_ids_from_one_up_and_a_complete_record(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        first = await cp.call(start_tx(ACCEPTED_TAG, meter_start=1000))
        second = await cp.call(start_tx(BLOCKED_TAG, meter_start=50))
        await cp.call(
            call.MeterValues(
                connector_id=1, transaction_id=1, meter_value=[energy_value(1500, LATER)]
            )
        )
        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=3200,
                timestamp=LATER,
                transaction_id=1,
                id_tag=ACCEPTED_TAG,
                reason="EVDisconnected",
                transaction_data=[energy_value(1000), energy_value(3200, LATER)],
            )
        )
        tagless = await cp.call(
            call.StopTransaction(meter_stop=60, timestamp=LATER, transaction_id=2)
        )
    assert (first.transaction_id, first.id_tag_info) == (1, {"status": "Accepted"})
    assert (second.transaction_id, second.id_tag_info) == (2, {"status": "Blocked"})
    assert stopped.id_tag_info == {"status": "Accepted"}
    assert tagless.id_tag_info is None
    record = csms.transactions[1]
    assert (record.cp_id, record.connector_id, record.id_tag) == ("CP1", 1, ACCEPTED_TAG)
    assert (record.meter_start_wh, record.meter_stop_wh, record.energy_wh) == (1000, 3200, 2200)
    assert (record.stop_reason, record.stop_id_tag, record.duration_s) == (
        "EVDisconnected",
        ACCEPTED_TAG,
        1800.0,
    )
    assert record.started_at == dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC)
    assert record.meter_values == [energy_value(1500, LATER)]
    assert [v["sampledValue"][0]["value"] for v in record.transaction_data] == ["1000", "3200"]
    assert not record.running
    assert (csms.transactions[2].id_tag_status, csms.transactions[2].stop_reason) == (
        "Blocked",
        None,
    )


async def test_status_data_transfer_and_firmware_notifications_are_answered(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms) as cp:
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
        )
        ours = await cp.call(call.DataTransfer(vendor_id="PiCharge", message_id="hello"))
        theirs = await cp.call(call.DataTransfer(vendor_id="acme"))
        await cp.call(call.DiagnosticsStatusNotification(status="Idle"))
        await cp.call(call.FirmwareStatusNotification(status="Idle"))
    assert csms.statuses == {("CP1", 1): "Preparing"}
    assert (ours.status, theirs.status) == ("Accepted", "UnknownVendorId")
    assert [r.action for r in csms.received][-2:] == [
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
    ]


# --- CSMS -> CP calls and raw frames ------------------------------------------------------


async def test_csms_call_returns_the_charge_points_result(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        result = await csms.call("CP1", call.Reset(type="Soft"))
    assert result == call_result.Reset(status="Accepted")
    assert cp.resets == ["Soft"]


async def test_csms_call_error_is_raised_or_returned_when_expected(csms: LocalCsms) -> None:
    async with charge_point(csms):
        with pytest.raises(OcppNotImplemented):
            await csms.call("CP1", call.GetConfiguration())
        error = await csms.call("CP1", call.GetConfiguration(), expect_error=True)
        with pytest.raises(UnexpectedResult, match="Reset"):
            await csms.call("CP1", call.Reset(type="Hard"), expect_error=True)
    assert isinstance(error, CallError)
    assert error.error_code == "NotImplemented"


async def test_a_result_that_breaks_the_schema_raises_and_is_a_violation(csms: LocalCsms) -> None:
    async with charge_point(csms):
        with pytest.raises(Exception, match="Perhaps"):
            await csms.call("CP1", call.ClearCache())
    assert len(csms.violations) == 1
    assert "Perhaps" in csms.violations[0].frame
    csms.violations.clear()


async def test_an_unknown_error_code_in_the_answer_raises_and_is_a_violation(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms):
        with pytest.raises(Exception, match="Oops"):
            await csms.call("CP1", call.ChangeAvailability(connector_id=0, type="Inoperative"))
    assert [json.loads(v.frame)[2] for v in csms.violations] == ["Oops"]
    csms.violations.clear()


async def test_a_csms_call_breaking_the_schema_is_never_sent(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        with pytest.raises(OCPPError):
            await csms.call("CP1", call.Reset(type="Gentle"))
        assert cp.frames == []
    assert csms.violations == []


async def test_a_call_to_an_unconnected_charge_point_names_the_connected_ones(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms, "CP7"):
        with pytest.raises(KeyError, match="CP7"):
            await csms.call("CP1", call.Reset(type="Soft"))


async def test_a_call_fails_at_once_when_the_charge_point_disconnects(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        pending = asyncio.create_task(csms.call("CP1", call.UnlockConnector(connector_id=1)))
        await asyncio.wait_for(cp.holding.wait(), 1.0)
        started = time.monotonic()
        await csms.drop_connections()
        with pytest.raises(ConnectionError, match="CP1"):
            await pending
    assert time.monotonic() - started < 1.0


async def test_raw_frames_reach_the_charge_point_and_its_answers_are_recorded(
    csms: LocalCsms,
) -> None:
    frames = [
        "{not json",
        '[5,"w1",{}]',  # no such message type
        '[2,"u1","Teleport",{}]',  # no such action
        '[2,"t1","Reset",{"type":1}]',  # wrong field type
    ]
    async with charge_point(csms) as cp:
        for frame in frames:
            await csms.send_raw("CP1", frame)
        teleport = await csms.wait_for_raw("CP1", lambda f: f.startswith('[4,"u1"'))
        reset = await csms.wait_for_raw("CP1", lambda f: f.startswith('[4,"t1"'))
        assert cp.frames == frames
    assert json.loads(teleport)[2] == "NotSupported"
    assert json.loads(reset)[2] == "TypeConstraintViolation"
    assert cp.resets == []


async def test_answers_to_raw_calls_are_recorded_and_never_taken_for_a_later_calls_answer(
    csms: LocalCsms,
) -> None:
    # An answer to a CALL sent raw answers no call() of the CSMS's: were it handed to the
    # library, it would wait in its response queue (a 10,000-CALL flood's answers, for ever)
    # and the next call() would read every stale one first, one recursion deep each.
    async with charge_point(csms) as cp:
        for n in range(1100):
            await csms.send_raw("CP1", json.dumps([2, f"r{n}", "Reset", {"type": "Soft"}]))
        await csms.wait_for_raw("CP1", lambda f: f.startswith('[3,"r1099"'))
        result = await csms.call("CP1", call.Reset(type="Hard"))
    assert result == call_result.Reset(status="Accepted")
    assert cp.resets == ["Soft"] * 1100 + ["Hard"]
    assert sum(f.text.startswith('[3,"r') for f in csms.raw_received) == 1100


async def test_set_response_overrides_answers_and_none_restores_the_default(
    csms: LocalCsms,
) -> None:
    async def late(_: dict[str, Any]) -> None:
        # a handler that answers late: the delay is the point
        await asyncio.sleep(0.2)

    async with charge_point(csms) as cp:
        csms.set_response("Authorize", lambda _: {"idTagInfo": {"status": "Blocked"}})
        overridden = await cp.call(call.Authorize(id_tag=ACCEPTED_TAG))
        csms.set_response("Authorize", None)
        restored = await cp.call(call.Authorize(id_tag=ACCEPTED_TAG))
        csms.set_response(
            "StartTransaction",
            lambda req: {
                "transactionId": 42,
                "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET"},
            },
        )
        started = await cp.call(start_tx())
        csms.set_response("Heartbeat", late)
        began = time.monotonic()
        await cp.call(call.Heartbeat())
        assert time.monotonic() - began >= 0.2
    assert overridden.id_tag_info == {"status": "Blocked"}
    assert restored.id_tag_info == {"status": "Accepted"}
    assert started.id_tag_info == {"status": "Accepted", "parent_id_tag": "FLEET"}
    assert list(csms.transactions) == [42]
    with pytest.raises(ValueError, match="Authorise"):
        csms.set_response("Authorise", lambda _: None)


# --- violations ---------------------------------------------------------------------------


async def test_a_call_breaking_the_schema_gets_a_call_error_and_is_a_violation(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms) as cp:
        await cp.ws.send('[2,"b1","BootNotification",{"chargePointModel":"W"}]')
        await cp.ws.send(
            '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"NoError",'
            '"status":"Available","timestamp":"2025-01-01T12:00:00"}]'
        )
        await cp.ws.send(f'[2,"{"x" * 37}","Heartbeat",{{}}]')
        await cp.ws.send("[2,")
        await csms.wait_for_raw("CP1", lambda f: f == "[2,")
    problems = [v.problem for v in csms.violations]
    assert problems[0].startswith("ProtocolError")  # chargePointVendor missing
    assert "no UTC offset" in problems[1]
    assert "message id" in problems[2]
    assert problems[3].startswith("not an OCPP-J message")
    assert len(problems) == 4
    assert [r.action for r in csms.received] == ["StatusNotification", "Heartbeat"]
    csms.violations.clear()


# --- waiting ------------------------------------------------------------------------------


async def test_wait_for_finds_later_calls_and_its_timeout_names_what_arrived(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms) as cp:
        await cp.call(call.Authorize(id_tag=BLOCKED_TAG))
        mark = len(csms.received)
        waiter = asyncio.create_task(csms.wait_for("Authorize", after=mark))
        await cp.call(call.Authorize(id_tag=ACCEPTED_TAG))
        assert (await waiter) == {"idTag": ACCEPTED_TAG}
        with pytest.raises(TimeoutError) as caught:
            await csms.wait_for("Authorize", lambda p: p["idTag"] == UNKNOWN_TAG, timeout_s=0.1)
    message = str(caught.value)
    assert "no Authorize matching" in message
    assert "2 call(s) arrived" in message
    assert BLOCKED_TAG in message and ACCEPTED_TAG in message


async def test_on_message_sees_every_call_in_order_and_its_errors_do_not_stop_answers(
    make_csms: MakeCsms,
) -> None:
    seen: list[tuple[str, str]] = []

    def printer(cp_id: str, action: str, payload: dict[str, Any]) -> None:
        seen.append((cp_id, action))
        if action == "Heartbeat":
            raise RuntimeError("printer jammed")

    csms = await make_csms(on_message=printer)
    async with charge_point(csms) as cp:
        await boot(cp)
        await cp.call(call.Heartbeat())
        await cp.call(call.Authorize(id_tag=ACCEPTED_TAG))
    assert seen == [("CP1", "BootNotification"), ("CP1", "Heartbeat"), ("CP1", "Authorize")]


# --- connections and fault knobs ----------------------------------------------------------


async def test_drop_connections_cuts_the_link_without_a_closing_handshake(
    csms: LocalCsms,
) -> None:
    async with charge_point(csms) as cp:
        await csms.drop_connections()
        assert csms.connected == []
        await asyncio.wait_for(cp.ws.wait_closed(), 1.0)
        assert cp.ws.close_code == 1006  # abnormal closure: no close frame
    async with charge_point(csms):
        assert csms.connected == ["CP1"]


async def test_refused_handshakes_get_http_503_until_allowed_again(csms: LocalCsms) -> None:
    csms.refuse_connections = True
    with pytest.raises(InvalidStatus) as refused:
        await charge_point(csms).__aenter__()
    assert refused.value.response.status_code == 503
    csms.refuse_connections = False
    async with charge_point(csms):
        pass
    assert [a.refused for a in csms.connection_attempts] == [True, False]
    assert {a.cp_id for a in csms.connection_attempts} == {"CP1"}


async def test_handshakes_without_the_ocpp16_subprotocol_or_an_id_are_refused(
    csms: LocalCsms,
) -> None:
    with pytest.raises(InvalidStatus) as no_protocol:
        async with connect(csms.url + "CP1"):
            pass
    with pytest.raises(InvalidStatus) as no_id:
        async with connect(csms.url, subprotocols=[OCPP16]):
            pass
    assert no_protocol.value.response.status_code == 400
    assert no_id.value.response.status_code == 404


async def test_a_new_connection_with_the_same_id_replaces_the_old_one(csms: LocalCsms) -> None:
    async with charge_point(csms) as old, charge_point(csms) as new:
        await asyncio.wait_for(old.ws.wait_closed(), 1.0)
        await csms.call("CP1", call.Reset(type="Soft"))
        assert (old.resets, new.resets, csms.connected) == ([], ["Soft"], ["CP1"])


async def test_a_frozen_link_is_noticed_by_the_charge_points_pings(csms: LocalCsms) -> None:
    async with charge_point(
        csms, "CP1", ping_interval=0.1, ping_timeout=0.2, close_timeout=0.2
    ) as cp:
        await csms.freeze_connections()
        await asyncio.wait_for(cp.ws.wait_closed(), 2.0)
        assert cp.ws.protocol.close_sent is not None
        assert cp.ws.protocol.close_sent.code == 1011  # keepalive ping timeout
    started = time.monotonic()
    await csms.stop()
    assert time.monotonic() - started < 1.0  # not the 2 s closing handshake timeout


async def test_stop_closes_connections_going_away_and_is_idempotent(csms: LocalCsms) -> None:
    async with charge_point(csms) as cp:
        await csms.stop()
        await csms.stop()
        await asyncio.wait_for(cp.ws.wait_closed(), 1.0)
        assert cp.ws.close_code == 1001
    assert csms.connected == []


@pytest.mark.parametrize(
    ("path", "cp_id"),
    [("/CP1", "CP1"), ("/ocpp/CP%201/", "CP 1"), ("/a/b/CP-9?token=x", "CP-9"), ("/", "")],
)
def test_the_charge_point_id_is_the_last_path_segment(path: str, cp_id: str) -> None:
    assert cp_id_from_path(path) == cp_id


async def test_async_with_starts_the_csms_on_loopback_and_stops_it() -> None:
    async with LocalCsms() as csms:
        assert csms.url.startswith("ws://127.0.0.1:") and csms.url.endswith("/")
        async with charge_point(csms):
            assert csms.connected == ["CP1"]
    assert csms.connected == []
    with pytest.raises(OSError):
        await connect(csms.url + "CP1", subprotocols=[OCPP16], open_timeout=1)
