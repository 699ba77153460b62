"""The CP sensor: classification, debouncing and faults, from pure logic up to the real thread.

The integration tests close the loop as on a Pi: the generator writes the simulated sysfs, the
simulated front end reads the pin's duty back from there, and the ADS1115 driver reads the
simulated chip on the simulated I2C bus from the sensor's own thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ads1115 import Ads1115
from drivers.base import CpReading, CpState, DriverEvent, PilotSensor
from drivers.errors import FaultKind
from drivers.pilot import PwmPilot
from drivers.pilot_levels import FrontEndCalibration
from drivers.pilot_sensor import AdcPilotSensor, CpSampleProcessor
from drivers.pwm_sysfs import SysfsPwm
from hw_sim.ads1115 import SimAds1115
from hw_sim.pilot_frontend import adc_inputs, cp_levels
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.smbus import SimSMBus

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

# --- pure logic: CpSampleProcessor ----------------------------------------------------------

LEVEL = {CpState.A: 12.0, CpState.B: 9.0, CpState.C: 6.0, CpState.D: 3.0, CpState.E: 0.0}


class Feeder:
    """Feeds a processor samples 10 ms apart and keeps everything it reports."""

    def __init__(self, **kwargs: Any) -> None:
        self.processor = CpSampleProcessor(**kwargs)
        self.now = 0.0
        self.readings: list[CpReading] = []
        self.reading_times: list[float] = []  # time.monotonic() of each on_state call
        self.events: list[DriverEvent] = []

    def feed(self, high_v: float, low_v: float | None = None, *, diode: bool = False) -> None:
        self.now += 0.01
        self._keep(self.processor.feed(high_v, low_v, check_diode=diode, now=self.now))

    def unusable(self, kind: str = "adc_error") -> None:
        self.now += 0.01
        self._keep(self.processor.unusable(kind, "test", now=self.now))

    def _keep(self, outputs: list[CpReading | DriverEvent]) -> None:
        for item in outputs:
            if isinstance(item, CpReading):
                self.readings.append(item)
            else:
                self.events.append(item)

    def states(self) -> list[CpState | None]:
        return [r.state for r in self.readings]


def test_first_state_settles_after_the_fast_count() -> None:
    feeder = Feeder()
    assert feeder.processor.state is None
    feeder.feed(12.0)
    assert feeder.readings == []
    feeder.feed(12.0)
    assert feeder.states() == [CpState.A] and feeder.processor.state is CpState.A
    feeder.feed(12.0)
    assert len(feeder.readings) == 1  # no repeat for an unchanged state


def test_a_single_glitch_sample_does_not_change_the_state() -> None:
    feeder = Feeder()
    for level in (9.0, 9.0, 6.0, 9.0, 12.0, 9.0, 3.0, 0.0, 9.0, -12.0, 9.0):
        feeder.feed(level)
    assert feeder.states() == [CpState.B]
    assert feeder.events == []


def test_towards_b_is_fast_and_towards_c_is_slow() -> None:
    feeder = Feeder(debounce_fast_samples=2, debounce_slow_samples=10)
    for _ in range(2):
        feeder.feed(9.0)
    for _ in range(9):
        feeder.feed(6.0)
    assert feeder.states() == [CpState.B]
    feeder.feed(6.0)
    assert feeder.states() == [CpState.B, CpState.C]
    feeder.feed(9.0)
    feeder.feed(9.0)
    assert feeder.states()[-1] is CpState.B  # C->B reported after 2 samples (20 ms)
    for _ in range(10):
        feeder.feed(3.0)
    feeder.feed(12.0)
    feeder.feed(12.0)
    assert feeder.states() == [CpState.B, CpState.C, CpState.B, CpState.D, CpState.A]


def test_e_and_levels_that_fit_no_state_are_cp_errors() -> None:
    feeder = Feeder()
    feeder.feed(9.0)
    feeder.feed(9.0)
    feeder.feed(0.2)
    feeder.feed(-0.2)
    assert feeder.states() == [CpState.B, CpState.E]
    assert [(e.kind, e.fault) for e in feeder.events] == [("cp_error", FaultKind.CP_ERROR)]
    feeder.feed(-5.0)
    feeder.feed(-5.0)
    assert feeder.states()[-1] is None
    assert feeder.events[-1].fault is FaultKind.CP_ERROR
    feeder.feed(-12.0)
    feeder.feed(-12.0)
    assert feeder.states()[-1] is CpState.F
    assert len(feeder.events) == 2  # F is our own state, not an error


def test_shorted_diode_is_reported_after_its_count_and_clears() -> None:
    feeder = Feeder(debounce_diode_samples=3)
    for _ in range(10):
        feeder.feed(6.0, -12.0, diode=True)
    # The verdict (3 samples) comes before C settles (10): it rides on C's reading.
    assert [(r.state, r.diode_ok) for r in feeder.readings] == [(CpState.C, True)]
    assert not feeder.events  # a good first verdict is no event: nothing came or went
    for _ in range(2):
        feeder.feed(6.0, -6.0, diode=True)
    assert len(feeder.readings) == 1
    feeder.feed(6.0, -6.0, diode=True)
    assert feeder.readings[-1].diode_ok is False
    assert feeder.readings[-1].state is CpState.C
    assert (feeder.events[-1].kind, feeder.events[-1].fault) == (
        "diode_fault",
        FaultKind.DIODE_FAULT,
    )
    for _ in range(3):
        feeder.feed(6.0, -12.2, diode=True)
    assert feeder.readings[-1].diode_ok is True
    assert (feeder.events[-1].kind, feeder.events[-1].fault) == ("diode_ok", None)


def test_still_shorted_diode_is_reported_again_after_the_pwm_was_off() -> None:
    feeder = Feeder(debounce_diode_samples=2)
    for _ in range(10):
        feeder.feed(6.0, -6.0, diode=True)
    assert [e.kind for e in feeder.events] == ["diode_fault"]
    for _ in range(3):
        feeder.feed(9.0, 9.0, diode=False)  # the fault switched the PWM off
    assert [e.kind for e in feeder.events] == ["diode_fault"]  # no false "diode_ok"
    for _ in range(3):
        feeder.feed(9.0, -9.0, diode=True)  # PWM back on, diode still shorted
    assert [e.kind for e in feeder.events] == ["diode_fault", "diode_fault"]


def test_diode_is_not_judged_without_pwm_or_outside_b_c_d() -> None:
    feeder = Feeder(debounce_diode_samples=1)
    for _ in range(3):
        feeder.feed(9.0, 9.0, diode=False)  # x1: no negative phase
    for _ in range(3):
        feeder.feed(12.0, 0.0, diode=True)  # A: no EV, no diode
    for _ in range(3):
        feeder.feed(0.0, 0.0, diode=True)  # E: a short, reported as such
    assert all(r.diode_ok is None for r in feeder.readings)
    assert not [e for e in feeder.events if e.fault is FaultKind.DIODE_FAULT]


def test_out_of_range_samples_are_dropped_reported_and_recovered() -> None:
    feeder = Feeder(blind_fault_s=0.1)
    feeder.feed(9.0)
    feeder.feed(9.0)
    feeder.feed(14.5)
    feeder.feed(6.0)  # a sane sample in between: the episode ends
    feeder.feed(-14.5)
    feeder.feed(9.0, -20.0)
    assert feeder.states() == [CpState.B]
    assert [e.kind for e in feeder.events] == [
        "out_of_range",
        "cp_readable",
        "out_of_range",
    ]
    assert all(e.fault is None for e in feeder.events)


def test_a_persistently_unreadable_cp_becomes_one_fault() -> None:
    feeder = Feeder(blind_fault_s=0.1)
    feeder.feed(9.0)
    feeder.feed(9.0)
    for _ in range(5):
        feeder.unusable("adc_error")
    for _ in range(15):
        feeder.feed(20.0)
    kinds = [(e.kind, e.fault) for e in feeder.events]
    assert kinds == [
        ("adc_error", None),
        ("out_of_range", None),
        ("cp_unreadable", FaultKind.CP_ERROR),
    ]
    feeder.feed(9.0)
    assert feeder.events[-1].kind == "cp_readable"
    assert feeder.states() == [CpState.B]


# --- the real thread against the simulated board -------------------------------------------


class CpBench:
    """Generator, sensor, simulated sysfs, front end, ADS1115 and bus, as on the board."""

    def __init__(self, root: Path, *, inverted: bool = False, **sensor_kwargs: Any) -> None:
        self.ev_state = CpState.A
        self.diode_ok = True
        self.cp_short = False
        self.glitches: list[float] = []  # AIN0 volts for the next conversions, one each
        self.low_glitches: list[float] = []  # the same for AIN1
        self.line_duty: float | None = None  # the line ignores the PWM: a broken driver stage
        self.stale_low_until = -math.inf  # AIN1 reads -12 V until then: a decaying detector
        self.inverted = inverted
        self.calibration = FrontEndCalibration()
        self.sim_pwm = SimPwmSysfs(root)
        self.chip = SimAds1115(self.input_v)
        self.bus = SimSMBus()
        self.bus.attach(0x48, self.chip)
        self.generator = PwmPilot(SysfsPwm(root, channel=0, inverted=inverted))
        self.generator.offer_current(0.0)  # as the controller starts: available, x1
        self.adc = Ads1115(self.bus)
        kwargs = {"sample_period_s": 0.005, "duty_settle_s": 0.005} | sensor_kwargs
        self.sensor = AdcPilotSensor(self.adc, lambda: self.generator.duty_pct, **kwargs)
        self.readings: list[CpReading] = []
        self.reading_times: list[float] = []  # time.monotonic() of each on_state call
        self.events: list[DriverEvent] = []
        self.task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()  # set by every callback

    def input_v(self, channel: int) -> float:
        if channel == 0 and self.glitches:
            return self.glitches.pop(0)
        if channel == 1 and self.low_glitches:
            return self.low_glitches.pop(0)
        if channel == 1 and time.monotonic() < self.stale_low_until:
            return adc_inputs(12.0, -12.0, None, self.calibration)[1]
        pin_pct = self.sim_pwm.output_pct(0)
        duty = 100.0 - pin_pct if self.inverted else pin_pct
        if self.line_duty is not None:
            duty = self.line_duty
        high, low = cp_levels(self.ev_state, duty, self.diode_ok, self.cp_short)
        return adc_inputs(high, low, None, self.calibration)[channel]

    def on_state(self, reading: CpReading) -> None:
        assert threading.current_thread() is threading.main_thread()
        self.readings.append(reading)
        self.reading_times.append(time.monotonic())
        self.changed.set()

    def on_event(self, event: DriverEvent) -> None:
        assert threading.current_thread() is threading.main_thread()
        self.events.append(event)
        self.changed.set()

    def start(self) -> None:
        sensor: PilotSensor = self.sensor
        self.task = asyncio.create_task(sensor.run(self.on_state, self.on_event))

    async def wait_for(self, check: Callable[[], bool]) -> None:
        """Until ``check()`` holds after some callback, or fail after a second."""
        async with asyncio.timeout(1.0):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    async def wait_state(self, state: CpState | None) -> CpReading:
        await self.wait_for(lambda: bool(self.readings) and self.readings[-1].state is state)
        return self.readings[-1]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task
        self.generator.close()
        self.sim_pwm.close()


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[CpBench]:
    bench = CpBench(tmp_path)
    bench.start()
    yield bench
    await bench.stop()
    assert not [t for t in threading.enumerate() if t.name in ("cp-sampler", "sim-pwmchip0")]


@pytest.mark.parametrize("duty", ["pwm", "x1"])
async def test_every_ev_state_is_classified_from_the_simulated_board(
    bench: CpBench, duty: str
) -> None:
    if duty == "pwm":
        bench.generator.offer_current(32.0)
    else:
        bench.generator.offer_current(0.0)
    for state in (CpState.A, CpState.B, CpState.C, CpState.D, CpState.B, CpState.A):
        bench.ev_state = state
        reading = await bench.wait_state(state)
        if duty == "pwm":
            assert reading.low_v == pytest.approx(-12.0, abs=0.01)
        else:
            assert reading.low_v is None and reading.diode_ok is None
    assert bench.sensor.state is CpState.A
    bench.cp_short = True
    await bench.wait_state(CpState.E)
    bench.cp_short = False
    bench.generator.set_state_f()
    reading = await bench.wait_state(CpState.F)
    assert reading.high_v == pytest.approx(-12.0, abs=0.01)


async def test_inverting_stage_is_measured_the_same(tmp_path: Path) -> None:
    bench = CpBench(tmp_path, inverted=True)
    bench.start()
    try:
        bench.generator.offer_current(16.0)
        bench.ev_state = CpState.C
        reading = await bench.wait_state(CpState.C)
        assert reading.diode_ok is not False
        bench.generator.set_state_f()
        await bench.wait_state(CpState.F)
    finally:
        await bench.stop()


async def test_one_glitch_conversion_does_not_change_the_state(bench: CpBench) -> None:
    bench.generator.offer_current(16.0)
    bench.ev_state = CpState.B
    await bench.wait_state(CpState.B)
    await bench.wait_for(lambda: bench.readings[-1].diode_ok is True)  # the first verdict
    count = len(bench.readings)
    for glitch_v in (bench.calibration.adc_for_high(12.0), bench.calibration.adc_for_high(0.0)):
        bench.glitches.append(glitch_v)
        await asyncio.sleep(0.05)  # ten samples: the glitch was read, and a debounce would be done
        assert not bench.glitches
    assert len(bench.readings) == count
    assert not [e for e in bench.events if e.fault is not None]


async def test_shorted_ev_diode_is_a_diode_fault_only_while_pwm_runs(bench: CpBench) -> None:
    bench.generator.offer_current(0.0)
    bench.ev_state = CpState.B
    bench.diode_ok = False
    await bench.wait_state(CpState.B)
    # nothing may happen here; the charger acts within tens of ms, so 50 ms (ten samples) is a wide
    # margin on a loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.05)
    assert not [e for e in bench.events if e.fault is FaultKind.DIODE_FAULT]  # x1: no check
    bench.generator.offer_current(10.0)
    await bench.wait_for(lambda: any(e.kind == "diode_fault" for e in bench.events))
    fault = next(e for e in bench.events if e.kind == "diode_fault")
    assert fault.fault is FaultKind.DIODE_FAULT and fault.device == "cp"
    assert bench.readings[-1].diode_ok is False and bench.readings[-1].state is CpState.B
    bench.diode_ok = True
    await bench.wait_for(lambda: bench.events[-1].kind == "diode_ok")
    assert bench.readings[-1].diode_ok is True


async def test_cp_short_to_pe_is_state_e_with_a_cp_error(bench: CpBench) -> None:
    bench.generator.offer_current(20.0)
    bench.ev_state = CpState.C
    await bench.wait_state(CpState.C)
    bench.cp_short = True
    await bench.wait_state(CpState.E)
    error = bench.events[-1]
    assert (error.device, error.kind, error.fault) == ("cp", "cp_error", FaultKind.CP_ERROR)
    assert not [e for e in bench.events if e.fault is FaultKind.DIODE_FAULT]


@pytest.mark.parametrize("raw", [0x7FFF, -0x8000, 25960, 0])  # 25960: 3.245 V = +14.5 V
async def test_out_of_range_adc_values_give_events_then_recover(bench: CpBench, raw: int) -> None:
    bench.ev_state = CpState.B
    await bench.wait_state(CpState.B)
    count = len(bench.readings)
    bench.chip.set_stuck(raw)
    await bench.wait_for(lambda: any(e.kind == "cp_unreadable" for e in bench.events))
    assert [e.kind for e in bench.events][:2] == ["out_of_range", "cp_unreadable"]
    assert bench.events[1].fault is FaultKind.CP_ERROR
    assert len(bench.readings) == count  # dropped samples change nothing
    bench.chip.set_stuck(None)
    bench.ev_state = CpState.A
    await bench.wait_state(CpState.A)
    assert bench.events[-1].kind == "cp_readable"


async def test_a_silent_adc_is_reported_and_sampling_goes_on(bench: CpBench) -> None:
    bench.ev_state = CpState.B
    await bench.wait_state(CpState.B)
    bench.chip.set_nack(True)
    await bench.wait_for(lambda: any(e.kind == "cp_unreadable" for e in bench.events))
    assert bench.events[0].kind == "adc_error"
    bench.chip.set_nack(False)
    await bench.wait_for(lambda: bench.events[-1].kind == "cp_readable")


async def test_run_stops_and_joins_its_thread_when_cancelled(tmp_path: Path) -> None:
    bench = CpBench(tmp_path)
    bench.start()
    await bench.wait_state(CpState.A)
    assert [t for t in threading.enumerate() if t.name == "cp-sampler"]
    assert bench.task is not None
    bench.task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await bench.task
    assert time.monotonic() - started < 0.1
    assert not [t for t in threading.enumerate() if t.name == "cp-sampler"]
    bench.task = None
    bench.start()  # a new run after a cancelled one works
    await bench.wait_for(lambda: len(bench.readings) == 2)
    await bench.stop()


async def test_run_twice_at_once_is_refused(bench: CpBench) -> None:
    await bench.wait_state(CpState.A)
    with pytest.raises(RuntimeError):
        await bench.sensor.run(bench.on_state, bench.on_event)


async def test_an_unexpected_error_in_the_sampler_ends_run_with_it(tmp_path: Path) -> None:
    bench = CpBench(tmp_path)

    def broken_duty() -> float:
        raise ZeroDivisionError("duty source broke")

    sensor = AdcPilotSensor(bench.adc, broken_duty)
    with pytest.raises(ZeroDivisionError):
        await asyncio.wait_for(sensor.run(bench.on_state, bench.on_event), 1.0)
    assert not [t for t in threading.enumerate() if t.name == "cp-sampler"]
    await bench.stop()


@pytest.mark.parametrize(("settle_s", "fooled"), [(0.03, False), (0.0, True)])
async def test_levels_right_after_our_own_waveform_change_are_ignored(
    tmp_path: Path, settle_s: float, fooled: bool
) -> None:
    """A detector still following our own x1 -> F passes through 0 V on its way down.

    In F the sensor reads the negative detector, which on the reference board falls at once;
    a slower board (a bigger hold capacitor, a slewing driver stage) would not. The glitches
    play that fall; with no settle time they would fake a CP short (E)."""
    bench = CpBench(tmp_path, duty_settle_s=settle_s)
    bench.start()
    try:
        bench.ev_state = CpState.B
        await bench.wait_state(CpState.B)
        bench.generator.set_state_f()
        bench.low_glitches.extend([bench.calibration.adc_for_low(0.0)] * 3)
        await bench.wait_state(CpState.F)
        faked = [r.state for r in bench.readings if r.state is CpState.E]
        assert bool(faked) is fooled
        assert any(e.kind == "cp_error" for e in bench.events) is fooled
    finally:
        await bench.stop()


@pytest.mark.parametrize("ev_state", [CpState.A, CpState.B])
async def test_our_own_state_f_reads_f_with_no_cp_error_on_the_reference_board(
    bench: CpBench, ev_state: CpState
) -> None:
    """On the reference board the positive detector rests near -2.6 V in F (the bench's
    front end models it, as ngspice finds): F is read on AIN1, not taken for a broken CP."""
    bench.ev_state = ev_state
    await bench.wait_state(ev_state)
    assert bench.calibration.cp_high_v(bench.input_v(0)) > -3.0  # x1 still: AIN0 high
    bench.generator.set_state_f()
    assert bench.calibration.cp_high_v(bench.input_v(0)) == pytest.approx(-2.54, abs=0.05)
    reading = await bench.wait_state(CpState.F)
    assert reading.high_v == pytest.approx(-12.0, abs=0.01)
    await asyncio.sleep(0.05)  # ten samples of F: none of them may read as an error
    assert bench.readings[-1].state is CpState.F
    assert not [e for e in bench.events if e.fault is not None]


async def test_a_short_to_pe_during_our_own_state_f_is_state_e(bench: CpBench) -> None:
    bench.generator.set_state_f()
    await bench.wait_state(CpState.F)
    bench.cp_short = True
    await bench.wait_state(CpState.E)
    assert bench.events[-1].kind == "cp_error"


@pytest.mark.parametrize("ev_state", [CpState.B, CpState.C, CpState.D])
async def test_a_line_not_at_minus_12_v_in_our_state_f_is_an_error_never_a_car_state(
    bench: CpBench, ev_state: CpState
) -> None:
    """The driver stage ignores our F (a steady positive line, e.g. a dead -12 V rail): the
    car's state must not be read from it (AIN0 would show C); it fits no state, an error."""
    bench.ev_state = ev_state
    bench.line_duty = 100.0
    await bench.wait_state(ev_state)
    bench.generator.set_state_f()
    await bench.wait_state(None)
    assert bench.events[-1].kind == "cp_error" and bench.events[-1].fault is FaultKind.CP_ERROR
    await asyncio.sleep(0.05)
    states = [r.state for r in bench.readings]
    assert states[states.index(None) :] == [None]  # nothing after: no car state from our F


