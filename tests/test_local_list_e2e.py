"""The local authorization list end to end: the real controller on simulated hardware against
the loopback CSMS, its list sent by SendLocalList, cards tapped on the simulated reader."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ocpp.v16 import call

from controller.local_csms import LocalCsms
from tests.support.csms import UNKNOWN_TAG
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

CARD_A = "AA000001"
CARD_B = "BB000002"
CARD_C = "CC000003"


def entry(tag: str, status: str | None = "Accepted", **info: str) -> dict[str, object]:
    if status is None:
        return {"idTag": tag}
    return {"idTag": tag, "idTagInfo": {"status": status, **info}}


async def send_list(rig: AppRig, version: int, entries: list[dict[str, object]], kind: str) -> str:
    request = call.SendLocalList(
        list_version=version, update_type=kind, local_authorization_list=entries
    )
    return str((await rig.cp_call(request)).status)


def started(rig: AppRig) -> list[dict[str, object]]:
    return [r.payload for r in rig.csms.received if r.action == "StartTransaction"]


async def test_a_listed_card_charges_while_the_csms_is_down_an_unlisted_one_does_not(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {"AuthorizationCacheEnabled": False, "AllowOfflineTxForUnknownId": False}
    async with controller(csms, tmp_path, keys) as rig:
        assert await send_list(rig, 1, [entry(CARD_A), entry(CARD_B, "Blocked")], "Full") == (
            "Accepted"
        )
        update = [entry(CARD_A, None), entry(CARD_B), entry(CARD_C)]
        assert await send_list(rig, 2, update, "Differential") == "Accepted"
        assert await send_list(rig, 2, [entry(CARD_A)], "Differential") == "VersionMismatch"
        assert (await rig.cp_call(call.GetLocalListVersion())).list_version == 2

        csms.refuse_connections = True
        await csms.drop_connections()
        await rig.act("plug")
        for refused in (CARD_A, UNKNOWN_TAG):  # removed from the list; never known
            await rig.act("tap", uid=refused)
            # nothing may happen here; the charger acts within tens of ms, so 0.3 s is a wide margin
            # on a loaded machine, and a late wake-up only widens the window
            await asyncio.sleep(0.3)
            assert rig.hw("contactor_closed") is False
        await rig.act("tap", uid=CARD_B)
        await until(lambda: rig.hw("contactor_closed") is True)
        assert started(rig) == []  # offline: the start waits in the queue

        csms.refuse_connections = False
        start = await csms.wait_for("StartTransaction")
        assert start["idTag"] == CARD_B
        assert not [r for r in csms.received if r.action == "Authorize"]


async def test_a_card_of_the_same_parent_stops_a_session_another_parent_does_not(
    csms: LocalCsms, tmp_path: Path
) -> None:
    keys = {"LocalPreAuthorize": True}
    for card in (CARD_A, CARD_B, CARD_C):
        csms.set_tag(card, "Accepted")  # what StartTransaction.conf says
    async with controller(csms, tmp_path, keys) as rig:
        entries = [
            entry(CARD_A, parentIdTag="FAMILY"),
            entry(CARD_B, parentIdTag="family"),
            entry(CARD_C, parentIdTag="NEIGHBOURS"),
        ]
        assert await send_list(rig, 1, entries, "Full") == "Accepted"
        await rig.act("plug")
        await rig.act("tap", uid=CARD_A)
        await rig.status("Charging")
        await rig.act("tap", uid=CARD_C)
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("contactor_closed") is True
        await rig.act("tap", uid=CARD_B)
        stop = await csms.wait_for("StopTransaction")
        assert stop["reason"] == "Local" and stop["idTag"] == CARD_B
        assert started(rig)[0]["idTag"] == CARD_A
        assert not [r for r in csms.received if r.action == "Authorize"]  # the list decided


async def test_the_parent_the_csms_names_lets_another_card_stop_the_session(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        csms.set_response(
            "Authorize",
            lambda request: {"idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-7"}},
        )
        await rig.charging()
        await rig.act("tap", uid=CARD_B)
        stop = await csms.wait_for("StopTransaction")
        assert stop["idTag"] == CARD_B
        await until(lambda: rig.hw("contactor_closed") is False)


async def test_the_list_survives_a_restart_of_the_controller(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path) as rig:
        assert await send_list(rig, 4, [entry(CARD_A)], "Full") == "Accepted"
    async with controller(csms, tmp_path) as rig:
        assert (await rig.cp_call(call.GetLocalListVersion())).list_version == 4
        assert await send_list(rig, 4, [entry(CARD_B)], "Differential") == "VersionMismatch"
