"""A CSMS that floods the charger with CALLs cannot make it pile up work (issue 12 §2).

OCPP-J has a CSMS send its next CALL after the answer to the last. A hostile or broken one
that does not wait gets every CALL answered all the same, but at most
:data:`controller.ocpp16.charge_point.CALL_BACKLOG` wait to be served, one at a time; each
one beyond is answered at once with a CALLERROR GenericError ("busy"). The link stays up and
the session charges on. (How fast a flood is read at all is the frame bucket's matter:
tests/test_csms_throttle.py; the floods here stay within its burst.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ocpp.messages import Call

from controller.local_csms import LocalCsms
from controller.ocpp16.charge_point import CALL_BACKLOG, OcppChargePoint
from controller.ocppj.throttle import FRAME_BURST
from tests.support.sim_app import controller
from tests.support.wait import until

CP_ID = "cp-flood"
KEYS = {"HeartbeatInterval": 300, "MeterValueSampleInterval": 0, "ClockAlignedDataInterval": 0}


def answers(csms: LocalCsms, after: int, prefix: str) -> dict[str, list[Any]]:
    """The charge point's answers (CALLRESULT or CALLERROR) to ids starting ``prefix``."""
    found: dict[str, list[Any]] = {}
    for frame in csms.raw_received[after:]:
        if frame.cp_id == CP_ID and frame.text.startswith(("[3,", "[4,")):
            answer = json.loads(frame.text)
            if str(answer[1]).startswith(prefix):
                found[answer[1]] = answer
    return found


async def flood(csms: LocalCsms, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}{n}" for n in range(count)]
    for uid in ids:
        await csms.send_raw(CP_ID, json.dumps([2, uid, "GetConfiguration", {}]))
    return ids


async def test_a_flood_is_answered_one_call_at_a_time_and_the_session_goes_on(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = 0
    most = 0
    serve: Callable[[OcppChargePoint, Call], Awaitable[None]] = OcppChargePoint._serve

    async def counted(self: OcppChargePoint, message: Call) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await serve(self, message)
        finally:
            running -= 1

    monkeypatch.setattr(OcppChargePoint, "_serve", counted)
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID, speed=10.0) as rig:
        await rig.charging()
        attempts = len(csms.connection_attempts)
        after = len(csms.raw_received)
        ids = await flood(csms, "flood-", FRAME_BURST)
        await until(lambda: len(answers(csms, after, "flood-")) == len(ids), timeout_s=60)
        got = answers(csms, after, "flood-")
        results = [a for a in got.values() if a[0] == 3]
        refused = [a for a in got.values() if a[0] == 4]
        assert results, "no GetConfiguration was served"
        assert all(a[2] == "GenericError" for a in refused), refused[:3]
        assert most == 1, f"{most} CALLs were served at the same time"
        assert len(csms.connection_attempts) == attempts, "the link was dropped"
        assert rig.hw("coil_energized") and rig.hw("ev_current_a") > 15.0


async def test_calls_beyond_the_backlog_are_refused_as_busy_at_once(
    csms: LocalCsms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first CALL's handler is held: CALL_BACKLOG wait behind it, the rest are busy."""
    gate = asyncio.Event()
    serve: Callable[[OcppChargePoint, Call], Awaitable[None]] = OcppChargePoint._serve

    async def held(self: OcppChargePoint, message: Call) -> None:
        if message.unique_id.startswith("held-"):
            await gate.wait()
        await serve(self, message)

    monkeypatch.setattr(OcppChargePoint, "_serve", held)
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID, speed=10.0):
        after = len(csms.raw_received)
        ids = await flood(csms, "held-", CALL_BACKLOG + 1 + 10)
        await until(lambda: len(answers(csms, after, "held-")) == 10, what="ten busy answers")
        busy = answers(csms, after, "held-")
        assert sorted(busy, key=lambda uid: int(uid.split("-")[1])) == ids[-10:]
        assert {a[0] for a in busy.values()} == {4}
        assert {a[2] for a in busy.values()} == {"GenericError"}
        gate.set()
        await until(lambda: len(answers(csms, after, "held-")) == len(ids))
        served = [a for uid, a in answers(csms, after, "held-").items() if uid not in busy]
        assert len(served) == CALL_BACKLOG + 1 and all(a[0] == 3 for a in served)