def test_first_good_diode_verdict_after_the_pwm_starts_is_reported_for_the_settled_state() -> None:
    feeder = Feeder(debounce_diode_samples=3)
    for _ in range(12):
        feeder.feed(6.0, 6.0, diode=False)  # a car already in C, PWM off (x1)
    assert [(r.state, r.diode_ok) for r in feeder.readings] == [(CpState.C, None)]
    for _ in range(2):
        feeder.feed(6.0, -12.0, diode=True)
    assert len(feeder.readings) == 1  # the PWM alone proves nothing yet
    feeder.feed(6.0, -12.0, diode=True)
    assert [(r.state, r.diode_ok) for r in feeder.readings[1:]] == [(CpState.C, True)]
    for _ in range(3):
        feeder.feed(6.0, 6.0, diode=False)  # PWM off (a pause): the verdict is forgotten
    for _ in range(3):
        feeder.feed(6.0, -12.0, diode=True)
    assert [(r.state, r.diode_ok) for r in feeder.readings[2:]] == [(CpState.C, True)]
    assert not feeder.events


async def test_diode_verdict_after_the_pwm_starts_needs_no_settle_pause(tmp_path: Path) -> None:
    """Into PWM no detector decays: a car waiting in C gets its verdict within a few
    samples, not after ``duty_settle_s`` (the contactor waits for that verdict)."""
    bench = CpBench(tmp_path, duty_settle_s=0.3)
    bench.start()
    try:
        bench.ev_state = CpState.C
        await bench.wait_state(CpState.C)
        await asyncio.sleep(0.35)  # the x1 of start-up has long settled
        started = time.monotonic()
        bench.generator.offer_current(16.0)
        await bench.wait_for(lambda: bench.readings[-1].diode_ok is True)
        assert time.monotonic() - started < 0.2
    finally:
        await bench.stop()


