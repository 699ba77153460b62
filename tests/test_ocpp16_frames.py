"""Malformed frames from the CSMS: each gets the CALLERROR OCPP 1.6 names (FormationViolation,
TypeConstraintViolation, PropertyConstraintViolation, ProtocolError), with the frame's unique
id when it can be recovered, and the charge point carries on with nothing changed."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from controller.ocpp16.errors import FrameProblem, check_frame
from controller.ocppj.throttle import FrameBucket
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig


async def answer_to(rig: AdapterRig, frame: str, unique_id: str) -> list[object]:
    """Send ``frame`` raw; return the charge point's CALLRESULT or CALLERROR for ``unique_id``."""
    after = len(rig.csms.raw_received)
    await rig.csms.send_raw(CP_ID, frame)
    text = await rig.csms.wait_for_raw(
        CP_ID,
        lambda t: t.startswith(("[3,", "[4,")) and json.loads(t)[1] == unique_id,
        after=after,
        timeout_s=2,
    )
    answer: list[object] = json.loads(text)
    return answer


FRAMES = [
    ("not json", "-1", "FormationViolation"),
    ('{"a": 1}', "-1", "FormationViolation"),
    ("[]", "-1", "FormationViolation"),
    ('[7, "m-1", "Reset", {}]', "m-1", "FormationViolation"),
    ('["2", "m-2", "Reset", {"type": "Soft"}]', "m-2", "FormationViolation"),
    ('[2, "m-3", "Reset"]', "m-3", "FormationViolation"),
    ('[2, "m-4", "Reset", {"type": "Soft"}, {}]', "m-4", "FormationViolation"),
    ('[2, 42, "Reset", {"type": "Soft"}]', "-1", "FormationViolation"),
    ('[2, "' + "x" * 37 + '", "Reset", {"type": "Soft"}]', "-1", "FormationViolation"),
    ('[2, "m-5", 12, {}]', "m-5", "FormationViolation"),
    ('[2, "m-6", "Reset", ["Soft"]]', "m-6", "FormationViolation"),
    ('[3, "m-7"]', "m-7", "FormationViolation"),
    ('[4, "m-8", "GenericError", "desc"]', "m-8", "FormationViolation"),
    ('[2, "m-9", "UnlockConnector", {"connectorId": "one"}]', "m-9", "TypeConstraintViolation"),
    ('[2, "m-10", "Reset", {"type": "Medium"}]', "m-10", "PropertyConstraintViolation"),
    ('[2, "m-11", "Reset", {}]', "m-11", "ProtocolError"),
    ('[2, "m-12", "Reset", {"type": "Soft", "when": "now"}]', "m-12", "FormationViolation"),
    (
        '[2, "m-13", "ChangeConfiguration", {"key": "' + "k" * 51 + '", "value": "1"}]',
        "m-13",
        "TypeConstraintViolation",
    ),
]


@pytest.mark.parametrize(("frame", "unique_id", "code"), FRAMES)
async def test_a_malformed_frame_gets_the_right_call_error_and_changes_nothing(
    make_rig: MakeRig, frame: str, unique_id: str, code: str
) -> None:
    rig = await make_rig()
    await rig.registered()
    before = list(rig.control.calls)
    answer = await answer_to(rig, frame, unique_id)
    assert answer[:3] == [4, unique_id, code]
    assert isinstance(answer[3], str) and isinstance(answer[4], dict)
    assert rig.control.calls == before
    # still registered, still answering
    assert rig.adapter.registered
    ok = await answer_to(rig, '[2, "after", "DataTransfer", {"vendorId": "acme"}]', "after")
    assert ok == [3, "after", {"status": "UnknownVendorId"}]


