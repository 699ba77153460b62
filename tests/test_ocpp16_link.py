"""The OCPP 1.6 adapter's link: boot (accepted, pending, rejected), heartbeat, the status
sweep after each boot, reconnecting with backoff, websocket pings and oversized frames."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time

import pytest
from ocpp.v16 import call

from controller.backoff import Backoff
from controller.connector_types import ConnectorStatus
from controller.csms.link import LinkState, LinkTiming, endpoint_url
from controller.csms.timers import next_boundary
from drivers.errors import FaultKind
from tests.support.ocpp16_adapter import CP_ID, FAST, MakeRig
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


async def test_boot_notification_comes_first_and_acceptance_registers_the_charge_point(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    first = rig.csms.received[0]
    assert first.action == "BootNotification"
    assert first.payload == {
        "chargePointVendor": "picharge",
        "chargePointModel": "picharge-pi",
        "chargePointSerialNumber": "SN-1",
        "chargeBoxSerialNumber": "SN-1",  # deprecated, but many central systems read it
        "firmwareVersion": "0.1.0",
    }
    assert rig.adapter.online and rig.adapter.registered
    assert rig.adapter.state is LinkState.REGISTERED
    assert rig.csms.connection_attempts[0].cp_id == CP_ID


async def test_boot_interval_becomes_the_heartbeat_interval_and_heartbeats_keep_it(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(heartbeat_interval_s=2)  # 0.2 s at the test scale
    await rig.registered()
    assert rig.config.get("HeartbeatInterval") == "2"
    await rig.csms.wait_for("Heartbeat", timeout_s=2)
    start = len(rig.csms.received)
    await rig.csms.wait_for("Heartbeat", after=start, timeout_s=2)
    await rig.csms.wait_for("Heartbeat", after=len(rig.csms.received), timeout_s=2)
    beats = [r.monotonic_s for r in rig.csms.received if r.action == "Heartbeat"]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert all(0.17 <= gap <= 0.45 for gap in gaps), gaps


async def test_a_changed_heartbeat_interval_applies_at_once(make_rig: MakeRig) -> None:
    rig = await make_rig(heartbeat_interval_s=100)  # 10 s: no heartbeat during the test
    await rig.registered()
    result = await rig.csms.call(CP_ID, call.ChangeConfiguration("HeartbeatInterval", "1"))
    assert result.status == "Accepted"
    changed = time.monotonic()
    await rig.csms.wait_for("Heartbeat", timeout_s=1)
    assert time.monotonic() - changed < 0.5


async def test_pending_boot_is_retried_after_its_interval_and_csms_calls_are_answered_meanwhile(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(boot_status="Pending", heartbeat_interval_s=3)  # retry after 0.3 s
    await until(lambda: rig.adapter.state is LinkState.PENDING)
    assert not rig.adapter.registered
    result = await rig.csms.call(CP_ID, call.GetConfiguration(key=["HeartbeatInterval"]))
    assert result.configuration_key[0]["key"] == "HeartbeatInterval"
    await rig.csms.wait_for("BootNotification", after=1)
    boots = [r.monotonic_s for r in rig.csms.received if r.action == "BootNotification"]
    assert 0.28 <= boots[1] - boots[0] <= 0.7
    assert rig.actions() == ["BootNotification", "BootNotification"]  # nothing else yet
    rig.csms.boot_status = "Accepted"
    await rig.registered()
    assert rig.adapter.registered


async def test_rejected_boot_sends_nothing_else_and_retries_after_the_interval(
    make_rig: MakeRig,
) -> None:
    # The CSMS checks the retry against its interval in real seconds: no time scaling here.
    timing = dataclasses.replace(FAST, interval_scale=1.0)
    rig = await make_rig(boot_status="Rejected", heartbeat_interval_s=1, timing=timing)
    await until(lambda: rig.adapter.state is LinkState.REJECTED)
    rig.control.report(1, ConnectorStatus.PREPARING)  # must not be sent while Rejected
    assert not (await rig.adapter.authorize("04A1B2C3")).accepted  # decided offline
    rig.csms.boot_status = "Accepted"
    await rig.registered(timeout_s=3)
    assert rig.actions()[:3] == ["BootNotification", "BootNotification", "StatusNotification"]
    boots = [r.monotonic_s for r in rig.csms.received]
    assert boots[1] - boots[0] >= 0.95


async def test_after_boot_the_status_of_connector_0_and_every_connector_is_sent(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(connectors=(1, 2))
    rig.control.statuses[2] = ConnectorStatus.FAULTED
    rig.control.faults[2] = FaultKind.RCD_TRIP
    await rig.registered()
    statuses = [r.payload for r in rig.csms.received if r.action == "StatusNotification"]
    assert [(s["connectorId"], s["status"], s["errorCode"]) for s in statuses] == [
        (0, "Available", "NoError"),
        (1, "Available", "NoError"),
        (2, "Faulted", "GroundFailure"),
    ]
    assert statuses[2]["info"] == "rcd_trip"
    assert all(s["timestamp"].endswith("Z") for s in statuses)


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (FaultKind.RCD_SELFTEST, "GroundFailure"),
        (FaultKind.CONTACTOR_WELDED, "PowerSwitchFailure"),
        (FaultKind.CONTACTOR_FAILED_CLOSE, "PowerSwitchFailure"),
        (FaultKind.METER_OFFLINE, "PowerMeterFailure"),
        (FaultKind.READER_FAILURE, "ReaderFailure"),
        (FaultKind.CP_ERROR, "EVCommunicationError"),
        (FaultKind.DIODE_FAULT, "EVCommunicationError"),
        (FaultKind.OVERTEMPERATURE, "HighTemperature"),
        (FaultKind.LOCK_FAILURE, "ConnectorLockFailure"),
    ],
)
def test_every_fault_has_its_ocpp_error_code(fault: FaultKind, code: str) -> None:
    from controller.ocpp16.status import error_code

    assert error_code(fault) == code


async def test_status_changes_are_sent_in_order_and_connector_0_follows_availability(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    after = len(rig.csms.received)
    rig.control.report(1, ConnectorStatus.PREPARING)
    rig.control.report(1, ConnectorStatus.CHARGING)
    rig.control.report(1, ConnectorStatus.UNAVAILABLE)
    await rig.csms.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 0, after=after, timeout_s=2
    )
    sent = [
        (r.payload["connectorId"], r.payload["status"])
        for r in rig.csms.received[after:]
        if r.action == "StatusNotification"
    ]
    assert sent == [(1, "Preparing"), (1, "Charging"), (1, "Unavailable"), (0, "Unavailable")]


async def test_a_dropped_link_reconnects_without_a_boot_and_resends_every_status(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    await rig.csms.drop_connections()
    rig.control.report(1, ConnectorStatus.PREPARING)  # offline: not queued, but remembered
    after = len(rig.csms.received)
    await rig.csms.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 1, after=after, timeout_s=3
    )
    # 1.6 §4.2: a BootNotification each time the charge point boots, not on a reconnect
    assert rig.actions(after) == ["StatusNotification", "StatusNotification"]
    assert rig.csms.received[-1].payload["status"] == "Preparing"
    assert len(rig.csms.connection_attempts) == 2


async def test_refused_connections_are_retried_with_growing_jittered_backoff(
    make_rig: MakeRig, make_csms: object
) -> None:
    from controller.local_csms import LocalCsms

    csms = LocalCsms()
    await csms.start()
    csms.refuse_connections = True
    try:
        rig = await make_rig(csms=csms)
        await until(lambda: len(csms.connection_attempts) >= 5)
        times = [a.monotonic_s for a in csms.connection_attempts]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 0.05, 0.1, 0.2, 0.4 s (capped) with +-20 % jitter, plus the handshake itself
        assert 0.035 <= gaps[0] <= 0.2 and 0.075 <= gaps[1] <= 0.3, gaps
        assert 0.3 <= gaps[3] <= 0.8, gaps
        assert not rig.adapter.online
        csms.refuse_connections = False
        await rig.registered()
    finally:
        await rig.stop_adapter()
        await csms.stop()


async def test_a_frozen_link_is_noticed_by_pings_and_replaced(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"WebSocketPingInterval": "2"})  # ping every 0.2 s
    await rig.registered()
    await rig.csms.freeze_connections()
    frozen = time.monotonic()
    after = len(rig.csms.received)
    await rig.csms.wait_connected(CP_ID, timeout_s=3)
    assert time.monotonic() - frozen < 1.5  # interval + pong timeout + backoff
    await rig.registered(after=after)  # a reconnect: the statuses again, no boot


async def test_an_oversized_frame_closes_the_link_and_the_charge_point_reconnects(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    data = "x" * LinkTiming().max_frame_bytes  # the frame around it is over the limit
    huge = '[2,"big","DataTransfer",{"vendorId":"picharge","data":"' + data + '"}]'
    after = len(rig.csms.received)
    await rig.csms.send_raw(CP_ID, huge)
    await rig.registered(after=after)
    assert {name for name, _ in rig.control.calls} == {"apply_settings"}  # settings only


def test_backoff_doubles_to_its_cap_with_jitter_and_resets() -> None:
    low = Backoff(1.0, 60.0, 0.2, rng=lambda: 0.0)
    delays = [round(low.next_delay(), 3) for _ in range(8)]
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 48, 48]
    high = Backoff(1.0, 60.0, 0.2, rng=lambda: 1.0)
    assert [round(high.next_delay(), 3) for _ in range(3)] == [1.2, 2.4, 4.8]
    high.reset()
    assert round(high.next_delay(), 3) == 1.2
    with pytest.raises(ValueError):
        Backoff(0.0, 60.0, 0.2)


def test_the_charge_point_id_is_the_last_path_segment_of_the_url() -> None:
    assert endpoint_url("ws://csms:9000/ocpp/", "CP 1") == "ws://csms:9000/ocpp/CP%201"
    assert endpoint_url("wss://csms/ocpp", "CP1") == "wss://csms/ocpp/CP1"


def test_clock_aligned_boundaries_start_at_midnight_utc() -> None:
    at = dt.datetime(2025, 1, 1, 10, 7, 30, tzinfo=dt.UTC)
    assert next_boundary(at, 900) == dt.datetime(2025, 1, 1, 10, 15, tzinfo=dt.UTC)
    on_boundary = dt.datetime(2025, 1, 1, 10, 15, tzinfo=dt.UTC)
    assert next_boundary(on_boundary, 900) == dt.datetime(2025, 1, 1, 10, 30, tzinfo=dt.UTC)
    late = dt.datetime(2025, 1, 1, 23, 59, 0, tzinfo=dt.UTC)
    assert next_boundary(late, 7 * 3600) == dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
