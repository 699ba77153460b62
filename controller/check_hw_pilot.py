"""``picharge check-hw``'s control pilot steps: the PWM's two swings, and the diode and PP
with an EV tester plugged in.

The PWM step runs with nothing plugged in: it offers 6 A (10 %, the shortest positive phase
the peak detectors must hold) and reads both detectors against the reference levels, +12 V
and -12 V. The tester steps wait (bounded) for an EV tester, or a 2.74 kOhm resistor and a
diode from CP to PE, then read PP into a cable rating and let the CP sensor judge the diode
with the PWM on, exactly as before a charge: a missing or shorted diode is a FAIL. The
contactor is never touched here. With a window comparator wired (``cp_window_pin``), its
line is compared with the sensor's state: active in A and B, inactive in C and D.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable

from controller.check_hw_report import Outcome, Report, StepResult
from controller.hardware import ConnectorHardware
from drivers.base import CpReading, CpState, DriverEvent
from drivers.cp_window import GpioCpWindow
from drivers.pilot import PilotBoard
from drivers.pilot_levels import (
    CUT_A_V,
    LOW_NOMINAL_V,
    LOW_TOLERANCE_V,
    PLAUSIBLE_LIMIT_V,
    PpVerdict,
    classify_high,
    pp_rating_for_ohms,
)
from drivers.pilot_pp import AdcProximitySensor, TetheredCable

#: The offer of the PWM steps: 10 %, the shortest positive phase the detectors must hold.
TEST_OFFER_A = 6.0
#: The detectors follow a new waveform within a few ms (tests/test_frontend_spice.py).
DETECTOR_SETTLE_S = 0.05
SAMPLES = 5
#: How long the diode verdict may take once the PWM runs (the sensor needs a few samples).
DIODE_VERDICT_S = 2.0
HIGH_CHANNEL = 0  # AIN0: the positive peak (drivers/pilot_sensor.py)
LOW_CHANNEL = 1  # AIN1: the negative peak
_CAR_STATES = (CpState.B, CpState.C, CpState.D)
#: How long the window comparator may take to agree with a settled state (the sensor's
#: debounce decides when the state settles; the comparator follows the detector at once).
WINDOW_AGREE_S = 0.5
_WINDOW_POLL_S = 0.01


class CpWatch:
    """The CP sensor running with the PWM off (x1); keeps the latest debounced reading.

    ``guard`` (set while the contactor is being clicked) is called on the loop thread the
    moment the CP leaves state A.
    """

    def __init__(self, pilot: PilotBoard) -> None:
        self._pilot = pilot
        self.latest: CpReading | None = None
        self.unreadable: str | None = None
        self.guard: Callable[[], None] | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CpWatch:
        self._pilot.generator.offer_current(0.0)  # x1: steady +12 V, nothing offered
        self._task = asyncio.create_task(
            self._pilot.sensor.run(self._on_state, self._on_event), name="check-cp"
        )
        self._task.add_done_callback(lambda _: self._changed.set())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pilot.generator.set_state_f()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_state(self, reading: CpReading) -> None:
        self.latest = reading
        self._changed.set()
        if reading.state is not CpState.A and self.guard is not None:
            self.guard()

    def _on_event(self, event: DriverEvent) -> None:
        # Single dropped samples (adc_error, out_of_range) are the sensor's business; once
        # none was usable for its blind time, the CP state is unknown.
        if event.kind == "cp_unreadable":
            self.unreadable = event.detail
            self._changed.set()
            if self.guard is not None:
                self.guard()
        elif event.kind == "cp_readable":
            self.unreadable = None

    async def settle(self, timeout_s: float) -> None:
        """Wait for the first reading, an unreadable CP, or ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.latest is None and self.unreadable is None:
                if self._task is not None and self._task.done():
                    error = self._task.exception()
                    self.unreadable = f"the CP sampler stopped: {error}"
                    return
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(
        self, check: Callable[[CpReading], bool], timeout_s: float
    ) -> CpReading | None:
        """The latest reading once ``check`` holds for it; None after ``timeout_s`` or when
        the CP became unreadable (a person plugging a tester in: bounded, never forever)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.unreadable is None:
                    if self.latest is not None and check(self.latest):
                        return self.latest
                    if self._task is not None and self._task.done():
                        return None
                    self._changed.clear()
                    await self._changed.wait()
        return None


async def detector_levels(pilot: PilotBoard) -> tuple[float, float]:
    """The median CP levels (V) the two peak detectors hold now, through the sensor's
    calibration. Blocking conversions run in a worker thread."""
    calibration = pilot.sensor.calibration

    def read() -> tuple[float, float]:
        highs = [pilot.adc.read_volts(HIGH_CHANNEL) for _ in range(SAMPLES)]
        lows = [pilot.adc.read_volts(LOW_CHANNEL) for _ in range(SAMPLES)]
        return (
            calibration.cp_high_v(statistics.median(highs)),
            calibration.cp_low_v(statistics.median(lows)),
        )

    return await asyncio.to_thread(read)


def _swing_ok(low_v: float) -> bool:
    return abs(low_v - LOW_NOMINAL_V) <= LOW_TOLERANCE_V


async def check_pwm(c: ConnectorHardware) -> StepResult:
    """PWM on at 6 A with nothing plugged in: +12 V and -12 V on the detectors."""
    generator = c.pilot.generator
    generator.offer_current(TEST_OFFER_A)
    duty = generator.duty_pct
    try:
        await asyncio.sleep(DETECTOR_SETTLE_S)
        high_v, low_v = await detector_levels(c.pilot)
    finally:
        generator.set_state_f()  # as between all steps: "EVSE not available"
    detail = (
        f"{duty:.0f} % PWM: positive swing {high_v:+.1f} V, negative swing {low_v:+.1f} V "
        f"(reference +12.0 / -12.0 V)"
    )
    high_ok = CUT_A_V <= high_v <= PLAUSIBLE_LIMIT_V
    if high_ok and _swing_ok(low_v):
        return StepResult("pwm", Outcome.PASS, detail)
    if low_v > 0.0:
        fix = (
            "no negative swing: the PWM does not run. Check dtoverlay=pwm in config.txt "
            "(GPIO18, pin 12), [[connector]] pwm_chip/pwm_channel (a Pi 5 needs pwm_channel = "
            "2), and the op-amp's -12 V supply"
        )
    elif not _swing_ok(low_v):
        fix = (
            "the negative swing is off -12 V +- 1 V: check the -12 V output of the DC/DC, the "
            "op-amp's supply pins, the AIN1 detector (Schottky, hold capacitor, divider), "
            "then calibrate (picharge check-hw --calibrate)"
        )
    else:
        fix = (
            "the positive swing is not state A's: check the +12 V output of the DC/DC, the "
            "1 kOhm source resistor, the AIN0 detector, then calibrate (check-hw --calibrate)"
        )
    return StepResult("pwm", Outcome.FAIL, detail, fix)


async def check_pp(c: ConnectorHardware) -> StepResult:
    """PP read into a cable rating (the tester's PP setting, or a cable's resistor)."""
    proximity = c.pilot.proximity
    if isinstance(proximity, TetheredCable):
        return StepResult(
            "pp",
            Outcome.SKIP,
            f"a tethered cable: {proximity.rating_a} A from tethered_cable_a, no PP to read",
        )
    if not isinstance(proximity, AdcProximitySensor):
        return StepResult("pp", Outcome.SKIP, "no PP input on this connector")
    ohms = await asyncio.to_thread(proximity.read_ohms)
    verdict, rating_a = pp_rating_for_ohms(ohms)
    wiring = (
        "check the PP wire from the socket to AIN2, the 1 kOhm pull-up to 3.3 V "
        "(pp_pullup_ohm) and the tester's PP setting"
    )
    if verdict is PpVerdict.RATED:
        return StepResult("pp", Outcome.PASS, f"PP-PE {ohms:.0f} Ohm: a {rating_a} A cable")
    if verdict is PpVerdict.SHORT:
        return StepResult(
            "pp", Outcome.FAIL, f"PP-PE {ohms:.0f} Ohm (< 75 Ohm): shorted to PE", wiring
        )
    return StepResult("pp", Outcome.FAIL, "PP reads open (> 2 kOhm) with a plug in", wiring)


async def check_diode(c: ConnectorHardware, cp: CpWatch) -> StepResult:
    """The CP sensor's own diode verdict with the PWM on (6 A), the tester plugged in."""
    generator = c.pilot.generator
    generator.offer_current(TEST_OFFER_A)
    try:
        reading = await cp.wait_for(
            lambda r: r.state in _CAR_STATES and r.diode_ok is not None, DIODE_VERDICT_S
        )
    finally:
        generator.offer_current(0.0)
    if reading is None:
        seen = cp.latest.state if cp.latest is not None else None
        return StepResult(
            "diode",
            Outcome.FAIL,
            f"no diode verdict within {DIODE_VERDICT_S:g} s with the PWM on (CP state {seen})",
            "the tester left B/C/D while the PWM ran: check the CP wiring; run the pwm step",
        )
    # The sample's own level names the state (the debounced one may still be catching up
    # with a tester that went from B to C when the PWM offered current).
    levels = f"positive swing {reading.high_v:+.1f} V (state {classify_high(reading.high_v)})"
    if reading.low_v is not None:
        levels += f", negative swing {reading.low_v:+.1f} V"
    if reading.diode_ok:
        return StepResult("diode", Outcome.PASS, f"the EV's diode blocks: {levels}")
    return StepResult(
        "diode",
        Outcome.FAIL,
        f"NO DIODE: the negative swing is not held at -12 V ({levels})",
        "the tester's diode is missing or shorted (an EV like this never gets mains); if the "
        "tester's diode switch is on 'fault', this FAIL is the right verdict: switch it back",
    )


