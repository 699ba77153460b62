"""The flood bench's CSMS in a process of its own (bench/csms_process.py): the controller
boots against it as against the in-process one (its calls are mirrored to the bench), a
flood it sends reaches the charger, every CALL answered and counted, and a flood too long
to wait for (the charger reads it at its frame bucket's rate) is ended on command, the link
dropped and the charger back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from bench.csms_process import CsmsProcess
from controller.ocppj.throttle import FRAME_BURST
from tests.support.sim_app import CP_ID, controller


@contextlib.asynccontextmanager
async def charger_on_csms_process(tmp_path: Path) -> AsyncIterator[CsmsProcess]:
    """The CSMS process, and the controller connected to it, for the block."""
    csms = CsmsProcess()
    await csms.start()
    try:
        # controller() waits for connector 1's Available StatusNotification in the CSMS's
        # record: here that is the child's record, mirrored over its stdout.
        async with controller(csms, tmp_path):  # type: ignore[arg-type]
            await csms.wait_connected(CP_ID)
            yield csms
    finally:
        await csms.stop()


async def test_a_flood_from_the_csms_process_reaches_the_charger_and_each_answer_is_counted(
    tmp_path: Path,
) -> None:
    async with charger_on_csms_process(tmp_path) as csms:
        boot = await csms.wait_for("BootNotification", cp_id=CP_ID)
        assert boot["chargePointModel"]
        report = await csms.flood(CP_ID, FRAME_BURST)
    assert report.dropped is None and not report.ended
    assert report.sent == FRAME_BURST
    assert report.answered == FRAME_BURST
    # beyond the charger's backlog of waiting calls the answer is a busy CALLERROR; the
    # rest were served
    assert 0 <= report.errors < FRAME_BURST
    assert report.last_answer_s is not None
    assert report.first_sent_s <= report.last_sent_s <= report.last_answer_s


async def test_the_csms_process_ends_when_the_bench_stops_it() -> None:
    csms = CsmsProcess()
    url = await csms.start()
    assert url.startswith("ws://127.0.0.1:")
    assert csms.exit_code is None
    await csms.stop()
    assert csms.exit_code == 0


async def test_a_flood_ended_by_the_bench_drops_the_link_and_the_charger_reconnects(
    tmp_path: Path,
) -> None:
    async with charger_on_csms_process(tmp_path) as csms:
        flooding = asyncio.create_task(csms.flood(CP_ID, 10_000))
        await asyncio.sleep(0.5)
        assert await csms.end_flood() == 1
        report = await flooding
        await csms.wait_connected(CP_ID, timeout_s=20.0)
        boots = [r for r in csms.received if r.action == "BootNotification"]
    assert report.ended
    assert FRAME_BURST <= report.answered < 10_000
    assert len(boots) == 1, "a reconnect is not a boot"
