"""The home user's current limit holds across a restart: a limit set on the page is a
promise to the house's wiring that a power cut or an update must not lift."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.limits import LimitSource
from controller.storage import Storage
from controller.user_limits import NAMESPACE
from tests.support.web import web_charger


async def stored(storage: Storage) -> dict[str, str]:
    """The stored user limits once the listener has written what it heard."""
    for _ in range(100):  # the listener writes on its own task: a few loop turns
        found = await storage.load_settings(NAMESPACE)
        if found:
            return found
        await asyncio.sleep(0.05)
    return {}


async def test_the_users_limit_is_set_again_after_a_restart_until_it_is_cleared(
    tmp_path: Path,
) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/limit", {"current_a": 10})
        assert status == 200
        assert await stored(rig.charger.app.storage) == {"1": "10.0"}

    async with web_charger(tmp_path) as rig:
        snapshot = rig.charger.supervisor.snapshot()
        assert snapshot.connector(1).limits == ((LimitSource.USER, 10.0),)
        await rig.login()
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/limit", {"current_a": None})
        assert status == 200
        for _ in range(100):
            if not await rig.charger.app.storage.load_settings(NAMESPACE):
                break
            await asyncio.sleep(0.05)

    async with web_charger(tmp_path) as rig:
        assert rig.charger.supervisor.snapshot().connector(1).limits == ()


async def test_a_stored_limit_for_a_connector_that_is_gone_is_dropped(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.charger.app.storage.save_setting(NAMESPACE, "7", "10.0")
    async with web_charger(tmp_path) as rig:
        assert rig.charger.supervisor.snapshot().connector(1).limits == ()
        assert await rig.charger.app.storage.load_settings(NAMESPACE) == {}
