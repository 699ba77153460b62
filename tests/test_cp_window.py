"""A window comparator on the CP drops the coil on a GPIO edge (issue 12, drivers/cp_window.py).

The whole controller runs on simulated hardware with ``cp_window_pin`` configured: the
simulator drives that pin from the same CP level that feeds its ADS1115, on the thread that
changes the line. While the contactor may be closed, the comparator's activating edge trips
the contactor's interlock there and then; the ADS1115 sampler stays the authority on the
car's state. Holding AIN0 at its last level ("the ADC has not looked yet") shows what the
comparator does on its own: the coil drops with the loop held, and since the sampler never
agrees, the connector reports a ``cp_mismatch`` fault (EVCommunicationError on OCPP 1.6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from controller.connector_types import ConnectorStatus
from controller.local_csms import LocalCsms
from drivers.cp_window import (
    CONFIRM_SAMPLES,
    CpWindowConfig,
    GpioCpWindow,
    Verdict,
    WindowGuard,
)
from drivers.errors import FaultKind
from drivers.interlock import Interlock
from hw_sim.charger import SimConnector
from tests.support.cli_sim import picharge
from tests.support.hazards import INJECTOR, CoilClock, hold_loop_and
from tests.support.sim_app import controller
from tests.support.standalone import running
from tests.support.wait import until

#: A GPIO the simulated connector 1 leaves free (the design's defaults and its lock use others).
WINDOW_PIN = 5
WINDOW = {"connector": [{"cp_window_pin": WINDOW_PIN}]}
#: IEC 61851-1 gives the whole chain (controller and contactor) 100 ms.
BOUND_S = 0.1
#: What the interlock logs for a trip of the comparator (drivers/cp_window.py).
WINDOW_TRIP = "CP window comparator"


def cp_short(sim: SimConnector) -> None:
    sim.cp_short = True


HAZARDS = [
    pytest.param(lambda sim: sim.ev.pause(), id="EV C -> B"),
    pytest.param(cp_short, id="CP short (E)"),
]


def freeze_adc(sim: SimConnector) -> None:
    """AIN0 (the positive peak) keeps reading what it reads now: the sampler cannot see a
    change, only the comparator can."""
    sim.adc.hold_input(0, sim.adc.input_now(0))


def window_trips(caplog: pytest.LogCaptureFixture) -> int:
    return sum(WINDOW_TRIP in r.getMessage() for r in caplog.records)


@pytest.fixture(autouse=True)
def _interlock_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.interlock")


async def conversions_later(sim: SimConnector, count: int) -> None:
    """Until the sampler has made ``count`` more conversions (time for it to act)."""
    start = sim.adc.conversions
    await until(lambda: sim.adc.conversions >= start + count, what=f"{count} conversions")


@pytest.mark.timing  # a bound on wall-clock time: run alone, not beside other tests
@pytest.mark.parametrize("inject", HAZARDS)
async def test_the_comparator_drops_the_coil_with_the_loop_held_before_the_adc_has_looked(
    tmp_path: Path, inject: Callable[[SimConnector], None]
) -> None:
    async with running(tmp_path / "state", **WINDOW) as charger:
        await charger.charging()
        sim: SimConnector = charger.app.sim.connector(1)
        clock = CoilClock(sim)
        freeze_adc(sim)
        stamps = hold_loop_and(lambda: inject(sim))
        await asyncio.sleep(0)  # the hold runs here
        assert clock.dropped_at is not None, "the coil was still energized when the loop came back"
        assert clock.dropped_at < stamps["released"], "the coil dropped only after the loop"
        assert clock.dropped_on == INJECTOR, "not dropped on the comparator's edge"
        assert clock.dropped_at - stamps["injected"] < BOUND_S
        # The sampler never agreed (its input is frozen at C): the two measurements of the
        # CP disagree, which the connector reports; the contactor stays open.
        await until(lambda: charger.fault() is FaultKind.CP_MISMATCH, what="a cp_mismatch fault")
        assert charger.status() is ConnectorStatus.FAULTED
        assert not charger.hw("coil_energized")
        # Unplugging ends it, as for the other faults that belong to what is plugged in.
        sim.adc.hold_input(0, None)
        await charger.act("fault", fault="clear")
        await charger.act("unplug")
        await until(lambda: charger.status() is ConnectorStatus.AVAILABLE, what="Available")
        assert charger.fault() is None


@pytest.mark.parametrize(
    ("inject", "status", "fault"),
    [
        pytest.param(lambda sim: sim.ev.pause(), ConnectorStatus.SUSPENDED_EV, None, id="C -> B"),
        pytest.param(cp_short, ConnectorStatus.FAULTED, FaultKind.CP_ERROR, id="CP short"),
    ],
)
async def test_a_trip_the_adc_confirms_is_reported_as_the_adc_sees_it(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    inject: Callable[[SimConnector], None],
    status: ConnectorStatus,
    fault: FaultKind | None,
) -> None:
    async with running(tmp_path / "state", **WINDOW) as charger:
        await charger.charging()
        sim: SimConnector = charger.app.sim.connector(1)
        assert window_trips(caplog) == 0
        inject(sim)
        assert not charger.hw("coil_energized")  # dropped on this thread, before returning
        assert window_trips(caplog) == 1
        await until(lambda: charger.status() is status, what=str(status))
        assert charger.fault() is fault  # never cp_mismatch: the sampler agreed


async def test_the_comparator_is_not_armed_while_the_contactor_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Idle (A) and plugged in (B) the line is active all the time: no trip. Closing for a
    session arms it with the line inactive (C): no trip either."""
    async with running(tmp_path / "state", **WINDOW) as charger:
        sim: SimConnector = charger.app.sim.connector(1)
        window = charger.supervisor.connectors[1].hw.pilot.window
        assert window is not None and window.active  # state A: outside C/D
        await conversions_later(sim, 5)
        await charger.act("plug")
        await until(lambda: charger.status() is ConnectorStatus.PREPARING, what="Preparing")
        await conversions_later(sim, 5)
        assert window.active  # state B
        await charger.charging()
        assert not window.active  # state C
        sim.ev.pause()  # the one trip: C -> B with the contactor closed
        await until(lambda: charger.status() is ConnectorStatus.SUSPENDED_EV, what="SuspendedEV")
        await conversions_later(sim, 20)  # in B, the line active, the contactor open
        # C and back to B before the machine could close: an edge with the contactor open.
        sim.ev.charge()
        sim.ev.pause()
        await conversions_later(sim, 20)
        assert window_trips(caplog) == 1
        sim.ev.charge()  # back to C: the close arms it again, the line inactive
        await until(lambda: charger.hw("coil_energized"), what="the contactor closed again")
        await conversions_later(sim, 20)
        assert window_trips(caplog) == 1