async def check_window(window: GpioCpWindow, cp: CpWatch, step: str) -> StepResult:
    """The window comparator's line against the CP sensor's settled state: active outside
    C/D (A, B), inactive in C or D (:mod:`drivers.cp_window`)."""
    pin = window.config.pin
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW_AGREE_S
    while True:
        state = cp.latest.state if cp.latest is not None else None
        if state is None:
            return StepResult(step, Outcome.SKIP, "no settled CP state to compare with")
        outside = state not in (CpState.C, CpState.D)
        if window.active == outside:
            level = "active" if outside else "inactive"
            return StepResult(step, Outcome.PASS, f"GPIO{pin} {level} in state {state}")
        if loop.time() >= deadline:
            break
        await asyncio.sleep(_WINDOW_POLL_S)  # a pin level without an edge to wait for
    wiring = (
        "the comparators' thresholds (7.5 V and 1.5 V on the CP scale, after the divider), "
        "their supply, the pull-up on the joined open-collector outputs and "
        "cp_window_active_high"
    )
    if outside:
        return StepResult(
            step,
            Outcome.FAIL,
            f"GPIO{pin} inactive in state {state}: the comparator does not fire outside C/D "
            "(the coil would wait for the ADC)",
            "check " + wiring,
        )
    return StepResult(
        step,
        Outcome.FAIL,
        f"GPIO{pin} active in state {state}: the comparator fires inside C/D (every close "
        "would trip at once)",
        "check " + wiring + "; the output may be stuck low",
    )


