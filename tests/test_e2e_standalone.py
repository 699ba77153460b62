"""The charger on its own (no CSMS), on simulated hardware through the real drivers.

Each test runs the whole controller — supervisor, connector state machine, drivers — as
`picharge run --sim` does, drives the simulated car and devices, and checks what a user of
a home charger would see: the contactor, the car's current, the connector's status.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.connector_types import ConnectorStatus, StopReason
from controller.domain import Answer
from drivers.base import CpState
from drivers.errors import FaultKind
from hw_sim.ev import EvSpec, SimEV
from tests.support.standalone import CARD, Charger, running
from tests.support.wait import until


@pytest.fixture
async def charger(tmp_path: Path) -> AsyncIterator[Charger]:
    async with running(tmp_path) as c:
        yield c


async def test_card_from_the_local_list_starts_charging(charger: Charger) -> None:
    await charger.charging()
    assert charger.hw("contactor_closed") is True
    assert charger.hw("offered_current_a") == pytest.approx(32.0, abs=0.5)
    [tx] = charger.transactions()
    assert tx.id_tag == CARD and tx.running


async def test_card_tapped_before_the_car_arrives_starts_when_it_plugs_in(
    charger: Charger,
) -> None:
    await charger.act("tap", uid=CARD)
    await until(lambda: charger.status() is ConnectorStatus.PREPARING, what="the card accepted")
    await charger.act("plug")
    await until(lambda: charger.status() is ConnectorStatus.CHARGING)


async def test_unknown_card_does_not_charge(charger: Charger) -> None:
    await charger.act("plug")
    await charger.act("tap", uid="DEADBEEF")
    # nothing may happen here; the charger acts within tens of ms, so 1 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(1.0)
    assert charger.status() is ConnectorStatus.PREPARING
    assert charger.hw("contactor_closed") is False
    assert charger.transactions() == []


async def test_free_charging_needs_no_card(tmp_path: Path) -> None:
    async with running(tmp_path, authorization={"free_charging_id": "FREE"}) as charger:
        await charger.act("plug")
        await until(lambda: charger.status() is ConnectorStatus.CHARGING)
        assert charger.transactions()[0].id_tag == "FREE"


async def test_contactor_opens_when_ev_stops_requesting(charger: Charger) -> None:
    await charger.charging()
    await charger.act("pause")
    await until(lambda: charger.hw("contactor_closed") is False, 1.0)
    await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EV)
    await charger.act("charge")
    await until(lambda: charger.status() is ConnectorStatus.CHARGING)
    await until(lambda: charger.hw("contactor_closed") is True, 1.0)


async def test_unplugging_ends_the_session_with_the_meter_energy(charger: Charger) -> None:
    await charger.charging()
    [started] = charger.transactions()
    await until(  # the controller's own meter reading, which the session's end records
        lambda: (
            (reading := charger.supervisor.view(1).reading) is not None
            and reading.energy_import_wh >= started.meter_start_wh + 1.0
        )
    )
    await charger.act("unplug")
    await until(lambda: charger.status() is ConnectorStatus.AVAILABLE)
    [tx] = charger.transactions()
    assert tx.stop_reason is StopReason.EV_DISCONNECTED
    assert tx.meter_stop_wh is not None and tx.meter_stop_wh > tx.meter_start_wh
    assert charger.hw("contactor_closed") is False


async def test_same_card_again_stops_the_session(charger: Charger) -> None:
    await charger.charging()
    await asyncio.sleep(1.5)  # the reader collapses repeats of one presentation
    await charger.act("tap", uid=CARD)
    await until(lambda: charger.status() is ConnectorStatus.FINISHING)
    assert charger.transactions()[0].stop_reason is StopReason.LOCAL
    assert charger.hw("contactor_closed") is False


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("rcd", FaultKind.RCD_TRIP),
        ("meter", FaultKind.METER_OFFLINE),
        ("cp", FaultKind.CP_ERROR),
        ("diode", FaultKind.DIODE_FAULT),
        ("overtemp", FaultKind.OVERTEMPERATURE),
    ],
)
async def test_fault_opens_the_contactor_and_clearing_it_recovers(
    tmp_path: Path, fault: str, kind: FaultKind
) -> None:
    async with running(tmp_path) as charger:
        for rt in charger.supervisor.connectors.values():
            rt.overtemp_c = 60.0
        charger.supervisor.diode_retry_s = 2.0
        await charger.charging()
        await charger.act("fault", fault=fault)
        timeout = {"overtemp": 15.0, "meter": 10.0}.get(fault, 5.0)
        await until(lambda: charger.status() is ConnectorStatus.FAULTED, timeout)
        assert charger.fault() is kind
        await until(lambda: charger.hw("contactor_closed") is False, 1.0)
        await charger.act("fault", fault="clear")
        await until(lambda: charger.status() is ConnectorStatus.CHARGING, 20.0)
        await until(lambda: charger.hw("contactor_closed") is True, 1.0)


async def test_welded_contactor_latches_a_fault(charger: Charger) -> None:
    await charger.charging()
    await charger.act("fault", fault="weld")
    await charger.act("pause")
    await until(lambda: charger.fault() is FaultKind.CONTACTOR_WELDED)
    await charger.act("fault", fault="clear")
    # the weld stays latched after the clear: nothing may happen here; the charger acts within tens
    # of ms, so 0.5 s is a wide margin on a loaded machine, and a late wake-up only widens the
    # window
    await asyncio.sleep(0.5)
    assert charger.fault() is FaultKind.CONTACTOR_WELDED


async def test_limit_of_zero_suspends_and_a_higher_limit_resumes(charger: Charger) -> None:
    await charger.charging()
    charger.supervisor.set_current_limit(1, 0.0)
    await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE)
    await until(lambda: charger.hw("ev_current_a") == 0.0)
    charger.supervisor.set_current_limit(1, 10.0)
    await until(lambda: charger.status() is ConnectorStatus.CHARGING)
    await until(lambda: charger.hw("ev_current_a") == pytest.approx(10.0, abs=0.1))


async def test_availability_change_during_a_session_is_scheduled(charger: Charger) -> None:
    await charger.charging()
    assert await charger.supervisor.change_availability(1, False) is Answer.SCHEDULED
    assert charger.status() is ConnectorStatus.CHARGING
    await charger.act("unplug")
    await until(lambda: charger.status() is ConnectorStatus.UNAVAILABLE)


async def test_shutdown_stops_the_session_and_opens_the_contactor(tmp_path: Path) -> None:
    async with running(tmp_path) as charger:
        await charger.charging()
        transactions = charger.transactions()
    assert transactions[0].stop_reason is StopReason.REBOOT


async def test_car_already_in_c_with_a_shorted_diode_never_gets_mains(charger: Charger) -> None:
    """A car that closes S2 before any current is offered (IEC C1) shows C from the start:
    the PWM alone must not close the contactor; its diode is checked first."""
    energized: list[bool] = []
    sim_connector = charger.app.sim.connector(1)
    sim_connector.contactor.add_coil_listener(energized.append)
    sim_connector.ev = SimEV(EvSpec(closes_s2_early=True))
    await charger.act("fault", fault="diode")
    await charger.act("charge")
    await until(lambda: charger.supervisor.connectors[1].machine.cp_state is CpState.C)
    await charger.act("tap", uid=CARD)
    await until(lambda: charger.fault() is FaultKind.DIODE_FAULT)
    # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.2)
    assert True not in energized
    assert charger.hw("contactor_closed") is False


async def test_car_already_in_c_with_a_good_diode_charges_at_once(charger: Charger) -> None:
    sim_connector = charger.app.sim.connector(1)
    sim_connector.ev = SimEV(EvSpec(closes_s2_early=True))
    await charger.act("charge")
    await until(lambda: charger.supervisor.connectors[1].machine.cp_state is CpState.C)
    await charger.act("tap", uid=CARD)
    await until(lambda: charger.status() is ConnectorStatus.CHARGING)
    # The status follows the machine's command; the coil follows once the session is on disk
    # and the RCM self-test begun as the car arrived has passed: "at once" is well within a
    # second, against the 30 s a car with an unchecked diode would wait (DIODE_RETRY_S).
    await until(lambda: charger.hw("contactor_closed") is True, 1.0)
