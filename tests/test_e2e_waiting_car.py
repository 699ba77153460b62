"""A car waiting for a card: it may already ask for energy, and the reader watches closely.

End to end (`picharge run --sim` on simulated hardware against the loopback CSMS): a car
that closes S2 before any current is offered (IEC 61851-1 state C1, "EV ready, EVSE not
ready") arrives in C straight from A, and must charge after a tap like any other; while a
car waits for a card (Preparing) the PN532 is polled at its fast rate, otherwise slowly.
"""

from __future__ import annotations

from pathlib import Path

from controller.local_csms import LocalCsms
from drivers.base import CpState
from drivers.rfid_pn532 import Pn532Reader
from hw_sim.ev import SimEV
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import controller
from tests.support.wait import until

CP_ID = "cp-waiting"
KEYS = {"HeartbeatInterval": 60, "MeterValueSampleInterval": 0}


class ReadyCar(SimEV):
    """Closes S2 as soon as it is plugged in and wants energy, before any is offered."""

    def cp_state(self, offered_a: float | None) -> CpState:
        if self.plugged and self.requesting and not self.full:
            return CpState.C
        return super().cp_state(offered_a)


async def test_a_car_already_asking_for_energy_when_plugged_in_charges_after_a_tap(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID) as rig:
        app = rig.app
        sim = app.sim.connector(1)
        sim.ev = ReadyCar(sim.ev.spec)
        await rig.act("plug")
        await rig.status("Preparing")
        assert app.sim.cp_state(sim) is CpState.C  # C1: no current offered, S2 closed
        mark = len(csms.received)
        await rig.act("tap", uid=ACCEPTED_TAG)
        await csms.wait_for("StartTransaction", after=mark)
        await rig.status("Charging", mark)
        await until(lambda: sim.contactor.main_contacts_closed and sim.ev.current_a > 1.0)


async def test_the_reader_polls_fast_only_while_a_car_waits_for_a_card(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with controller(csms, tmp_path, base_keys=KEYS, cp_id=CP_ID) as rig:
        app = rig.app
        assert app.hardware is not None
        reader = app.hardware.reader
        assert isinstance(reader, Pn532Reader)
        assert not reader.card_expected  # nobody there: the idle rate
        await rig.act("plug")
        await rig.status("Preparing")
        assert reader.card_expected
        mark = len(csms.received)
        await rig.act("tap", uid=ACCEPTED_TAG)
        await rig.status("Charging", mark)
        assert not reader.card_expected  # a tap now only stops the session: no hurry
        mark = len(csms.received)
        await rig.act("unplug")
        await rig.status("Available", mark)
        assert not reader.card_expected
