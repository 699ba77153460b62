"""The local authorization list over the OCPP 1.6 adapter: SendLocalList (Full, Differential,
versions, Failed / VersionMismatch / NotSupported), GetLocalListVersion, its keys, how it
decides with the cache (LocalPreAuthorize, LocalAuthorizeOffline, AllowOfflineTxForUnknownId,
expiry, parent ids), and that it survives a restart."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ocpp.v16 import call

from controller.csms.local_list import LocalAuthList
from controller.domain import AuthResult, AuthStatus, utc_now
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.settings import AuthKeys
from controller.storage import Storage
from tests.support.csms import ACCEPTED_TAG, UNKNOWN_TAG
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig
from tests.support.wait import until

CARD_A = "AA000001"
CARD_B = "BB000002"
CARD_C = "CC000003"


def entry(tag: str, status: str | None = "Accepted", **info: str) -> dict[str, Any]:
    """A localAuthorizationList item; ``status`` None leaves idTagInfo out (a removal)."""
    if status is None:
        return {"idTag": tag}
    return {"idTag": tag, "idTagInfo": {"status": status, **info}}


async def send_list(
    rig: AdapterRig, version: int, entries: list[dict[str, Any]], update_type: str = "Full"
) -> str:
    request = call.SendLocalList(
        list_version=version, update_type=update_type, local_authorization_list=entries
    )
    return str((await rig.csms.call(CP_ID, request)).status)


async def list_version(rig: AdapterRig) -> int:
    return int((await rig.csms.call(CP_ID, call.GetLocalListVersion())).list_version)


async def go_offline(rig: AdapterRig) -> None:
    rig.csms.refuse_connections = True
    await rig.csms.drop_connections()
    await until(lambda: not rig.adapter.online)


async def ready(make_rig: MakeRig, **keys: str) -> AdapterRig:
    rig = await make_rig(keys=keys or None)
    await rig.registered()
    return rig


def authorize_calls(rig: AdapterRig) -> list[str]:
    return [r.payload["idTag"] for r in rig.csms.received if r.action == "Authorize"]


async def statuses(rig: AdapterRig, *tags: str) -> list[AuthStatus]:
    return [(await rig.adapter.authorize(tag)).status for tag in tags]


# --- SendLocalList and GetLocalListVersion --------------------------------------------------


async def test_an_empty_list_has_version_0_and_a_full_update_sets_list_and_version(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    assert await list_version(rig) == 0
    assert await send_list(rig, 3, [entry(CARD_A), entry(CARD_B, "Blocked")]) == "Accepted"
    assert await list_version(rig) == 3
    assert await send_list(rig, 4, [entry(CARD_C)]) == "Accepted"  # replaces A and B
    await go_offline(rig)
    assert await statuses(rig, CARD_C, CARD_A, CARD_B) == [
        AuthStatus.ACCEPTED,
        AuthStatus.INVALID,
        AuthStatus.INVALID,
    ]


async def test_a_differential_update_adds_changes_and_removes_tags(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 1, [entry(CARD_A), entry(CARD_B, "Blocked")]) == "Accepted"
    changes = [entry(CARD_C), entry(CARD_A.lower(), None), entry(CARD_B, "Accepted")]
    assert await send_list(rig, 2, changes, "Differential") == "Accepted"
    assert await list_version(rig) == 2
    await go_offline(rig)
    assert await statuses(rig, CARD_A, CARD_B, CARD_C) == [
        AuthStatus.INVALID,
        AuthStatus.ACCEPTED,
        AuthStatus.ACCEPTED,
    ]


async def test_a_differential_update_not_newer_than_the_list_is_a_version_mismatch(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 5, [entry(CARD_A)]) == "Accepted"
    assert await send_list(rig, 5, [entry(CARD_B)], "Differential") == "VersionMismatch"
    assert await send_list(rig, 4, [entry(CARD_B)], "Differential") == "VersionMismatch"
    assert await list_version(rig) == 5
    assert await send_list(rig, 2, [entry(CARD_B)]) == "Accepted"  # a Full update always goes
    assert await list_version(rig) == 2


async def test_requests_that_cannot_be_applied_fail_and_change_nothing(make_rig: MakeRig) -> None:
    rig = await ready(make_rig, SendLocalListMaxLength="2", LocalAuthListMaxLength="3")
    assert await send_list(rig, 1, [entry(CARD_A), entry(CARD_B)]) == "Accepted"
    too_many = [entry(CARD_C), entry("DD000004"), entry("EE000005")]
    failing = [
        (2, too_many, "Full"),  # more than SendLocalListMaxLength in one request
        (2, [entry(CARD_C), entry("DD000004")], "Differential"),  # 4 > LocalAuthListMaxLength
        (2, [entry(CARD_C, None)], "Full"),  # a Full entry needs idTagInfo
        (2, [entry(CARD_C), entry(CARD_C.lower(), "Blocked")], "Differential"),  # twice
        (2, [entry(CARD_C, expiryDate="next tuesday")], "Differential"),
        (-1, [entry(CARD_C)], "Full"),
    ]
    for version, entries, update_type in failing:
        assert await send_list(rig, version, entries, update_type) == "Failed", entries
    assert await list_version(rig) == 1
    await go_offline(rig)
    assert await statuses(rig, CARD_A, CARD_B, CARD_C) == [
        AuthStatus.ACCEPTED,
        AuthStatus.ACCEPTED,
        AuthStatus.INVALID,
    ]


async def test_a_full_update_with_an_empty_list_clears_it(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 7, [entry(CARD_A)]) == "Accepted"
    assert await send_list(rig, 0, []) == "Accepted"  # how the OCPP test tool clears it
    assert await list_version(rig) == 0
    assert await send_list(rig, 1, [entry(CARD_B)], "Differential") == "Accepted"
    assert await list_version(rig) == 1


async def test_a_disabled_list_answers_not_supported_and_minus_one_and_is_not_used(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, AllowOfflineTxForUnknownId="false")
    assert await send_list(rig, 2, [entry(CARD_A)]) == "Accepted"
    change = await rig.csms.call(CP_ID, call.ChangeConfiguration("LocalAuthListEnabled", "false"))
    assert change.status == "Accepted"
    assert await send_list(rig, 3, [entry(CARD_B)]) == "NotSupported"
    assert await list_version(rig) == -1
    await go_offline(rig)
    assert (await rig.adapter.authorize(CARD_A)).status is AuthStatus.INVALID
    await rig.config.change("LocalAuthListEnabled", "true")
    assert (await rig.adapter.authorize(CARD_A)).accepted  # kept while disabled
    rig.csms.refuse_connections = False
    await rig.registered(after=len(rig.csms.received))
    assert await list_version(rig) == 2


async def test_the_keys_are_served_and_the_profile_is_announced(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    conf = await rig.csms.call(
        CP_ID,
        call.GetConfiguration(
            key=[
                "LocalAuthListEnabled",
                "LocalAuthListMaxLength",
                "SendLocalListMaxLength",
                "SupportedFeatureProfiles",
            ]
        ),
    )
    values = {e["key"]: (e["value"], e["readonly"]) for e in conf.configuration_key}
    assert values["LocalAuthListEnabled"] == ("true", False)
    assert values["LocalAuthListMaxLength"] == ("1000", True)
    assert values["SendLocalListMaxLength"] == ("500", True)
    assert "LocalAuthListManagement" in values["SupportedFeatureProfiles"][0].split(",")
    refused = await rig.csms.call(CP_ID, call.ChangeConfiguration("LocalAuthListMaxLength", "5"))
    assert refused.status == "Rejected"


# --- authorization with the list and the cache ------------------------------------------------


async def test_offline_the_list_takes_precedence_over_the_cache(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert (await rig.adapter.authorize(ACCEPTED_TAG)).accepted  # cached as Accepted
    assert await send_list(rig, 1, [entry(ACCEPTED_TAG, "Blocked")]) == "Accepted"
    await go_offline(rig)
    assert (await rig.adapter.authorize(ACCEPTED_TAG)).status is AuthStatus.BLOCKED


async def test_ids_in_the_list_stay_out_of_the_cache(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 1, [entry(CARD_A)]) == "Accepted"
    assert (await rig.adapter.authorize(CARD_A)).status is AuthStatus.INVALID  # CSMS decides
    assert await rig.storage.cache_get(CARD_A) is None
    await rig.adapter.authorize(ACCEPTED_TAG)
    assert await rig.storage.cache_get(ACCEPTED_TAG) is not None


async def test_local_pre_authorize_starts_a_listed_valid_id_without_asking(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, LocalPreAuthorize="true", AuthorizationCacheEnabled="false")
    entries = [entry(CARD_A, parentIdTag="FAMILY"), entry(CARD_B, "Blocked")]
    assert await send_list(rig, 1, entries) == "Accepted"
    assert await rig.adapter.authorize(CARD_A) == AuthResult(AuthStatus.ACCEPTED, "FAMILY")
    assert (await rig.adapter.authorize(CARD_B)).status is AuthStatus.INVALID  # asked the CSMS
    assert authorize_calls(rig) == [CARD_B]


async def test_without_local_pre_authorize_the_csms_is_asked_online(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 1, [entry(CARD_A)]) == "Accepted"
    assert (await rig.adapter.authorize(CARD_A)).status is AuthStatus.INVALID
    assert authorize_calls(rig) == [CARD_A]


async def test_expiry_and_parent_of_list_entries_are_respected_offline(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    past = (utc_now() - dt.timedelta(hours=1)).isoformat()
    future = (utc_now() + dt.timedelta(hours=1)).isoformat()
    entries = [
        entry(CARD_A, expiryDate=past),
        entry(CARD_B, expiryDate=future, parentIdTag="FAMILY"),
    ]
    assert await send_list(rig, 1, entries) == "Accepted"
    await go_offline(rig)
    assert (await rig.adapter.authorize(CARD_A)).status is AuthStatus.EXPIRED
    result = await rig.adapter.authorize(CARD_B)
    assert result.accepted and result.parent_id == "FAMILY"
    assert result.expiry == dt.datetime.fromisoformat(future)


async def test_without_local_authorize_offline_only_the_lists_refusals_count(
    make_rig: MakeRig,
) -> None:
    rig = await ready(make_rig, LocalAuthorizeOffline="false", AllowOfflineTxForUnknownId="true")
    assert await send_list(rig, 1, [entry(CARD_A, "Blocked")]) == "Accepted"
    await go_offline(rig)
    assert await statuses(rig, CARD_A, UNKNOWN_TAG) == [AuthStatus.BLOCKED, AuthStatus.ACCEPTED]


# --- durability ---------------------------------------------------------------------------


async def test_the_list_and_its_version_survive_a_restart(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    entries = [entry(CARD_A, parentIdTag="FAMILY"), entry(CARD_B, "Blocked")]
    assert await send_list(rig, 9, entries) == "Accepted"
    await rig.stop_adapter()
    await rig.storage.close()
    storage = await Storage.open(rig.storage.path.parent)
    try:
        config = OcppConfig(storage, number_of_connectors=1)
        await config.load()
        fresh = LocalAuthList(AuthKeys(config), storage, utc_now)
        assert await fresh.version() == 9
        assert await fresh.lookup(CARD_A.lower()) == AuthResult(AuthStatus.ACCEPTED, "FAMILY")
        assert await fresh.lookup(CARD_B) == AuthResult(AuthStatus.BLOCKED)
        assert await fresh.lookup(CARD_C) is None
    finally:
        await storage.close()


async def test_a_list_that_cannot_be_stored_fails_and_stays_as_it_was(make_rig: MakeRig) -> None:
    rig = await ready(make_rig)
    assert await send_list(rig, 1, [entry(CARD_A)]) == "Accepted"
    await rig.storage.close()  # every storage call fails from now on
    assert await send_list(rig, 2, [entry(CARD_B)]) == "Failed"
    assert await list_version(rig) == 1
