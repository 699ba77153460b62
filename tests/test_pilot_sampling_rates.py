"""How often the CP is sampled: fast only while the contactor may be closed, slowly otherwise.

The pilot board is built from configuration as on a Pi (generator, sensor, ADS1115 driver)
over the simulated sysfs PWM and a simulated ADS1115 whose inputs follow a car's state and
the PWM the generator drives; each conversion is counted per channel.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.base import CpReading, CpState, DriverEvent, SMBusLike
from drivers.errors import ConfigurationError, FaultKind
from drivers.pilot import PilotBoard, from_config
from drivers.pilot_levels import FrontEndCalibration
from drivers.seams import HardwareSeams
from hw_sim.ads1115 import SimAds1115
from hw_sim.pilot_frontend import adc_inputs, cp_levels
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


class Board:
    """A configured pilot board on simulated hardware, its sensor running."""

    def __init__(self, root: Path, section: dict[str, Any]) -> None:
        self.ev_state = CpState.A
        self.diode_ok = True
        self.calibration = FrontEndCalibration()
        self.sim_pwm = SimPwmSysfs(root / "pwm")
        self.chip = SimAds1115(self.input_v)
        self.conversions: list[tuple[float, int]] = []  # (monotonic, channel)
        self.lock = threading.Lock()
        seams = HardwareSeams(open_i2c_bus=self.open_bus, pwm_sysfs_root=root / "pwm")
        self.board: PilotBoard = from_config({"tethered_cable_a": 32, **section}, seams)
        self.board.generator.offer_current(0.0)  # as the controller starts: x1, available
        self.readings: list[CpReading] = []
        self.events: list[DriverEvent] = []
        self.task: asyncio.Task[None] | None = None

    def open_bus(self, number: int) -> SMBusLike:
        bus = SimSMBus()
        bus.attach(0x48, self.chip)
        return bus

    def input_v(self, channel: int) -> float:
        with self.lock:
            self.conversions.append((time.monotonic(), channel))
        high, low = cp_levels(self.ev_state, self.sim_pwm.output_pct(0), self.diode_ok)
        return adc_inputs(high, low, None, self.calibration)[channel]

    def start(self) -> None:
        run = self.board.sensor.run(self.readings.append, self.events.append)
        self.task = asyncio.create_task(run)

    def count(self, channel: int, since: float) -> int:
        with self.lock:
            return sum(1 for at, ch in self.conversions if ch == channel and at >= since)

    async def state(self, state: CpState) -> None:
        await until(lambda: bool(self.readings) and self.readings[-1].state is state)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
        self.board.close()
        self.sim_pwm.close()


@pytest.fixture
async def make_board(tmp_path: Path) -> AsyncIterator[Callable[..., Board]]:
    boards: list[Board] = []

    def make(**section: Any) -> Board:
        board = Board(tmp_path / str(len(boards)), section)
        boards.append(board)
        board.start()
        return board

    yield make
    for board in boards:
        await board.stop()


async def rate(board: Board, channel: int, window_s: float = 0.3) -> float:
    """Conversions of ``channel`` per second over the next ``window_s``."""
    since = time.monotonic()
    # a rate: conversions counted over a window
    await asyncio.sleep(window_s)
    return board.count(channel, since) / window_s


async def test_without_pwm_the_cp_is_sampled_slowly_with_a_car_in_c_and_pwm_back_to_back(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(idle_sample_period_s=0.05)  # x1: nothing offered, the contactor is open
    await board.state(CpState.A)
    await asyncio.sleep(1.0)  # past the answer window of our own F -> x1 at the start
    assert 10 <= await rate(board, 0) <= 30  # every 50 ms
    board.ev_state = CpState.C
    board.board.generator.offer_current(16.0)
    await board.state(CpState.C)
    assert await rate(board, 0) >= 400  # ~1.2 ms apart: the contactor may be closed now
    assert await rate(board, 1) <= 10  # the diode re-check every 0.5 s, after its verdict


async def test_pwm_with_the_car_in_b_is_sampled_at_the_waiting_rate(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(waiting_sample_period_s=0.02)
    board.ev_state = CpState.B
    board.board.generator.offer_current(16.0)
    await board.state(CpState.B)
    assert 25 <= await rate(board, 0) <= 70  # every 20 ms: B -> C is not urgent


async def test_a_new_pwm_is_sampled_at_once_not_after_the_idle_pause(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(idle_sample_period_s=0.5, debounce_slow_samples=1)
    board.ev_state = CpState.C  # a car asking for energy before any is offered (C1)
    await board.state(CpState.C)
    await asyncio.sleep(0.05)  # the sampler is in its long pause now
    offered = time.monotonic()
    board.board.generator.offer_current(16.0)
    await until(lambda: board.count(0, offered) >= 5, timeout_s=0.1)


async def test_after_a_state_f_pulse_the_car_is_read_at_the_waiting_rate(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(idle_sample_period_s=0.5)
    board.ev_state = CpState.C
    board.board.generator.set_state_f()  # a fault: F, the car cannot be seen behind it
    await board.state(CpState.F)
    ended = time.monotonic()
    board.board.generator.offer_current(0.0)  # F over: x1 until the car's state is known
    await board.state(CpState.C)  # ten samples: 10 ms apart, not 500 ms
    assert time.monotonic() - ended < 0.4


async def test_while_a_contactor_is_closed_the_cp_is_sampled_fast_even_without_pwm(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(idle_sample_period_s=0.5)  # check-hw clicks the contactor in x1
    await board.state(CpState.A)
    board.board.sensor.set_vigilant(True)
    assert await rate(board, 0) >= 400
    board.ev_state = CpState.B  # a car arrives during the click
    arrived = time.monotonic()
    await board.state(CpState.B)
    assert time.monotonic() - arrived < 0.05
    board.board.sensor.set_vigilant(False)
    # the sampler falls back to its slow rate, then the rate is measured
    await asyncio.sleep(0.6)
    assert await rate(board, 0, window_s=1.0) <= 3


async def test_the_diode_is_judged_at_full_rate_when_the_pwm_starts(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(diode_check_period_s=5.0, duty_settle_s=0.0)
    board.ev_state = CpState.B
    board.diode_ok = False  # a resistor, not a car
    await board.state(CpState.B)
    started = time.monotonic()
    board.board.generator.offer_current(16.0)
    await until(lambda: any(e.kind == "diode_fault" for e in board.events), 0.2)
    assert time.monotonic() - started < 0.1  # five samples, not five 5 s re-checks
    fault = next(e for e in board.events if e.kind == "diode_fault")
    assert fault.fault is FaultKind.DIODE_FAULT


async def test_an_unreadable_adc_is_a_fault_after_blind_fault_s_even_at_the_idle_rate(
    make_board: Callable[..., Board],
) -> None:
    board = make_board(idle_sample_period_s=0.5)
    await board.state(CpState.A)
    board.chip.set_nack(True)
    started = time.monotonic()
    await until(lambda: any(e.kind == "cp_unreadable" for e in board.events), 1.0)
    # Noticed at the next idle sample, then retried every 10 ms until 100 ms blind.
    assert time.monotonic() - started < 0.75
    board.chip.set_nack(False)
    await until(lambda: board.events[-1].kind == "cp_readable", 1.0)


def test_sampling_rates_come_from_configuration_and_bad_ones_name_their_key(
    tmp_path: Path,
) -> None:
    sim_pwm = SimPwmSysfs(tmp_path / "pwm")
    seams = HardwareSeams(open_i2c_bus=lambda n: SimSMBus(), pwm_sysfs_root=tmp_path / "pwm")
    try:
        for section, key in (
            ({"waiting_sample_period_s": 0.001, "sample_period_s": 0.002}, "waiting_sample"),
            ({"idle_sample_period_s": 0.6}, "idle_sample_period_s"),
            ({"diode_check_period_s": -1}, "diode_check_period_s"),
        ):
            with pytest.raises(ConfigurationError) as caught:
                from_config(section, seams)
            assert caught.value.key.startswith(f"pilot.{key}")
        board = from_config({}, seams)
        sensor = board.sensor
        assert (sensor._period_s, sensor._waiting_period_s, sensor._idle_period_s) == (
            0.0012,
            0.01,
            0.2,
        )
        assert sensor._diode_period_s == 0.5
        board.close()
    finally:
        sim_pwm.close()