async def check_with_tester(c: ConnectorHardware, report: Report, timeout_s: float) -> None:
    """Ask for the EV tester, then PP and the diode; SKIP both if none arrives in time."""
    report.note(
        "plug in the EV tester (CP at B or C, PP at the cable rating) or a 2.74 kOhm resistor "
        f"with a diode from CP to PE (waiting up to {timeout_s:g} s) ..."
    )
    async with CpWatch(c.pilot) as cp:
        plugged = await cp.wait_for(lambda r: r.state in _CAR_STATES, timeout_s)
        if plugged is None:
            why = f"no EV tester plugged in within {timeout_s:g} s"
            if cp.unreadable is not None:
                why = f"the CP is unreadable ({cp.unreadable}): see the cp step"
            report.add(StepResult("pp", Outcome.SKIP, why))
            report.add(StepResult("diode", Outcome.SKIP, why))
            return
        report.add(await check_pp(c))
        report.add(await check_diode(c, cp))
        window = c.pilot.sensor.window
        if window is not None:
            c.pilot.generator.offer_current(TEST_OFFER_A)  # as when charging: B2, C2
            try:
                settled = await cp.wait_for(lambda r: r.state in _CAR_STATES, DIODE_VERDICT_S)
                if settled is not None:
                    report.add(await check_window(window, cp, "cp-window-ev"))
            finally:
                c.pilot.generator.offer_current(0.0)
    report.note("unplug the EV tester")