async def test_pwm_resumed_within_the_settle_time_cannot_borrow_the_old_diode_level(
    tmp_path: Path,
) -> None:
    """PWM off and on again at once: the negative peak detector still holds the -12 V of
    the last PWM for a while. The pause started by the change to x1 is kept, so a diode
    that shorted meanwhile is judged on fresh levels, never on the stale -12 V."""
    bench = CpBench(tmp_path, duty_settle_s=0.3)
    bench.start()
    try:
        bench.ev_state = CpState.C
        await bench.wait_state(CpState.C)
        bench.generator.offer_current(16.0)
        await bench.wait_for(lambda: bench.readings[-1].diode_ok is True)
        count = len(bench.readings)
        bench.diode_ok = False
        bench.stale_low_until = time.monotonic() + 0.2
        bench.generator.offer_current(0.0)  # a pause the sampler sees...
        bench.sensor.wake()
        # current comes back well within the sampler's pause: the timing is the point
        await asyncio.sleep(0.03)
        bench.generator.offer_current(16.0)  # ...and current again well within the pause
        bench.sensor.wake()
        await bench.wait_for(lambda: any(e.kind == "diode_fault" for e in bench.events))
        assert not [r for r in bench.readings[count:] if r.diode_ok is True]
    finally:
        await bench.stop()
