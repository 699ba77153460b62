"""1/3-phase switching end to end (issue 16): the whole controller on the simulated house.

The grid meter is read over Modbus by the real driver; the phase contactor is the real
GpioContactor driver on MockFactory pins whose contacts the simulated car follows (on one
phase it draws on L1 alone). A watcher on the simulated phase contactor's contacts checks,
at the very moment they move, that the main contacts are open and no current flows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from controller.connector_types import ConnectorStatus
from controller.mqtt.state import EnergyFloor, connector_state
from controller.web.status import status_json
from drivers.errors import FaultKind
from tests.support.energy import QUICK_SOLAR
from tests.support.standalone import CARD, Charger, running
from tests.support.wait import until

SITE = {"fuse_a": 25.0, "margin_a": 1.0, "fallback_current_a": 6.0, "grid_max_age_s": 2.0}
GRID_METER = {"model": "em24", "interval_s": 0.2, "timeout_s": 0.3, "retries": 0}
MIN_INTERVAL_S = 5.0
PHASE_SWITCH = {
    "connector": 1,
    "contactor_pin": 5,
    "feedback_pin": 6,
    "min_interval_s": MIN_INTERVAL_S,
    "feedback_timeout_s": 1.0,
}
PHASE_W = 230.0  # one ampere on one phase


@dataclass
class ContactWatch:
    """Each movement of the phase contactor's contacts, and what flowed at that moment."""

    moves: list[tuple[float, bool]] = field(default_factory=list)
    under_load: list[str] = field(default_factory=list)

    def attach(self, charger: Charger) -> None:
        sim = charger.app.sim.connector(1)
        assert sim.phase_contactor is not None

        def moved(closed: bool) -> None:
            self.moves.append((time.monotonic(), closed))
            if sim.contactor.main_contacts_closed or sim.ev.current_a > 0.0:
                self.under_load.append(
                    f"phase contacts {'closed' if closed else 'opened'} with the main contacts "
                    f"{'closed' if sim.contactor.main_contacts_closed else 'open'}, "
                    f"{sim.ev.current_a:.1f} A flowing"
                )

        sim.phase_contactor.add_listener(moved)


def shown_phases(charger: Charger) -> tuple[int, int, str]:
    """The phases connector 1 supplies as the status snapshot, the API's status and its
    MQTT state topic show them."""
    snapshot = charger.supervisor.snapshot().connector(1)
    api = status_json(charger.supervisor, lambda _: None)["connectors"][0]
    mqtt = connector_state(snapshot, meter_start_wh=None, max_current_a=32.0, floor=EnergyFloor())
    return snapshot.phases, api["phases"], mqtt["phases"].payload


@contextlib.asynccontextmanager
async def on_three_phases(tmp_path: Path) -> AsyncIterator[Charger]:
    """The controller with a phase switch, the house taking nothing: at start the phase
    contactor pulls in at once (nothing flows, every phase has room)."""
    async with running(
        tmp_path, site=SITE, grid_meter=GRID_METER, phase_switch=PHASE_SWITCH
    ) as charger:
        await charger.act("house", load_w=0.0, pv_w=0.0)
        await until(lambda: charger.hw("phases_supplied") == 3, what="three phases at start")
        yield charger