async def test_a_burst_of_garbage_leaves_the_link_up(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    for frame, _, _ in FRAMES:
        await rig.csms.send_raw(CP_ID, frame)
    ok = await answer_to(rig, '[2, "after", "ClearCache", {}]', "after")
    assert ok == [3, "after", {"status": "Accepted"}]
    assert len(rig.csms.connection_attempts) == 1


async def test_an_unsolicited_result_is_ignored(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    await rig.csms.send_raw(CP_ID, '[3, "nobody-asked", {}]')
    await rig.csms.send_raw(CP_ID, '[4, "nobody-asked", "GenericError", "", {}]')
    assert (await rig.adapter.authorize("04A1B2C3")).accepted


def test_check_frame_passes_well_formed_messages_through() -> None:
    call = check_frame('[2, "a", "Reset", {"type": "Soft"}]')
    assert not isinstance(call, FrameProblem) and call.unique_id == "a"
    assert isinstance(check_frame(b"[2]"), FrameProblem)  # binary frames are not OCPP-J
    problem = check_frame('[true, "b", "Reset", {}]')
    assert isinstance(problem, FrameProblem) and problem.unique_id == "b"


def set_charging_profile(unique_id: str, limit: str) -> str:
    """A SetChargingProfile frame whose one period's limit is ``limit`` (raw JSON text)."""
    return (
        f'[2, "{unique_id}", "SetChargingProfile", {{"connectorId": 1, "csChargingProfiles": '
        '{"chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",'
        ' "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A", '
        f'"chargingSchedulePeriod": [{{"startPeriod": 0, "limit": {limit}}}]}}}}}}]'
    )


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ("NaN", "FormationViolation"),  # not JSON at all (RFC 8259 has no NaN)
        ("Infinity", "FormationViolation"),
        ("-Infinity", "FormationViolation"),
        ("1e309", "FormationViolation"),  # JSON, but no finite number
        ("1e308", "PropertyConstraintViolation"),  # finite, far beyond what a limit holds
    ],
)
async def test_a_number_no_field_can_hold_gets_a_call_error_and_the_link_stays(
    make_rig: MakeRig, limit: str, code: str
) -> None:
    rig = await make_rig()
    await rig.registered()
    answer = await answer_to(rig, set_charging_profile("huge", limit), "huge")
    assert answer[:3] == [4, "huge", code]
    assert rig.control.named("set_current_limit") == []
    ok = await answer_to(rig, set_charging_profile("sane", "16.0"), "sane")
    assert ok == [3, "sane", {"status": "Accepted"}]
    assert len(rig.csms.connection_attempts) == 1


async def test_a_frame_nested_thousands_deep_gets_a_call_error_and_the_link_stays(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    depth = 20_000  # 40 kB: under the frame limit, far beyond Python's recursion limit
    frame = '[2, "deep", "DataTransfer", {"vendorId": "x", "data": ' + "[" * depth
    frame += "]" * depth + "}]"
    answer = await answer_to(rig, frame, "deep")
    assert answer[:3] == [4, "deep", "FormationViolation"]
    ok = await answer_to(rig, '[2, "after", "ClearCache", {}]', "after")
    assert ok == [3, "after", {"status": "Accepted"}]
    assert len(rig.csms.connection_attempts) == 1


async def test_a_binary_frame_holding_a_call_is_answered_under_its_own_id(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    after = len(rig.csms.raw_received)
    await rig.csms.send_raw(CP_ID, b'[2, "bin-1", "ClearCache", {}]')
    text = await rig.csms.wait_for_raw(CP_ID, lambda t: t.startswith("[4,"), after=after)
    answer = json.loads(text)
    # OCPP-J frames are text: the call is refused, but under its id, so the CSMS can match it
    assert answer[:3] == [4, "bin-1", "FormationViolation"]
    assert "binary" in answer[4]["cause"]


async def test_answers_to_nothing_are_dropped_not_queued(make_rig: MakeRig) -> None:
    """50,000 of these once grew memory by 12 MB and the next call ended in RecursionError:
    the library queued each one and skipped them one recursive call at a time."""
    rig = await make_rig()
    await rig.registered()
    cp = rig.adapter._caller.cp
    assert cp is not None
    # What becomes of such answers is the point here, not how fast they are read: a bucket
    # with room for all of them (the link's own is tests/test_csms_throttle.py's matter).
    cp.frame_bucket = FrameBucket(burst=10_000)

    async def burst(tag: str) -> None:
        for n in range(3_000):  # three times Python's recursion limit
            frame = (
                f'[3, "{tag}-{n}", {{}}]'
                if n % 2
                else f'[4, "{tag}-{n}", "GenericError", "", {{}}]'
            )
            await rig.csms.send_raw(CP_ID, frame)
        ok = await answer_to(rig, f'[2, "{tag}", "ClearCache", {{}}]', tag)  # all were read
        assert ok == [3, tag, {"status": "Accepted"}]

    await burst("warm-up")  # the link's own buffers reach their size
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        await burst("nobody")
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # kept, each would be a message object of several hundred bytes: about 1 MB here
    assert grown - before < 100_000
    assert cp._response_queue.qsize() == 0
    assert (await rig.adapter.authorize("04A1B2C3")).accepted  # our next call is answered
    assert len(rig.csms.connection_attempts) == 1
