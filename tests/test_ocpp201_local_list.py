"""OCPP 2.0.1 local authorization list and idTokens (issue 14, blocks C and D): SendLocalList
Full and Differential with its versions and limits, GetLocalListVersion, the list deciding
offline and across a restart, a card of the same group stopping a session (C09), and idTokens
of the kinds a CSMS names (Central, eMAID, KeyCode, Local).

The whole controller runs on simulated hardware against the bundled CSMS speaking 2.0.1;
the ``csms`` fixture fails a test on any schema violation of what the station sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ocpp.v201 import call

from controller.local_csms import LocalCsms
from tests.support.csms import ACCEPTED_TAG, UNKNOWN_TAG
from tests.support.device_model import QUIET_KEYS, V201, get_variable, set_variable, tx_event
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

KEYS = QUIET_KEYS
CARD_A = "AA000001"
CARD_B = "BB000002"
CARD_C = "CC000003"


def entry(
    tag: str, status: str | None = "Accepted", kind: str = "ISO14443", **info: Any
) -> dict[str, Any]:
    """One AuthorizationData (snake_case, as the library takes it); no status: a removal."""
    token = {"id_token": tag, "type": kind}
    if status is None:
        return {"id_token": token}
    return {"id_token": token, "id_token_info": {"status": status, **info}}


def central_wire(tag: str) -> dict[str, str]:
    """A Central idToken as it travels (camelCase)."""
    return {"idToken": tag, "type": "Central"}


def group(tag: str) -> dict[str, str]:
    return {"id_token": tag, "type": "Central"}


async def send_list(rig: AppRig, version: int, entries: list[dict[str, Any]], kind: str) -> str:
    request = call.SendLocalList(  # the schema wants a list left out rather than empty
        version_number=version, update_type=kind, local_authorization_list=entries or None
    )
    return str((await rig.cp_call(request)).status)


async def list_version(rig: AppRig) -> int:
    return int((await rig.cp_call(call.GetLocalListVersion())).version_number)


async def plugged_remote_start(rig: AppRig, token: dict[str, str], remote_start_id: int) -> Any:
    """Plug the car in, then RequestStartTransaction for ``token``: the answer."""
    await rig.act("plug")
    await rig.status("Occupied")
    request = call.RequestStartTransaction(id_token=token, remote_start_id=remote_start_id)
    return await rig.cp_call(request)


async def list_state(rig: AppRig) -> tuple[int, str]:
    """GetLocalListVersion and LocalAuthListCtrlr.Entries."""
    return await list_version(rig), await get_variable(rig, "LocalAuthListCtrlr", "Entries")


async def test_full_and_differential_updates_keep_the_version_and_entries_of_every_kind(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        before = await list_version(rig)
        full = [
            entry(CARD_A),
            entry(CARD_B, "Blocked"),
            entry("CENTRAL-7", kind="Central", group_id_token=group("FLEET")),
            entry(
                "DE*PIC*C12345678*9", kind="eMAID", cache_expiry_date_time="2099-01-01T00:00:00Z"
            ),
            entry("123456", kind="KeyCode"),
            entry("local-1", kind="Local"),
        ]
        first = await send_list(rig, 3, full, "Full")
        after_full = await list_state(rig)
        change = [entry(CARD_A, None), entry(CARD_C), entry(CARD_B, "Accepted")]
        second = await send_list(rig, 4, change, "Differential")
        stale = await send_list(rig, 4, [entry(CARD_A)], "Differential")
        older = await send_list(rig, 2, [entry(CARD_A)], "Differential")
        after_diff = await list_state(rig)
        emptied = await send_list(rig, 5, [], "Full")
        after_empty = await list_state(rig)
    assert before == 0
    assert (first, after_full) == ("Accepted", (3, "6"))
    assert (second, stale, older) == ("Accepted", "VersionMismatch", "VersionMismatch")
    assert after_diff == (4, "6")  # CARD_A removed, CARD_C added, CARD_B changed
    assert (emptied, after_empty) == ("Accepted", (0, "0"))  # an empty list has version 0


async def test_an_update_beyond_the_list_limits_fails_and_changes_nothing(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        per_message = int(await get_variable(rig, "LocalAuthListCtrlr", "ItemsPerMessage"))
        max_bytes = int(await get_variable(rig, "LocalAuthListCtrlr", "BytesPerMessage"))
        assert (per_message, max_bytes) == (250, 128 * 1024)
        cards = [f"{n:08X}" for n in range(1001)]
        too_many = await send_list(rig, 1, [entry(c) for c in cards[:251]], "Full")
        message = {"format": "UTF8", "content": "x" * 512}
        wordy = [entry(c, personal_message=message) for c in cards[:250]]
        too_big = await send_list(rig, 1, wordy, "Full")
        without_info = await send_list(rig, 1, [entry(CARD_A), entry(CARD_B, None)], "Full")
        twice = await send_list(rig, 1, [entry(CARD_A), entry(CARD_A.lower())], "Full")
        refused = await list_state(rig)
        filled = [await send_list(rig, 1, [entry(c) for c in cards[:250]], "Full")]
        for version, start in ((2, 250), (3, 500), (4, 750)):
            chunk = [entry(c) for c in cards[start : start + 250]]
            filled.append(await send_list(rig, version, chunk, "Differential"))
        over = await send_list(rig, 5, [entry(cards[1000])], "Differential")
        full = await list_state(rig)
    assert (too_many, too_big, without_info, twice) == ("Failed",) * 4
    assert refused == (0, "0")
    assert filled == ["Accepted"] * 4
    assert over == "Failed"  # Entries' maxLimit is 1000
    assert full == (4, "1000")


async def test_while_the_list_is_disabled_updates_fail_and_its_version_is_0(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        assert await send_list(rig, 7, [entry(CARD_A)], "Full") == "Accepted"
        assert await set_variable(rig, "LocalAuthListCtrlr", "Enabled", "false") == "Accepted"
        off = (await send_list(rig, 8, [entry(CARD_B)], "Full"), await list_version(rig))
        assert await set_variable(rig, "LocalAuthListCtrlr", "Enabled", "true") == "Accepted"
        on = await list_version(rig)
    assert off == ("Failed", 0)
    assert on == 7  # the list was kept while disabled


async def test_a_listed_card_charges_while_the_csms_is_down_a_blocked_one_does_not(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {
        **KEYS,
        "AuthCacheCtrlr": {"Enabled": False},
        "AuthCtrlr": {"LocalAuthorizeOffline": True, "OfflineTxForUnknownIdEnabled": False},
    }
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        entries = [entry(CARD_A), entry(CARD_B, "Blocked")]
        assert await send_list(rig, 1, entries, "Full") == "Accepted"
        csms.refuse_connections = True
        await csms.drop_connections()
        await rig.act("plug")
        for refused in (CARD_B, UNKNOWN_TAG):
            await rig.act("tap", uid=refused)
            # nothing may happen here; the charger acts within tens of ms, so 0.3 s is a wide
            # margin on a loaded machine, and a late wake-up only widens the window
            await asyncio.sleep(0.3)
            assert rig.hw("contactor_closed") is False
        mark = rig.mark()
        await rig.act("tap", uid=CARD_A)
        await rig.act("charge")
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
        csms.refuse_connections = False
        started = await csms.wait_for("TransactionEvent", tx_event("Started"), after=mark)
    assert started["idToken"] == {"idToken": CARD_A, "type": "ISO14443"}
    assert started["offline"] is True
    assert not rig.sent("Authorize")


async def test_the_list_and_its_version_survive_a_restart(csms: LocalCsms, tmp_path: Path) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        entries = [entry(CARD_A), entry("123456", kind="KeyCode")]
        assert await send_list(rig, 9, entries, "Full") == "Accepted"
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        restored = await list_state(rig)
        stale = await send_list(rig, 9, [entry(CARD_B)], "Differential")
    assert restored == (9, "2")
    assert stale == "VersionMismatch"


async def test_a_card_of_the_same_group_stops_a_session_another_group_does_not(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {**KEYS, "AuthCtrlr": {"LocalPreAuthorize": True}}
    for card in (CARD_A, CARD_B, CARD_C):
        csms.set_tag(card, "Accepted")  # what the TransactionEvent answers say
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        entries = [
            entry(CARD_A, group_id_token=group("FAMILY")),
            entry(CARD_B, group_id_token=group("family")),
            entry(CARD_C, group_id_token=group("NEIGHBOURS")),
        ]
        assert await send_list(rig, 1, entries, "Full") == "Accepted"
        await rig.act("plug")
        await rig.act("tap", uid=CARD_A)
        await rig.act("charge")
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
        await rig.act("tap", uid=CARD_C)
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide
        # margin on a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("contactor_closed") is True
        await rig.act("tap", uid=CARD_B)
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        await until(lambda: rig.hw("contactor_closed") is False, timeout_s=10)
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["idToken"] == {"idToken": CARD_B, "type": "ISO14443"}
    assert not rig.sent("Authorize")  # the list decided both


async def test_the_group_the_csms_names_lets_another_card_stop_the_session(
    csms: LocalCsms, tmp_path: Path
) -> None:
    fleet = {"status": "Accepted", "groupIdToken": {"idToken": "FLEET-7", "type": "Central"}}
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        csms.set_response("Authorize", lambda request: {"idTokenInfo": fleet})
        await rig.act("plug")
        await rig.act("tap", uid=ACCEPTED_TAG)
        await rig.act("charge")
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
        await rig.act("tap", uid=CARD_B)
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
        await until(lambda: rig.hw("contactor_closed") is False, timeout_s=10)
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["idToken"]["idToken"] == CARD_B


async def test_the_group_of_a_remote_start_comes_from_the_started_answer(
    csms: LocalCsms, tmp_path: Path
) -> None:
    fleet = {"status": "Accepted", "groupIdToken": {"idToken": "FLEET-9", "type": "Central"}}
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        csms.set_response("TransactionEvent", lambda request: {"idTokenInfo": fleet})
        csms.set_response("Authorize", lambda request: {"idTokenInfo": fleet})
        await plugged_remote_start(rig, {"id_token": "REMOTE-1", "type": "Central"}, 4)
        await rig.act("charge")
        await csms.wait_for("TransactionEvent", tx_event("Started"))
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
        supervisor = rig.app.supervisor
        assert supervisor is not None
        await until(  # no Authorize preceded the start: the group is in the Started answer
            lambda: getattr(supervisor.view(1).transaction, "parent_id", None) == "FLEET-9",
            what="the Started answer's group taken",
        )
        await rig.act("tap", uid=CARD_B)
        ended = await csms.wait_for("TransactionEvent", tx_event("Ended"))
    assert ended["transactionInfo"]["stoppedReason"] == "Local"
    assert ended["idToken"]["idToken"] == CARD_B


async def test_a_remote_start_names_the_token_as_the_csms_did(
    csms: LocalCsms, tmp_path: Path
) -> None:
    emaid = "DE*PIC*C12345678*9"
    csms.set_tag(emaid, "Accepted")
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        answer = await plugged_remote_start(rig, {"id_token": emaid, "type": "eMAID"}, 3)
        await rig.act("charge")
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
    assert answer.status == "Accepted"
    assert started["idToken"] == {"idToken": emaid, "type": "eMAID"}


async def test_with_authorize_remote_start_a_remote_token_is_authorized_as_named(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {**KEYS, "AuthCtrlr": {"AuthorizeRemoteStart": True}}
    csms.set_tag("REMOTE-2", "Accepted")
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        answer = await plugged_remote_start(rig, {"id_token": "REMOTE-2", "type": "Central"}, 6)
        await rig.act("charge")
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
        await until(lambda: rig.hw("contactor_closed") is True, timeout_s=10)
    assert answer.status == "Accepted"
    assert [p["idToken"] for p in rig.sent("Authorize")] == [central_wire("REMOTE-2")]
    assert started["idToken"] == central_wire("REMOTE-2")
    assert (started["triggerReason"], started["transactionInfo"]["remoteStartId"]) == (
        "RemoteStart",
        6,
    )


async def test_a_refused_remote_token_starts_nothing_and_a_card_after_it_is_no_remote_start(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {**KEYS, "AuthCtrlr": {"AuthorizeRemoteStart": True}}
    csms.set_tag("1234", "Blocked")
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        answer = await plugged_remote_start(rig, {"id_token": "1234", "type": "KeyCode"}, 5)
        await csms.wait_for(
            "Authorize", lambda p: p["idToken"] == {"idToken": "1234", "type": "KeyCode"}
        )
        # nothing may happen after the answer; the charger acts within tens of ms, so 0.5 s
        # is a wide margin on a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert not rig.sent("TransactionEvent")
        await rig.act("tap", uid=ACCEPTED_TAG)
        started = await csms.wait_for("TransactionEvent", tx_event("Started"))
    assert answer.status == "Accepted"  # F01: answered before the token is authorized
    assert started["idToken"]["idToken"] == ACCEPTED_TAG
    assert started["triggerReason"] == "Authorized"
    assert "remoteStartId" not in started["transactionInfo"]