async def test_the_car_goes_to_one_phase_when_only_one_has_room_and_back_when_all_do(
    tmp_path: Path,
) -> None:
    async with on_three_phases(tmp_path) as charger:
        watch = ContactWatch()
        watch.attach(charger)
        await charger.charging()
        await until(lambda: min(charger.hw("ev_phase_currents_a")) > 15.0, what="16 A x 3")

        # An oven on L2 and L3 (20 A each): 24 - 20 = 4 A is no offer on three phases, but
        # L1 still has 24 A. The car is paused, the phase contactor drops, the car resumes.
        await charger.act("house", phase_load_w=[0.0, 20 * PHASE_W, 20 * PHASE_W])
        await until(lambda: charger.hw("phases_supplied") == 1, what="one phase")
        await until(
            lambda: (
                charger.status() is ConnectorStatus.CHARGING
                and charger.hw("ev_phase_currents_a")[0] > 15.0
            ),
            what="charging on L1 again",
        )
        assert charger.hw("ev_phase_currents_a")[1:] == [0.0, 0.0]
        assert shown_phases(charger) == (1, 1, "1")
        house = (await charger.act("status"))["house"]
        assert max(house["grid_current_a"]) <= 24.0 + 0.1

        # The oven is off: three phases have room again, and after the minimum interval
        # the car is back on three.
        await charger.act("house", phase_load_w=[0.0, 0.0, 0.0])
        # (the minimum interval plus the wait for "enough for longer than it": 30 s is room)
        await until(lambda: charger.hw("phases_supplied") == 3, 30.0, what="three phases again")
        await until(
            lambda: min(charger.hw("ev_phase_currents_a")) > 15.0, what="16 A on three phases"
        )
        assert shown_phases(charger) == (3, 3, "3")
        assert watch.under_load == []
        assert [closed for _, closed in watch.moves] == [False, True]
        assert watch.moves[1][0] - watch.moves[0][0] >= MIN_INTERVAL_S
        assert charger.supervisor.view(1).fault is None
        assert len(charger.transactions()) == 1  # one session throughout, paused twice


async def test_a_welded_phase_contactor_faults_the_connector_and_keeps_the_main_one_open(
    tmp_path: Path,
) -> None:
    async with on_three_phases(tmp_path) as charger:
        await charger.charging()
        await charger.act("fault", fault="phase-weld")
        await charger.act("house", phase_load_w=[0.0, 20 * PHASE_W, 20 * PHASE_W])
        await until(lambda: charger.status() is ConnectorStatus.FAULTED, what="Faulted")
        assert charger.fault() is FaultKind.CONTACTOR_WELDED  # PowerSwitchFailure
        assert charger.hw("contactor_closed") is False
        assert charger.hw("ev_current_a") == 0.0
        assert charger.hw("phases_supplied") == 3  # the weld holds L2 and L3


async def test_solar_charges_on_one_phase_when_the_surplus_covers_6_a_on_one_but_not_three(
    tmp_path: Path,
) -> None:
    async with running(
        tmp_path, site=SITE, grid_meter=GRID_METER, phase_switch=PHASE_SWITCH, energy=QUICK_SOLAR
    ) as charger:
        watch = ContactWatch()
        watch.attach(charger)
        await charger.act("house", load_w=0.0, pv_w=0.0)
        await charger.act("plug")
        await charger.act("tap", uid=CARD)
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EVSE, what="paused")

        # 3 A exported on each phase: 9 A in all, 3 A a phase on three (no start), 9 A on
        # one. The fuse alone would keep three phases (24 A of room on each); the surplus
        # asks for one, and the car charges on L1 from the sun.
        await charger.act("house", pv_w=3 * 3 * PHASE_W)
        await until(
            lambda: (
                charger.status() is ConnectorStatus.CHARGING
                and charger.hw("ev_phase_currents_a")[0] > 8.0
            ),
            what="charging on L1 from the surplus",
        )
        assert charger.hw("phases_supplied") == 1
        assert charger.hw("ev_phase_currents_a")[1:] == [0.0, 0.0]

        # 10 A a phase: enough on three. After the minimum interval the car is on three.
        await charger.act("house", pv_w=3 * 10 * PHASE_W)
        await until(lambda: charger.hw("phases_supplied") == 3, 30.0, what="three phases")
        await until(
            lambda: min(charger.hw("ev_phase_currents_a")) > 8.5, what="the surplus on three"
        )
        assert watch.under_load == []
        assert charger.supervisor.view(1).fault is None
        assert len(charger.transactions()) == 1
