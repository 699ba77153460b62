"""Authorization through the OCPP 1.6 adapter: the CSMS when online, the authorization cache
(with expiry) and the offline rules (LocalAuthorizeOffline, AllowOfflineTxForUnknownId,
LocalPreAuthorize), and a CSMS that does not answer counting as offline."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from ocpp.v16 import call

from controller.domain import AuthStatus, utc_now
from tests.support.csms import BLOCKED_TAG, UNKNOWN_TAG
from tests.support.ocpp16_adapter import CP_ID, FAST, AdapterRig, MakeRig
from tests.support.wait import until

TAG = "04A1B2C3"


async def go_offline(rig: AdapterRig) -> None:
    rig.csms.refuse_connections = True
    await rig.csms.drop_connections()
    await until(lambda: not rig.adapter.online)


def authorize_calls(rig: AdapterRig) -> list[str]:
    return [r.payload["idTag"] for r in rig.csms.received if r.action == "Authorize"]


async def test_online_the_csms_decides_and_its_answer_is_cached(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    assert (await rig.adapter.authorize(TAG)).status is AuthStatus.ACCEPTED
    assert (await rig.adapter.authorize(BLOCKED_TAG)).status is AuthStatus.BLOCKED
    assert authorize_calls(rig) == [TAG, BLOCKED_TAG]
    cached = await rig.storage.cache_get(TAG.lower())
    assert cached is not None and cached.status == "Accepted"
    blocked = await rig.storage.cache_get(BLOCKED_TAG)
    assert blocked is not None and blocked.status == "Blocked"


async def test_offline_the_cache_decides_for_ids_it_knows(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    await rig.adapter.authorize(TAG)
    await rig.adapter.authorize(BLOCKED_TAG)
    await go_offline(rig)
    assert (await rig.adapter.authorize(TAG)).accepted
    assert (await rig.adapter.authorize(BLOCKED_TAG)).status is AuthStatus.BLOCKED
    assert (await rig.adapter.authorize(UNKNOWN_TAG)).status is AuthStatus.INVALID
    assert authorize_calls(rig) == [TAG, BLOCKED_TAG]


async def test_offline_unknown_ids_are_accepted_only_with_allow_offline_tx_for_unknown_id(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(keys={"AllowOfflineTxForUnknownId": "true"})
    await rig.registered()
    await go_offline(rig)
    assert (await rig.adapter.authorize(UNKNOWN_TAG)).accepted


async def test_without_local_authorize_offline_the_cache_is_not_used_offline(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(keys={"LocalAuthorizeOffline": "false"})
    await rig.registered()
    await rig.adapter.authorize(TAG)
    await go_offline(rig)
    assert (await rig.adapter.authorize(TAG)).status is AuthStatus.INVALID


async def test_an_expired_cache_entry_is_refused_offline_and_marked_expired(
    make_rig: MakeRig,
) -> None:
    now = [utc_now()]
    rig = await make_rig(clock=lambda: now[0])
    expiry = now[0] + dt.timedelta(hours=1)
    rig.csms.set_response(
        "Authorize",
        lambda request: {
            "idTagInfo": {"status": "Accepted", "expiryDate": expiry.isoformat()},
        },
    )
    await rig.registered()
    result = await rig.adapter.authorize(TAG)
    assert result.accepted and result.expiry == expiry
    await go_offline(rig)
    assert (await rig.adapter.authorize(TAG)).accepted  # still valid
    now[0] += dt.timedelta(hours=2)
    assert (await rig.adapter.authorize(TAG)).status is AuthStatus.EXPIRED
    cached = await rig.storage.cache_get(TAG)
    assert cached is not None and cached.status == "Expired"


async def test_local_pre_authorize_skips_the_csms_for_a_valid_cached_id_only(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(keys={"LocalPreAuthorize": "true"})
    await rig.registered()
    assert (await rig.adapter.authorize(TAG)).accepted
    assert (await rig.adapter.authorize(TAG)).accepted
    await rig.adapter.authorize(BLOCKED_TAG)
    await rig.adapter.authorize(BLOCKED_TAG)  # a refused id is asked about again
    assert authorize_calls(rig) == [TAG, BLOCKED_TAG, BLOCKED_TAG]


async def test_a_csms_that_does_not_answer_counts_as_offline(make_rig: MakeRig) -> None:
    timing = dataclasses.replace(FAST, response_timeout_s=0.3)
    rig = await make_rig(timing=timing, keys={"AllowOfflineTxForUnknownId": "true"})

    answer = asyncio.Event()

    async def late(request: dict[str, object]) -> None:
        await answer.wait()

    await rig.registered()
    rig.csms.set_response("Authorize", late)
    started = asyncio.get_running_loop().time()
    result = await rig.adapter.authorize(UNKNOWN_TAG)
    assert result.accepted  # decided by the offline rules
    assert asyncio.get_running_loop().time() - started < 0.6
    answer.set()  # the late answer is ignored; the link stays up
    assert (await rig.adapter.authorize(UNKNOWN_TAG)).status is AuthStatus.INVALID


async def test_with_the_cache_disabled_nothing_is_cached(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"AuthorizationCacheEnabled": "false"})
    await rig.registered()
    assert (await rig.adapter.authorize(TAG)).accepted
    assert await rig.storage.cache_get(TAG) is None
    await go_offline(rig)
    assert (await rig.adapter.authorize(TAG)).status is AuthStatus.INVALID


async def test_clear_cache_from_the_csms_empties_the_cache(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.registered()
    await rig.adapter.authorize(TAG)
    result = await rig.csms.call(CP_ID, call.ClearCache())
    assert result.status == "Accepted"
    assert await rig.storage.cache_get(TAG) is None


async def test_an_id_longer_than_ocpp_allows_is_invalid_without_asking(make_rig: MakeRig) -> None:
    rig = await make_rig(keys={"AllowOfflineTxForUnknownId": "true"})
    await rig.registered()
    assert (await rig.adapter.authorize("0123456789ABCDEF01234")).status is AuthStatus.INVALID
    assert authorize_calls(rig) == []


async def test_a_failing_cache_database_stops_neither_authorization_nor_the_link(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig()
    await rig.registered()
    await rig.storage.close()  # every storage call fails from now on
    assert (await rig.adapter.authorize(TAG)).accepted  # the CSMS still answers
    assert (await rig.csms.call(CP_ID, call.ClearCache())).status == "Rejected"
    tx = rig.control.start(1, TAG, 0)
    await until(lambda: tx.csms_id is not None)  # the StartTransaction answer went uncached
    assert rig.adapter.registered
