"""A car waiting for a card: it may already ask for energy, and the reader watches closely.

End to end (`picharge run --sim` on simulated hardware against the loopback CSMS): a car
that closes S2 before any current is offered (IEC 61851-1 state C1, "EV ready, EVSE not
ready") arrives in C straight from A, and must charge after a tap like any other; while a
car waits for a card (Preparing) the PN532 is polled at its fast rate, otherwise slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.local_csms import LocalCsms
from drivers.base import CpState
from drivers.rfid_pn532 import Pn532Reader
from hw_sim.ev import SimEV
from tests.support.csms import ACCEPTED_TAG

CP_ID = "cp-waiting"


class ReadyCar(SimEV):
    """Closes S2 as soon as it is plugged in and wants energy, before any is offered."""

    def cp_state(self, offered_a: float | None) -> CpState:
        if self.plugged and self.requesting and not self.full:
            return CpState.C
        return super().cp_state(offered_a)


@contextlib.asynccontextmanager
async def running(csms: LocalCsms, tmp_path: Path) -> AsyncIterator[ChargePointApp]:
    keys = tmp_path / "keys.toml"
    keys.write_text("HeartbeatInterval = 60\nMeterValueSampleInterval = 0\n")
    config = parse_config({"chargepoint": {"id": CP_ID}, "ocpp": {"url": csms.url}})
    app = ChargePointApp(
        dataclasses.replace(config, state_dir=tmp_path / "state"),
        RunOptions(sim=True, sim_speed=30.0, ocpp_keys=keys),
    )
    await app.start()
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await status(csms, "Available")
        yield app
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            await app.close()


async def status(csms: LocalCsms, status: str, after: int = 0) -> None:
    await csms.wait_for(
        "StatusNotification",
        lambda p: p["connectorId"] == 1 and p["status"] == status,
        after=after,
    )


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polls simulated hardware
            await asyncio.sleep(0.02)


async def act(app: ChargePointApp, action: str, **extra: Any) -> None:
    await app.sim.handle({"action": action, "connector": 1, **extra})


async def test_a_car_already_asking_for_energy_when_plugged_in_charges_after_a_tap(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with running(csms, tmp_path) as app:
        sim = app.sim.connector(1)
        sim.ev = ReadyCar(sim.ev.spec)
        await act(app, "plug")
        await status(csms, "Preparing")
        assert app.sim.cp_state(sim) is CpState.C  # C1: no current offered, S2 closed
        mark = len(csms.received)
        await act(app, "tap", uid=ACCEPTED_TAG)
        await csms.wait_for("StartTransaction", after=mark)
        await status(csms, "Charging", after=mark)
        await until(lambda: sim.contactor.main_contacts_closed and sim.ev.current_a > 1.0)


async def test_the_reader_polls_fast_only_while_a_car_waits_for_a_card(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with running(csms, tmp_path) as app:
        assert app.hardware is not None
        reader = app.hardware.reader
        assert isinstance(reader, Pn532Reader)
        assert not reader.card_expected  # nobody there: the idle rate
        await act(app, "plug")
        await status(csms, "Preparing")
        assert reader.card_expected
        mark = len(csms.received)
        await act(app, "tap", uid=ACCEPTED_TAG)
        await status(csms, "Charging", after=mark)
        assert not reader.card_expected  # a tap now only stops the session: no hurry
        mark = len(csms.received)
        await act(app, "unplug")
        await status(csms, "Available", after=mark)
        assert not reader.card_expected
