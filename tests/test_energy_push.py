"""Grid readings pushed through the local API (``[grid_meter] source = "push"``): what a Home
Assistant automation or a smart-meter reader sends instead of a meter the charger polls.
A pushed reading sets the offer like a polled one, and a bridge that falls silent is judged
stale like a meter: the connectors fall back to the safe current."""

from __future__ import annotations

from pathlib import Path

from controller.limits import LimitSource
from tests.support.wait import until
from tests.support.web import WebRig, web_charger

SITE = {"fuse_a": 25.0, "margin_a": 1.0, "fallback_current_a": 6.0, "grid_max_age_s": 2.0}
PUSHED = {"source": "push"}


def fuse_limit(rig: WebRig) -> float | None:
    return dict(rig.charger.supervisor.snapshot().connector(1).limits).get(
        LimitSource.LOAD_MANAGEMENT
    )


async def test_a_pushed_reading_sets_the_offer_and_silence_falls_back(tmp_path: Path) -> None:
    async with web_charger(tmp_path, site=SITE, grid_meter=PUSHED) as rig:
        await rig.login()
        status, body = await rig.call("PUT", "/api/v1/grid", {"current_a": [5.0, 5.0, 5.0]})
        assert status == 200 and body["current_a"] == [5.0, 5.0, 5.0]
        # 25 A fuse less 1 A margin less the house's 5 A: 19 A left for the car
        await until(lambda: fuse_limit(rig) == 19.0, what="the offer from the pushed reading")
        await rig.call("PUT", "/api/v1/grid", {"current_a": [20.0, 12.0, 12.0]})
        await until(lambda: fuse_limit(rig) == 4.0, what="the offer after the house grew")
        # the bridge falls silent: after grid_max_age_s the safe fallback
        await until(lambda: fuse_limit(rig) == 6.0, timeout_s=10, what="the fallback")


async def test_a_bad_or_unwanted_push_is_refused(tmp_path: Path) -> None:
    async with web_charger(tmp_path, site=SITE, grid_meter=PUSHED) as rig:
        await rig.login()
        for bad in ([1, 2, 3, 4], ["x"], [float("inf")], 7, [True, 1, 1], [5000, 0, 0]):
            status, body = await rig.call("PUT", "/api/v1/grid", {"current_a": bad})
            assert status == 400, (bad, body)
    async with web_charger(tmp_path / "polled") as rig:  # no pushed grid meter here
        await rig.login()
        status, _ = await rig.call("PUT", "/api/v1/grid", {"current_a": [1.0, 1.0, 1.0]})
        assert status == 409
