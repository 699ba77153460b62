"""Malformed frames from the CSMS: each gets the CALLERROR OCPP 1.6 names (FormationViolation,
TypeConstraintViolation, PropertyConstraintViolation, ProtocolError), with the frame's unique
id when it can be recovered, and the charge point carries on with nothing changed."""

from __future__ import annotations

import json

import pytest

from controller.ocpp16.errors import FrameProblem, check_frame
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
