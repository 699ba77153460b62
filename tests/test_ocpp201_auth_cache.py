"""OCPP 2.0.1 authorization cache (issue 14, block C: C10, C11): AuthCacheCtrlr's LifeTime,
Storage and Policy, and ClearCache; end to end against the bundled CSMS with the controller
on simulated hardware, and the cache's size bound on the version-neutral cache itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from ocpp.v201 import call

from controller.csms.auth import Authorizer
from controller.domain import AuthResult, AuthStatus, utc_now
from controller.local_csms import LocalCsms
from controller.storage import Storage
from tests.support.csms import ACCEPTED_TAG
from tests.support.device_model import QUIET_KEYS, V201, get_variable, set_variable, tx_event
from tests.support.sim_app import AppRig, controller

KEYS = {**QUIET_KEYS, "AuthCtrlr": {"LocalPreAuthorize": True}}  # a cached card starts at once


def authorizes(rig: AppRig) -> int:
    return len(rig.sent("Authorize"))


async def session(rig: AppRig) -> None:
    """Plug in, tap the accepted card, see the transaction start, unplug, see it end."""
    mark = rig.mark()
    await rig.act("plug")
    await rig.act("tap", uid=ACCEPTED_TAG)
    await rig.csms.wait_for("TransactionEvent", tx_event("Started"), after=mark)
    await rig.act("unplug")
    await rig.csms.wait_for("TransactionEvent", tx_event("Ended"), after=mark)
    await rig.status("Available", mark)


async def test_a_cached_card_starts_without_asking_until_clear_cache_forgets_it(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        await session(rig)
        asked_first = authorizes(rig)
        used = int(await get_variable(rig, "AuthCacheCtrlr", "Storage"))
        await session(rig)
        asked_again = authorizes(rig)
        cleared = str((await rig.cp_call(call.ClearCache())).status)
        emptied = await get_variable(rig, "AuthCacheCtrlr", "Storage")
        await session(rig)
        asked_after_clear = authorizes(rig)
        assert await set_variable(rig, "AuthCacheCtrlr", "Enabled", "false") == "Accepted"
        refused = str((await rig.cp_call(call.ClearCache())).status)
        policy = await get_variable(rig, "AuthCacheCtrlr", "Policy")
    assert (asked_first, asked_again, asked_after_clear) == (1, 1, 2)
    assert used > len(ACCEPTED_TAG)
    assert (cleared, emptied) == ("Accepted", "0")
    assert refused == "Rejected"  # C11: the cache is disabled
    assert policy == "LRU"


async def test_a_cache_entry_lapses_after_its_lifetime(csms: LocalCsms, tmp_path: Path) -> None:
    keys = {**KEYS, "AuthCacheCtrlr": {"LifeTime": 1}}
    async with controller(csms, tmp_path, keys, ocpp=V201, base_keys={}) as rig:
        await session(rig)
        confirmed = time.monotonic()
        asked_first = authorizes(rig)
        # the behaviour under test is the passing of LifeTime (1 s) on the wall clock
        await asyncio.sleep(max(0.0, confirmed + 1.2 - time.monotonic()))
        await session(rig)
        asked_after_lifetime = authorizes(rig)
    assert (asked_first, asked_after_lifetime) == (1, 2)


class _Settings:
    """The cache on, no local list, no offline rules: what the bound needs."""

    cache_enabled = True
    local_pre_authorize = False
    local_authorize_offline = True
    allow_offline_unknown = False
    local_list_enabled = False
    local_list_max = 0
    local_list_update_max = 0


async def test_a_full_cache_drops_the_entries_the_csms_confirmed_least_recently(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(tmp_path)
    try:
        authorizer = Authorizer(_Settings(), storage, utc_now, cache_max_bytes=200)
        accepted = AuthResult(AuthStatus.ACCEPTED, "FLEET", utc_now() + dt.timedelta(days=1))
        for card in ("CARD0001", "CARD0002", "CARD0003"):
            await authorizer.remember(card, accepted)
        await authorizer.remember("CARD0001", accepted)  # confirmed again: now the newest
        kept = {
            card: (await storage.cache_get(card)) is not None
            for card in ("CARD0001", "CARD0002", "CARD0003")
        }
        size = authorizer.cache_bytes
        await authorizer.measure_cache()
        measured = authorizer.cache_bytes
    finally:
        await storage.close()
    assert kept == {"CARD0001": True, "CARD0002": False, "CARD0003": True}
    assert 0 < size <= 200
    assert measured == size
