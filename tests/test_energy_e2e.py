"""Main fuse protection end to end (issue 16): the whole controller on the simulated house,
the grid meter read over Modbus by the real driver from the simulated meter server (or a
Shelly Pro 3EM over HTTP from the simulated one), the
limit reaching the PWM the car reads, and the safe fallback when the grid meter goes
silent or garbles, then recovery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from controller.limits import LimitSource
from tests.support.standalone import CARD, running
from tests.support.wait import until

SITE = {"fuse_a": 25.0, "margin_a": 1.0, "fallback_current_a": 6.0, "grid_max_age_s": 2.0}
GRID_METER = {"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0}
# A Shelly Pro 3EM on its local HTTP API (the simulator serves it; the host is filled in).
SHELLY = {"source": "shelly", "host": "127.0.0.1", "interval_s": 0.2, "timeout_s": 0.3}
PHASE_W = 230.0  # one ampere on one phase


@pytest.mark.timing  # the PWM must follow a grid reading within a wall-clock bound
@pytest.mark.parametrize("grid_meter", [GRID_METER, SHELLY], ids=["em24-modbus", "shelly-http"])
async def test_the_offer_is_what_the_fuse_leaves_and_falls_back_when_the_grid_meter_fails(
    tmp_path: Path, grid_meter: dict[str, Any]
) -> None:
    async with running(tmp_path, site=SITE, grid_meter=grid_meter) as charger:
        await charger.charging()
        # The house takes nothing: the car may have the fuse less the margin (24 A), more
        # than the 32 A connector's car draws here, so the connector bounds it.
        house = await charger.act("house", load_w=0.0, pv_w=0.0)
        assert house["grid_meter_modbus"]
        await until(lambda: charger.hw("offered_current_a") >= 23.9, what="24 A offered")

        # The oven and the heat pump: 15 A on every phase. 24 - 15 = 9 A for the car.
        changed = time.monotonic()
        await charger.act("house", load_w=3 * 15 * PHASE_W)
        await until(
            lambda: 8.5 < charger.hw("offered_current_a") <= 9.0, what="the PWM offering 9 A"
        )
        # The grid meter is read every 0.2 s; the PWM follows within a second of the change.
        assert time.monotonic() - changed < 1.5
        await until(lambda: charger.hw("ev_current_a") <= 9.0, what="the car following")
        status = (await charger.act("status"))["house"]
        assert max(status["grid_current_a"]) <= 24.0 + 0.1

        # The grid meter goes silent: after grid_max_age_s the connector gets 6 A.
        silent = time.monotonic()
        await charger.act("house", meter_fault="offline", load_w=0.0)
        await until(lambda: 5.9 < charger.hw("offered_current_a") <= 6.0, what="the 6 A fallback")
        assert time.monotonic() - silent < SITE["grid_max_age_s"] + 1.5
        # ... and comes back: the fuse rule steers again (the house now takes nothing).
        await charger.act("house", meter_fault="none")
        await until(lambda: charger.hw("offered_current_a") >= 23.9, what="24 A again")

        # Garbled replies are no readings either.
        await charger.act("house", meter_fault="garbage")
        await until(lambda: charger.hw("offered_current_a") <= 6.0, what="fallback on garbage")
        await charger.act("house", meter_fault="none")
        await until(lambda: charger.hw("offered_current_a") >= 23.9, what="24 A at last")


class LimitLog:
    """Every LOAD_MANAGEMENT limit the fuse manager sets on connector 1, passed on."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.limits: list[float] = []

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        if connector_id == 1 and source is LimitSource.LOAD_MANAGEMENT and current_a is not None:
            self.limits.append(current_a)
        self.sink.set_limit(connector_id, source, current_a)


async def test_the_offer_does_not_dip_while_a_car_ramps_up_under_a_steady_house_load(
    tmp_path: Path,
) -> None:
    """The grid meter (0.2 s) sees the car ramp up before the car's own meter (1 s) does;
    the rise is the car's, not the house's, so the fuse's offer holds while it ramps."""
    async with running(tmp_path, site=SITE, grid_meter=GRID_METER) as charger:
        assert charger.app.energy is not None
        manager = charger.app.energy.manager
        # 12 A on every phase of a steady house: 24 - 12 = 12 A for the car.
        await charger.act("house", load_w=3 * 12 * PHASE_W, pv_w=0.0)
        await until(lambda: manager.limits.get(1) == 12.0, what="12 A left by the house")
        log = LimitLog(manager.sink)
        manager.sink = log
        await charger.act("plug")
        await charger.act("tap", uid=CARD)
        await until(lambda: charger.hw("ev_current_a") >= 11.9, what="the car at 12 A")
        # Two more of the car's meter readings with the car at its full current.
        readings = charger.app.supervisor.connectors[1].reading
        await until(
            lambda: charger.app.supervisor.connectors[1].reading is not readings, what="a reading"
        )
        status = (await charger.act("status"))["house"]
        assert max(status["grid_current_a"]) <= 24.0 + 0.1
        assert min(log.limits, default=12.0) >= 11.5, log.limits