async def test_an_unconfirmed_trip_is_faulted_with_ev_communication_error(
    csms: LocalCsms, tmp_path: Path
) -> None:
    config: dict[str, Any] = dict(WINDOW)
    async with controller(csms, tmp_path, config=config) as rig:
        await rig.charging()
        sim: SimConnector = rig.app.sim.connector(1)
        mark = rig.mark()
        freeze_adc(sim)
        started = time.monotonic()
        sim.ev.pause()
        assert not rig.hw("coil_energized")
        assert time.monotonic() - started < BOUND_S
        await rig.status("Faulted", mark, errorCode="EVCommunicationError")
        sim.adc.hold_input(0, None)
        await rig.act("unplug")
        await rig.status("Available", mark)


@pytest.mark.parametrize(
    ("keys", "line"),
    [
        (
            "cp_window_pin = 17\n",
            "connector.1.cp_window_pin: GPIO17 is already the contactor_pin",
        ),
        (
            "rcm_test_pin = 5\ncp_window_pin = 5\n",
            "connector.1.cp_window_pin: GPIO5 is already the rcm_test_pin",
        ),
        (
            "cp_window_active_high = true\n",
            "connector.1.cp_window_active_high: set without cp_window_pin",
        ),
        ("cp_window_pin = 28\n", "connector.1.cp_window_pin: must be a BCM GPIO number 0-27"),
        # the status LED's default pin, in another section: the pin factory refuses it
        ("cp_window_pin = 24\n", "hardware: pin GPIO24 is already in use"),
        ('cp_window_pin = 5\ncp_window_active_high = "yes"\n', "must be true or false"),
        (
            "cp_window_pn = 5\n",
            "connector.1.cp_window_pn: unknown key; did you mean cp_window_pin?",
        ),
    ],
)
def test_a_bad_comparator_setting_stops_the_program_naming_the_key(
    tmp_path: Path, keys: str, line: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[[connector]]\n" + keys)
    result = picharge("run", "--sim", "--config", str(config), "--state-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert line in result.stderr.splitlines()[-1]


# --- the driver on its own: MockFactory pins, an interlock, the sampler's verdicts -------


class Rig:
    """A comparator input on a MockFactory pin (active low), guarded by an interlock whose
    coil is a list of drops."""

    def __init__(self) -> None:
        self.factory = MockFactory()
        self.pin = self.factory.pin(WINDOW_PIN)
        self.drops: list[str] = []
        self.interlock = Interlock("contactor", lambda: self.drops.append("drop"))
        self.wakes = 0
        window = GpioCpWindow(CpWindowConfig(WINDOW_PIN), pin_factory=self.factory)
        self.guard = WindowGuard(window, self.wake)
        self.guard.guard(self.interlock)

    def wake(self) -> None:
        self.wakes += 1

    def line(self, outside_cd: bool) -> None:
        """The comparator's verdict: open collectors pull the line low outside C/D."""
        if outside_cd:
            self.pin.drive_low()
        else:
            self.pin.drive_high()


@pytest.fixture
def rig() -> Iterator[Rig]:
    rig = Rig()
    rig.line(False)
    yield rig
    rig.guard.close()
    rig.factory.close()


def test_an_edge_trips_only_while_armed_and_the_token_waits_for_the_sampler(rig: Rig) -> None:
    rig.line(True)  # disarmed (the contactor is open): nothing
    rig.line(False)
    assert not rig.drops and not rig.interlock.tripped
    rig.guard.arm(True)
    rig.line(True)
    assert rig.drops and rig.interlock.tripped and rig.wakes == 1
    assert rig.guard.sampled(hazard_seen=False) is None  # the sampler has not agreed yet
    assert rig.interlock.tripped
    verdict, tokens = rig.guard.sampled(hazard_seen=True) or (None, ())
    assert verdict is Verdict.CONFIRMED and len(tokens) == 1
    assert rig.interlock.tripped  # re-armed by whoever delivers the verdict to the loop
    rig.interlock.rearm(tokens[0])
    assert not rig.interlock.tripped


def test_arming_with_the_line_already_active_trips_at_once(rig: Rig) -> None:
    rig.line(True)
    rig.guard.arm(True)
    assert rig.drops and rig.interlock.tripped


def test_a_trip_the_sampler_never_confirms_is_reported_after_a_few_samples(rig: Rig) -> None:
    rig.guard.arm(True)
    rig.line(True)
    verdicts = [rig.guard.sampled(hazard_seen=False) for _ in range(CONFIRM_SAMPLES)]
    assert verdicts[:-1] == [None] * (CONFIRM_SAMPLES - 1)
    last = verdicts[-1]
    assert last is not None and last[0] is Verdict.UNCONFIRMED
    assert rig.guard.sampled(hazard_seen=False) is None  # said once


def test_disarming_releases_what_it_held(rig: Rig) -> None:
    """The machine opened the contactor (for this hazard or another): nothing to wait for;
    arming again for the next close trips at once while the line is still active."""
    rig.guard.arm(True)
    rig.line(True)
    rig.guard.arm(False)
    assert not rig.interlock.tripped
    assert rig.guard.sampled(hazard_seen=False) is None
    rig.guard.arm(True)
    assert rig.interlock.tripped
