"""The simulated charger, driven through the same drivers a Pi uses.

Each test starts the whole simulation (pymodbus meter, MockFactory pins, SMBus ADS1115, pty
reader, fake sysfs) through the `--sim` composition root and checks what the drivers see,
including every fault the simulator can inject.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controller.config import parse_config
from controller.hardware import ConnectorHardware, Hardware
from controller.sim_root import SimCharger
from drivers.base import CpReading, CpState, DriverEvent, MeterReading
from drivers.errors import FaultKind, PermanentFault
from tests.support.sim_hardware import simulated_hardware
from tests.support.wait import until

SPEED = 60.0


@dataclass
class Rig:
    sim: SimCharger
    hardware: Hardware
    events: list[DriverEvent]
    cp: dict[int, CpState | None] = field(default_factory=dict)
    cards: list[str] = field(default_factory=list)

    @property
    def c1(self) -> ConnectorHardware:
        return self.hardware.connectors[0]

    async def act(self, action: str, **extra: Any) -> dict[str, Any]:
        return await self.sim.handle({"action": action, "connector": 1, **extra})


@contextlib.asynccontextmanager
async def start(
    state_dir: Path, doc: dict[str, Any] | None = None, connectors: int = 1
) -> AsyncIterator[Rig]:
    events: list[DriverEvent] = []
    async with simulated_hardware(
        parse_config(doc or {}),
        state_dir,
        connectors=connectors,
        speed=SPEED,
        on_event=events.append,
    ) as (sim, hardware, _):
        rig = Rig(sim, hardware, events)
        tasks = []
        for c in hardware.connectors:
            c.pilot.generator.offer_current(0)

            def on_state(reading: CpReading, cid: int = c.id) -> None:
                rig.cp[cid] = reading.state

            tasks.append(asyncio.create_task(c.pilot.sensor.run(on_state, events.append)))
        assert hardware.reader is not None
        tasks.append(asyncio.create_task(hardware.reader.run(rig.cards.append, events.append)))
        try:
            await until(lambda: all(rig.cp.get(c.id) is CpState.A for c in hardware.connectors))
            yield rig
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with start(tmp_path) as r:
        yield r


async def charge(rig: Rig, offer_a: float = 16.0) -> None:
    await rig.act("plug")
    await until(lambda: rig.cp[1] is CpState.B)
    rig.c1.pilot.generator.offer_current(offer_a)
    await until(lambda: rig.cp[1] is CpState.C)
    await rig.c1.contactor.close()


async def test_plugging_in_the_car_is_seen_by_the_cp_and_pp_drivers(rig: Rig) -> None:
    await rig.act("plug")
    await until(lambda: rig.cp[1] is CpState.B)
    assert await rig.c1.pilot.proximity.read_cable_rating_a() == 32
    await rig.act("unplug")
    await until(lambda: rig.cp[1] is CpState.A)
    assert await rig.c1.pilot.proximity.read_cable_rating_a() is None


async def test_car_asks_for_energy_only_when_the_pwm_offers_current(rig: Rig) -> None:
    await rig.act("plug")
    await until(lambda: rig.cp[1] is CpState.B)
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s (x60: 12 s of EV time)
    # is a wide margin on a loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert rig.cp[1] is CpState.B  # x1: nothing offered, the car waits
    rig.c1.pilot.generator.offer_current(16.0)
    await until(lambda: rig.cp[1] is CpState.C)


async def test_car_draws_current_only_through_the_closed_contactor(rig: Rig) -> None:
    await rig.act("plug")
    rig.c1.pilot.generator.offer_current(16.0)
    await until(lambda: rig.cp[1] is CpState.C)
    # nothing may happen here; the charger acts within tens of ms, so 0.3 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.3)
    assert (await rig.c1.meter.read()).total_power_w == 0.0
    await rig.c1.contactor.close()
    await until(lambda: rig.sim.connector(1).ev.current_a > 15.9)

    async def drawn() -> MeterReading | None:
        reading = await rig.c1.meter.read()
        return reading if reading.current_a == pytest.approx((16.0,) * 3, abs=0.05) else None

    reading = await until(drawn, what="the meter to read the car's 16 A")
    assert reading is not None
    assert reading.current_a == pytest.approx((16.0, 16.0, 16.0), abs=0.05)
    assert reading.total_power_w == pytest.approx(3 * 16.0 * 230.0, rel=0.01)


async def test_car_follows_a_lower_offer(rig: Rig) -> None:
    await charge(rig, 16.0)
    rig.c1.pilot.generator.offer_current(10.0)
    await until(lambda: rig.sim.connector(1).ev.current_a == pytest.approx(10.0, abs=0.05))
    status = (await rig.act("status"))["connectors"][0]
    assert status["offered_current_a"] == pytest.approx(10.0, abs=0.1)


async def test_car_pausing_is_state_b_and_it_stops_drawing(rig: Rig) -> None:
    await charge(rig)
    await rig.act("pause")
    await until(lambda: rig.cp[1] is CpState.B)
    await until(lambda: rig.sim.connector(1).ev.current_a == 0.0)


async def test_meter_energy_integrates_the_cars_power(rig: Rig) -> None:
    await charge(rig, 16.0)
    before = (await rig.c1.meter.read()).energy_import_wh
    # energy over one wall-clock second is what is measured
    await asyncio.sleep(1.0)
    after = (await rig.c1.meter.read()).energy_import_wh
    # about 11 kW for one wall-clock second at x60: ~184 Wh (ramp and timing make it looser)
    assert 120.0 < after - before < 230.0


async def test_meter_keeps_counting_across_a_controller_restart(tmp_path: Path) -> None:
    async with start(tmp_path) as rig:
        await charge(rig)
        await until(lambda: rig.sim.connector(1).meter.energy_wh > 0)
        rig.c1.contactor.open()
        await until(lambda: rig.sim.connector(1).ev.current_a == 0.0, what="the current to stop")
        counted = rig.sim.connector(1).meter.energy_wh
        assert counted > 0
        await rig.act("unplug")  # else the car is still plugged in after the restart
    async with start(tmp_path) as rig:
        reading = await rig.c1.meter.read()
        assert reading.energy_import_wh == pytest.approx(counted, abs=1.0)


async def test_rcd_fault_reaches_the_rcm_input_and_clears(rig: Rig) -> None:
    seen: list[bool] = []
    rig.c1.rcm.watch(seen.append)
    await rig.act("fault", fault="rcd")
    await until(lambda: seen[-1:] == [True])
    assert rig.c1.rcm.tripped
    await rig.act("fault", fault="clear")
    await until(lambda: seen[-1:] == [False])


async def test_rcm_self_test_passes_on_the_simulated_module(rig: Rig) -> None:
    await rig.c1.rcm.self_test()


async def test_welded_contactor_is_detected_after_opening(rig: Rig) -> None:
    await charge(rig)
    await rig.act("fault", fault="weld")
    rig.c1.contactor.open()
    with pytest.raises(PermanentFault) as caught:
        await rig.c1.contactor.verify_open()
    assert caught.value.kind is FaultKind.CONTACTOR_WELDED
    # the welded contacts keep the car powered: the simulation shows it
    assert (await rig.act("status"))["connectors"][0]["contactor_closed"] is True


async def test_meter_offline_fault_raises_meter_offline_and_recovers(rig: Rig) -> None:
    await rig.act("fault", fault="meter")
    with pytest.raises(PermanentFault) as caught:
        await rig.c1.meter.read()
    assert caught.value.kind is FaultKind.METER_OFFLINE
    assert any(e.kind == "offline" and e.fault is FaultKind.METER_OFFLINE for e in rig.events)
    await rig.act("fault", fault="clear")
    await rig.c1.meter.read()
    assert any(e.device == "meter" and e.kind == "online" for e in rig.events)


async def test_meter_answering_garbage_is_retried_not_believed(rig: Rig) -> None:
    await rig.act("fault", fault="meter-garbage")
    with pytest.raises(PermanentFault):
        await rig.c1.meter.read()
    retries = [e for e in rig.events if e.device == "meter" and e.kind == "retry"]
    assert retries, "each garbage answer is an event"
    await rig.act("fault", fault="clear")
    assert (await rig.c1.meter.read()).frequency_hz == pytest.approx(50.0)


async def test_cp_short_is_state_e_with_a_cp_error(rig: Rig) -> None:
    await charge(rig)
    await rig.act("fault", fault="cp")
    await until(lambda: rig.cp[1] is CpState.E)
    assert any(e.fault is FaultKind.CP_ERROR for e in rig.events)
    await rig.act("fault", fault="clear")
    await until(lambda: rig.cp[1] is CpState.C)


async def test_diode_fault_is_reported_while_pwm_runs(rig: Rig) -> None:
    await charge(rig)
    await rig.act("fault", fault="diode")
    await until(lambda: any(e.fault is FaultKind.DIODE_FAULT for e in rig.events))


async def test_overtemperature_fault_heats_the_socket_sensor(rig: Rig) -> None:
    assert rig.c1.thermometer is not None
    assert await rig.c1.thermometer.read_c() == pytest.approx(25.0)
    await rig.act("fault", fault="overtemp")
    assert await rig.c1.thermometer.read_c() > 80.0


async def test_card_tap_reaches_the_pn532_driver_once(rig: Rig) -> None:
    await rig.act("tap", uid="04a1b2c3d4e5f6")
    await until(lambda: rig.cards == ["04A1B2C3D4E5F6"])
    # nothing may happen here; the charger acts within tens of ms, so 0.8 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.8)
    assert rig.cards == ["04A1B2C3D4E5F6"]


@pytest.mark.parametrize(("reader", "uid"), [("rdm6300", "1A2B3C4D5E"), ("pn532_i2c", "DEADBEEF")])
async def test_other_simulated_readers_deliver_taps(tmp_path: Path, reader: str, uid: str) -> None:
    async with start(tmp_path, {"rfid": {"type": reader}}) as rig:
        await rig.act("tap", uid=uid)
        await until(lambda: rig.cards == [uid])


async def test_tap_with_a_uid_the_reader_cannot_frame_is_refused(rig: Rig) -> None:
    with pytest.raises(ValueError, match="4, 7 or 10"):
        await rig.act("tap", uid="0102")
    with pytest.raises(ValueError, match="hex"):
        await rig.act("tap", uid="zz")


async def test_meter_can_be_served_over_rtu_on_a_pty(tmp_path: Path) -> None:
    async with start(tmp_path, {"meter": {"transport": "rtu"}}) as rig:
        assert (await rig.c1.meter.read()).frequency_hz == pytest.approx(50.0)


async def test_two_connectors_are_independent(tmp_path: Path) -> None:
    async with start(tmp_path, connectors=2) as rig:
        c2 = rig.hardware.connector(2)
        await rig.sim.handle({"action": "plug", "connector": 2})
        await until(lambda: rig.cp[2] is CpState.B)
        assert rig.cp[1] is CpState.A
        c2.pilot.generator.offer_current(16.0)
        await until(lambda: rig.cp[2] is CpState.C)
        await c2.contactor.close()
        await until(lambda: rig.sim.connector(2).ev.current_a > 15.0)
        assert rig.sim.connector(1).ev.current_a == 0.0
        status = await rig.sim.handle({"action": "status"})
        assert [c["id"] for c in status["connectors"]] == [1, 2]


async def test_unknown_connector_or_fault_is_a_clear_error(rig: Rig) -> None:
    with pytest.raises(LookupError, match="no connector 3"):
        await rig.sim.handle({"action": "plug", "connector": 3})
    with pytest.raises(ValueError, match="unknown fault"):
        await rig.act("fault", fault="flood")
