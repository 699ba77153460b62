"""A CSMS cannot make the charger spend its CPU on frames (issue 12 §2,
controller/ocppj/throttle.py).

Every frame from the CSMS that does not answer a call of ours takes a token of the link's
bucket (FRAME_BURST at once, then FRAME_RATE_PER_S); when none is left the charger stops
reading and TCP pushes back. A flood is served at no more than that rate; a CSMS that keeps
flooding loses the link to the keepalive and the charger reconnects (no BootNotification).
A CSMS that sends one call at a time within the burst is never slowed, and the answers to
the charger's own calls never take or wait for a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.csms.link import LinkState
from controller.local_csms import LocalCsms
from controller.ocpp16.charge_point import OcppChargePoint
from controller.ocppj.throttle import FRAME_BURST, FRAME_RATE_PER_S
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

CP_ID = "cp-throttle"
KEYS = {"HeartbeatInterval": 300, "MeterValueSampleInterval": 0, "ClockAlignedDataInterval": 0}


def session(rig: AppRig) -> OcppChargePoint:
    """The charge point's session on its current connection."""
    cp = rig.app.adapter._caller.cp  # type: ignore[union-attr]
    assert cp is not None, "no connection"
    return cp  # type: ignore[no-any-return]


def answered(csms: LocalCsms, after: int, prefix: str) -> int:
    """How many answers (CALLRESULT or CALLERROR) the charge point sent to ids ``prefix*``."""
    count = 0
    for frame in csms.raw_received[after:]:
        if frame.cp_id == CP_ID and frame.text.startswith(("[3,", "[4,")):
            count += str(json.loads(frame.text)[1]).startswith(prefix)
    return count


async def flood(csms: LocalCsms, prefix: str, count: int) -> None:
    """``count`` GetConfiguration CALLs without waiting for any answer."""
    for n in range(count):
        await csms.send_raw(CP_ID, json.dumps([2, f"{prefix}{n}", "GetConfiguration", {}]))


@pytest.mark.timing
async def test_a_flood_is_served_no_faster_than_the_bucket_and_the_link_stays_up(
    csms: LocalCsms, tmp_path: Path
) -> None:
    beyond = 40  # CALLs past the burst: they need beyond / rate seconds, 2 s
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID, speed=10.0) as rig:
        attempts = len(csms.connection_attempts)
        after = len(csms.raw_received)
        started = time.monotonic()
        await flood(csms, "flood-", FRAME_BURST + beyond)
        await until(
            lambda: answered(csms, after, "flood-") == FRAME_BURST + beyond,
            timeout_s=30,
            what="every CALL of the flood answered",
        )
        took = time.monotonic() - started
        assert took >= (beyond - 1) / FRAME_RATE_PER_S, f"served in {took:.2f} s: not throttled"
        assert session(rig).frame_bucket.held_back >= beyond - 1
        assert len(csms.connection_attempts) == attempts, "the link was dropped"
        # and the bucket refills: a CSMS that calls after the flood is answered
        conf = await rig.cp_call(call.GetConfiguration(key=["HeartbeatInterval"]))
        assert conf.configuration_key[0]["value"] == "300"


async def test_a_csms_that_keeps_flooding_loses_the_link_and_the_charger_reconnects(
    csms: LocalCsms, tmp_path: Path
) -> None:
    """Unread, the flood holds back our keepalive's pong: the link drops after the ping
    timeout, the frames the CSMS had queued are gone with it, and the charger reconnects
    without booting again."""
    keys = {**KEYS, "WebSocketPingInterval": 1}
    async with controller(csms, tmp_path, keys, base_keys=KEYS, cp_id=CP_ID, speed=10.0) as rig:
        attempts = len(csms.connection_attempts)
        boots = len(rig.sent("BootNotification"))
        first = session(rig)
        sending = asyncio.create_task(flood(csms, "endless-", FRAME_BURST + 2000))
        try:
            await until(
                lambda: len(csms.connection_attempts) > attempts,
                timeout_s=20,
                what="the charger reconnecting",
            )
            await until(lambda: rig.app.adapter.state is LinkState.REGISTERED)  # type: ignore[union-attr]
        finally:
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending
        assert session(rig) is not first
        assert first.frame_bucket.held_back > 0
        # 2,000 CALLs at the bucket's rate would take 100 s: most were never read
        assert answered(csms, 0, "endless-") < FRAME_BURST + 2000 // 2
        assert len(rig.sent("BootNotification")) == boots, "a reconnect is not a boot"
        conf = await rig.cp_call(call.GetConfiguration(key=["HeartbeatInterval"]))
        assert conf.configuration_key[0]["value"] == "300"


@pytest.mark.timing
async def test_a_csms_calling_one_call_at_a_time_within_the_burst_is_not_slowed(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID, speed=10.0) as rig:
        started = time.monotonic()
        for _ in range(FRAME_BURST - 5):  # a few tokens may have gone on the boot's calls
            conf = await rig.cp_call(call.ChangeConfiguration(key="HeartbeatInterval", value="300"))
            assert conf.status == "Accepted"
        took = time.monotonic() - started
        assert session(rig).frame_bucket.held_back == 0
        assert took < (FRAME_BURST - 5) / FRAME_RATE_PER_S, f"{took:.2f} s: paced like a flood"


async def send_strays(csms: LocalCsms, prefix: str, count: int) -> None:
    """``count`` CALLRESULTs that answer nothing the charge point asked."""
    for n in range(count):
        await csms.send_raw(CP_ID, json.dumps([3, f"{prefix}{n}", {}]))


@pytest.mark.timing
async def test_unsolicited_answers_count_against_the_bucket_and_our_own_answers_never_do(
    csms: LocalCsms, tmp_path: Path
) -> None:
    beyond = 20
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID, speed=10.0) as rig:
        cp = session(rig)
        started = time.monotonic()
        await send_strays(csms, "stray-", FRAME_BURST + beyond)
        await until(lambda: cp._dropped_answers == FRAME_BURST + beyond, timeout_s=30)
        took = time.monotonic() - started
        assert took >= (beyond - 1) / FRAME_RATE_PER_S, f"dropped in {took:.2f} s: unthrottled"
        held = cp.frame_bucket.held_back
        assert held >= beyond - 1
        # The bucket is empty now. An outbox draining (the charger's calls, one after the
        # other) is answered at full speed: its answers take no token and wait for none.
        calls = 60
        caller: Any = rig.app.adapter._caller  # type: ignore[union-attr]
        started = time.monotonic()
        for _ in range(calls):
            await caller.call(call.Heartbeat())
        took = time.monotonic() - started
        assert cp.frame_bucket.held_back == held, "an answer to our own call waited"
        assert took < (calls - 1) / FRAME_RATE_PER_S, f"{calls} calls took {took:.2f} s"
