"""Measuring the control pilot: ADS1115 behind two peak detectors, classified and debounced.

Why the front end matters (reference 1.7): the CP is a 1 kHz square wave whose positive phase
can be as short as 100 us (10 % duty), while one ADS1115 conversion takes 1.16 ms even at its
fastest 860 SPS. Sampling the line directly would average the two halves and read nonsense
that depends on the duty. Our board therefore holds the extremes in two peak detectors
(diode + RC): AIN0 follows the positive peak (the state: 12/9/6/3/0 V), AIN1 the negative peak
(the EV's diode: -12 V while PWM runs). Each goes through a divider with an offset into the
ADC's range; :class:`drivers.pilot_levels.FrontEndCalibration` holds the mapping
``v_cp = v_adc * gain + offset`` (defaults: -15..+15 V onto 0..3.3 V, read with the
+-4.096 V PGA). A peak detector follows a rising level at once but a falling one only through
its bleed resistor; the time-critical transitions (C->B, anything->A) *raise* the positive
level, so they show up on the next conversion, while a falling one (B->C, a short to E) shows
after the detector's decay (the board's RC, a few ms). After the EVSE changes its own
waveform into F or x1 samples are ignored for ``duty_settle_s`` so a decaying detector
cannot fake a state (into F the positive peak falls; out of PWM the negative one rises); a
change into PWM, and a new duty within PWM, makes no detector decay and needs no pause of
its own (a pause still running from the last change is kept).

While the EVSE drives state F itself, AIN0 is not read at all: a passive peak detector has
nothing positive to hold and rests near -2.6 V on the reference board (simulated with ngspice,
tests/test_frontend_spice.py), which fits no state. The negative detector (AIN1) follows a
steady line exactly, so F is read there: -12 V is F, 0 V is E (the line shorted to PE), and
any other level fits no state (a CP error), never a car's state
(:meth:`CpSampleProcessor.feed_state_f`; docs/safety.md, "State F on the reference board").

Classification (reference 1.2): cut points 10.5 / 7.5 / 4.5 / 1.5 V on the positive level,
E down to -1.5 V, F at or below -10 V, anything else fits no state (None). Levels beyond
+-14 V or a saturated ADC code cannot come from the CP: the sample is dropped with an
``out_of_range`` event, and if no usable sample arrives for ``blind_fault_s`` a
``cp_unreadable`` event carries ``FaultKind.CP_ERROR``.

Debouncing: a new state must be seen in N consecutive samples. Towards A, B, E, F or None
(the EV stopped drawing, left, or something is wrong) N is small: the contactor must open
within 100 ms of C->B (reference 1.5), and the controller's share should be a small part of
that, so 2 samples. Towards C or D (the EV wants power) nothing is urgent (3 s to close), so
N is larger: 10 samples. The diode check (negative level -12 V +- 1 V in B/C/D while PWM
runs) has its own count.

Sampling rate follows what is at stake (the contactor can only be closed while the PWM
offers current and the car is in C or D):

- PWM on, car in C or D: every ``sample_period_s`` (1.2 ms from configuration: the ADS1115
  converts in 1.16 ms at 860 SPS, so this is back to back, without a pause that would be
  one more wake-up of the thread to wait for), AIN0 only, so C->B is seen within three
  conversions. AIN1 (the diode check) is read on every sample for the first
  verdict after the PWM starts, then every ``diode_check_period_s``: each AIN1 read delays
  AIN0 by one conversion;
- PWM on, car not in C or D (B2: waiting for the car, SuspendedEV): every
  ``waiting_sample_period_s`` (10 ms): B->C is a slow transition anyway;
- no PWM (x1 or F: the contactor is open): every ``idle_sample_period_s`` (200 ms): only a
  plug-in or unplug to notice. The generator wakes the sampler when the duty changes, so a
  new PWM is sampled at once at the new rate; for a second after any change of our own
  waveform (the end of a state-F pulse: the controller waits for the car's state before the
  PWM resumes) and after an unusable sample, the pause is ``waiting_sample_period_s`` at
  most, so ``blind_fault_s`` still means several samples.

Whoever closes a contactor also calls :meth:`AdcPilotSensor.set_vigilant`: fast sampling
then holds whatever the waveform (the supervisor only closes with the PWM on, check-hw
clicks the contactor with it off).

Interlock: once :meth:`AdcPilotSensor.guard` gave it the contactor's interlock, the sampler
thread trips it (the coil drops there and then) at every hazard it reports: a debounced
state in which the contactor may not be closed (A, B, E, F, or one that fits none), a
diode fault, a CP error or an unreadable CP. Each trip is re-armed on the loop right after
``on_state``/``on_event`` heard of it, so the connector machine knows before anything may
close again. A flooded or blocked loop therefore delays the bookkeeping, never the coil.

Window comparator (optional, :mod:`drivers.cp_window`): armed while vigilant, its GPIO edge
trips the same interlock on gpiozero's thread, conversions before the sampler could. After
each sample the sampler judges a held trip: confirmed once its own view forbids a closed
contactor (an info event ``window_trip``, delivered after its own hazard, re-arms it), or
reported as a ``window_unconfirmed`` event with ``FaultKind.CP_MISMATCH`` after
``CONFIRM_SAMPLES`` samples without that. The sampler stays the authority on the state.

Threading: :meth:`AdcPilotSensor.run` starts one thread (``cp-sampler``) that does the blocking
ADS1115 reads, paced as above, and hands results to the loop with
``loop.call_soon_threadsafe``; ``on_state``/``on_event`` and the ``state`` property live on
the loop thread; :meth:`AdcPilotSensor.wake` may be called from any thread. A dedicated
thread rather than ``asyncio.to_thread`` per sample: it sleeps through conversions and
pacing without waking the loop, which hears from it only on changes. Costs and reaction
times, measured: ``bench/cp_latency.py`` and ``bench/safety_reaction.py``, recorded in
``docs/benchmarks.md`` (with what to expect on a Pi).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable

from drivers.ads1115 import Ads1115
from drivers.base import CpReading, CpState, DriverEvent, EventSink
from drivers.cp_window import CONFIRM_SAMPLES, GpioCpWindow, Verdict, WindowGuard
from drivers.errors import FaultKind, TransientError
from drivers.interlock import Interlock
from drivers.pilot_levels import (
    FrontEndCalibration,
    Waveform,
    classify_high,
    low_level_ok,
    plausible,
    waveform,
)
from drivers.realtime import request_fifo, tight_timer_slack
from drivers.threads import NamedThread

log = logging.getLogger(__name__)

DEVICE = "cp"
_SLOW_STATES = frozenset({CpState.C, CpState.D})
_DIODE_STATES = frozenset({CpState.B, CpState.C, CpState.D})
_UNSET = object()
#: After our own waveform changes, the car's answer is awaited at the waiting rate at least
#: this long (e.g. the state seen after a state-F pulse, before the PWM may resume).
_ANSWER_WINDOW_S = 1.0

Output = CpReading | DriverEvent
#: How the sampler thread hands an output to the loop, with trip tokens to re-arm after it.
_Post = Callable[[Output, tuple[int, ...]], None]


def hazard(item: Output) -> str | None:
    """What in ``item`` forbids a closed contactor (it trips the interlock), or None.

    A state other than C or D (the car stopped asking, left, or the line is wrong), a
    diode fault, and any other reported fault (CP error, CP unreadable).
    """
    if isinstance(item, CpReading):
        if item.state in _SLOW_STATES and item.diode_ok is not False:
            return None
        return f"CP state {item.state or 'unknown'}" + (
            ", diode fault" if item.diode_ok is False else ""
        )
    return None if item.fault is None else f"CP {item.kind}"


class CpSampleProcessor:
    """Classification, debouncing and fault detection, one sample at a time.

    Pure logic with an explicit clock (``now`` in seconds), so every rule is testable
    without threads. Each call returns what to report, in order: :class:`CpReading` for a
    debounced change (of the state, or of the diode verdict) and :class:`DriverEvent`.
    """

    def __init__(
        self,
        *,
        debounce_fast_samples: int = 2,
        debounce_slow_samples: int = 10,
        debounce_diode_samples: int = 5,
        blind_fault_s: float = 0.1,
    ) -> None:
        self._fast = debounce_fast_samples
        self._slow = debounce_slow_samples
        self._diode_needed = debounce_diode_samples
        self._blind_fault_s = blind_fault_s
        self._state: object = _UNSET
        self._candidate: object = _UNSET
        self._count = 0
        self._diode_fault = False
        self._diode_judged = False  # a verdict since the PWM (re)started with a car present
        self._diode_candidate = False
        self._diode_count = 0
        self._unusable_since: float | None = None
        self._unusable_kind = ""
        self._blind_reported = False

    @property
    def state(self) -> CpState | None:
        """The debounced state; None before the first one settles (or when it fits none)."""
        return self._state if isinstance(self._state, CpState) else None

    def feed(
        self, high_v: float, low_v: float | None, *, check_diode: bool, now: float
    ) -> list[Output]:
        """One measured sample. ``check_diode``: PWM ran through this whole sample and the one
        before, so the negative peak is meaningful; ``low_v`` is None when it was not read."""
        if not plausible(high_v) or (low_v is not None and not plausible(low_v)):
            low = "" if low_v is None else f", low {low_v:+.2f} V"
            return self.unusable("out_of_range", f"CP high {high_v:+.2f} V{low}", now=now)
        return self._classified(classify_high(high_v), high_v, low_v, check_diode, now)

    def feed_state_f(self, line_v: float, *, now: float) -> list[Output]:
        """One sample while the EVSE itself drives state F (a steady -12 V).

        ``line_v`` is the negative peak detector (AIN1): on a steady line its lowest level is
        the line itself. The positive detector (AIN0) is not read: with nothing positive to
        follow it rests near -2.6 V on the reference board (its bleeder against the divider,
        drivers/pilot_reference.py) and would read "fits no state" all through our own F.
        Only F (-12 V: our driver stage works) or E (the line is shorted to PE) can come of
        it; any other level means the line is not what we drive, and it fits no state (a
        CP error), never A-D: a car's state cannot be seen behind our own F.
        """
        if not plausible(line_v):
            return self.unusable("out_of_range", f"CP {line_v:+.2f} V in state F", now=now)
        raw = classify_high(line_v)
        if raw not in (CpState.E, CpState.F):
            raw = None
        return self._classified(raw, line_v, None, False, now)

    def _classified(
        self,
        raw: CpState | None,
        high_v: float,
        low_v: float | None,
        check_diode: bool,
        now: float,
    ) -> list[Output]:
        out = self._recovered(now)
        state_changed = self._debounce_state(raw)
        verdict_new = diode_changed = False
        if check_diode and low_v is not None and raw in _DIODE_STATES:
            verdict_new, diode_changed = self._debounce_diode(low_level_ok(low_v))
        elif not check_diode or self.state is CpState.A:
            # Without PWM (or without a car) the diode cannot be judged: forget the verdict
            # silently, so the next PWM period judges afresh and a still-shorted diode is
            # reported again instead of hiding behind an unchanged verdict. (A single A-like
            # glitch is no unplug: only the debounced A forgets.)
            self._diode_fault = self._diode_candidate = self._diode_judged = False
            self._diode_count = 0
        diode_ok = (not self._diode_fault) if self._diode_judged else None
        # A verdict reached before the state settled rides on the state's own reading.
        if state_changed or (verdict_new and self.state is not None):
            out.append(CpReading(self.state, high_v, low_v, diode_ok))
        if state_changed and raw in (CpState.E, None):
            what = "CP shorted to PE or no supply (E)" if raw is CpState.E else "fits no state"
            out.append(
                DriverEvent(DEVICE, "cp_error", f"{what}: high {high_v:+.2f} V", FaultKind.CP_ERROR)
            )
        if diode_changed:
            out.append(self._diode_event(high_v, low_v))
        return out

    @property
    def forbids_closed(self) -> bool:
        """True while what was seen forbids a closed contactor: a settled state other than
        C or D (or none yet), a diode fault, or a CP unreadable for ``blind_fault_s``."""
        return self.state not in _SLOW_STATES or self._diode_fault or self._blind_reported

    @property
    def blind(self) -> bool:
        """True while the last sample (or samples) could not be used."""
        return self._unusable_since is not None

    def unusable(self, kind: str, detail: str, *, now: float) -> list[Output]:
        """A sample that could not be used (``out_of_range``, ``adc_error``): dropped.

        The first of an episode (or a new kind) is reported; after ``blind_fault_s`` without
        a usable sample the CP state is unknown and that is a fault.
        """
        out: list[Output] = []
        if self._unusable_since is None:
            self._unusable_since = now
        if kind != self._unusable_kind:
            self._unusable_kind = kind
            out.append(DriverEvent(DEVICE, kind, f"sample dropped: {detail}"))
        blind_s = now - self._unusable_since
        if not self._blind_reported and blind_s >= self._blind_fault_s:
            self._blind_reported = True
            out.append(
                DriverEvent(
                    DEVICE,
                    "cp_unreadable",
                    f"no usable CP sample for {blind_s * 1000:.0f} ms: {detail}",
                    FaultKind.CP_ERROR,
                )
            )
        return out

    def _recovered(self, now: float) -> list[Output]:
        if self._unusable_since is None:
            return []
        blind_ms = (now - self._unusable_since) * 1000
        self._unusable_since = None
        self._unusable_kind = ""
        self._blind_reported = False
        return [DriverEvent(DEVICE, "cp_readable", f"CP readable again after {blind_ms:.0f} ms")]

    def _debounce_state(self, raw: CpState | None) -> bool:
        if raw == self._candidate:
            self._count += 1
        else:
            self._candidate = raw
            self._count = 1
        needed = self._slow if raw in _SLOW_STATES else self._fast
        if self._count >= needed and raw != self._state:
            self._state = raw
            return True
        return False

    def _debounce_diode(self, ok: bool) -> tuple[bool, bool]:
        """(a first or a changed verdict: worth a reading, the fault came or went: an event).
        The first good verdict after the PWM starts is reported too: the controller closes
        the contactor only after it (a car already in C would otherwise get mains unchecked).
        """
        bad = not ok
        if bad == self._diode_candidate:
            self._diode_count += 1
        else:
            self._diode_candidate = bad
            self._diode_count = 1
        if self._diode_count < self._diode_needed:
            return False, False
        if self._diode_judged and bad == self._diode_fault:
            return False, False
        fault_changed = bad != self._diode_fault
        self._diode_fault = bad
        self._diode_judged = True
        return True, fault_changed

    def _diode_event(self, high_v: float, low_v: float | None) -> DriverEvent:
        levels = f"high {high_v:+.2f} V, low {low_v:+.2f} V" if low_v is not None else ""
        if self._diode_fault:
            return DriverEvent(
                DEVICE,
                "diode_fault",
                f"negative CP level not -12 V with PWM on ({levels}): EV diode shorted?",
                FaultKind.DIODE_FAULT,
            )
        return DriverEvent(DEVICE, "diode_ok", f"negative CP level back at -12 V ({levels})")


class AdcPilotSensor:
    """:class:`drivers.base.PilotSensor` on an ADS1115: AIN0 positive peak, AIN1 negative peak.

    ``duty_pct`` returns the duty the generator currently drives (read from the sampling
    thread; a float read is atomic): the negative peak is only read and checked while PWM
    runs, and a duty change starts a ``duty_settle_s`` pause. Periods in seconds (see the
    module docstring); ``waiting_sample_period_s`` and ``idle_sample_period_s`` default to
    ``sample_period_s``, ``diode_check_period_s`` = 0 reads AIN1 on every PWM sample.
    ``realtime_priority`` > 0 asks for ``SCHED_FIFO`` at that priority for the sampler
    thread (:mod:`drivers.realtime`; refused: it runs as before, with one warning).
    """

    def __init__(
        self,
        adc: Ads1115,
        duty_pct: Callable[[], float],
        *,
        calibration: FrontEndCalibration | None = None,
        sample_period_s: float = 0.01,
        waiting_sample_period_s: float | None = None,
        idle_sample_period_s: float | None = None,
        diode_check_period_s: float = 0.0,
        debounce_fast_samples: int = 2,
        debounce_slow_samples: int = 10,
        debounce_diode_samples: int = 5,
        duty_settle_s: float = 0.02,
        blind_fault_s: float = 0.1,
        high_channel: int = 0,
        low_channel: int = 1,
        realtime_priority: int = 0,
        window: GpioCpWindow | None = None,
    ) -> None:
        self._adc = adc
        self._duty_pct = duty_pct
        self._calibration = calibration or FrontEndCalibration()
        self._period_s = sample_period_s
        self._waiting_period_s = (
            sample_period_s if waiting_sample_period_s is None else waiting_sample_period_s
        )
        self._idle_period_s = (
            sample_period_s if idle_sample_period_s is None else idle_sample_period_s
        )
        self._diode_period_s = diode_check_period_s
        self._wake = threading.Event()
        self._vigilant = False
        self._debounce = (debounce_fast_samples, debounce_slow_samples, debounce_diode_samples)
        self._settle_s = duty_settle_s
        self._blind_fault_s = blind_fault_s
        self._high_channel = high_channel
        self._low_channel = low_channel
        self._state: CpState | None = None
        self._running = False
        self._interlock: Interlock | None = None
        self._realtime_priority = realtime_priority
        self._window = None if window is None else WindowGuard(window, self.wake)

    @property
    def state(self) -> CpState | None:
        """The last debounced state (loop thread); None until the first one settles."""
        return self._state

    @property
    def window(self) -> GpioCpWindow | None:
        """The window comparator on the CP's positive peak, if one is wired
        (:mod:`drivers.cp_window`)."""
        return None if self._window is None else self._window.window

    @property
    def calibration(self) -> FrontEndCalibration:
        """How this board's ADC voltages map to CP volts (``check-hw`` reads with it)."""
        return self._calibration

    def wake(self) -> None:
        """Sample now rather than at the end of the current pause (any thread): the generator
        calls this when the duty changes, so a new PWM is watched at its rate at once."""
        self._wake.set()

    def set_vigilant(self, vigilant: bool) -> None:
        """While ``vigilant``, sample every ``sample_period_s`` whatever the waveform (any
        thread): for whenever a contactor is closed, also with the PWM off (check-hw's
        click in state A), so a car arriving is seen as fast as a car leaving. A window
        comparator is armed for as long (:mod:`drivers.cp_window`)."""
        self._vigilant = vigilant
        if self._window is not None:
            self._window.arm(vigilant)
        if vigilant:
            self._wake.set()

    def guard(self, interlock: Interlock) -> None:
        """Trip ``interlock`` on the sampler thread at every hazard (module docstring), and
        on the window comparator's edge while vigilant. Call before :meth:`run`."""
        self._interlock = interlock
        if self._window is not None:
            self._window.guard(interlock)

    async def run(self, on_state: Callable[[CpReading], None], on_event: EventSink) -> None:
        """Sample on the ``cp-sampler`` thread until cancelled; the thread is joined on exit.

        ``on_state`` is called on the loop thread whenever the debounced state or the diode
        verdict changes; ``on_event`` for every :class:`DriverEvent`. An unexpected error in
        the thread ends ``run`` with that error.
        """
        if self._running:
            raise RuntimeError("AdcPilotSensor.run is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        done: asyncio.Future[None] = loop.create_future()

        interlock = self._interlock

        def deliver(item: Output, tokens: tuple[int, ...]) -> None:
            try:
                if isinstance(item, CpReading):
                    self._state = item.state
                    on_state(item)
                else:
                    on_event(item)
            finally:
                if interlock is not None:
                    for token in tokens:
                        interlock.rearm(token)  # the machine has heard of it

        def finish(error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def post(item: Output, held: tuple[int, ...] = ()) -> None:  # on the sampler thread
            tokens = held
            reason = hazard(item)
            if interlock is not None and reason is not None:
                # The coil drops now, whatever the loop does.
                tokens = (*held, interlock.trip(reason))
            loop.call_soon_threadsafe(deliver, item, tokens)

        def body() -> None:
            error: BaseException | None = None
            try:
                tight_timer_slack()
                request_fifo(self._realtime_priority, "cp-sampler")
                self._sample_loop(post, stop)
            except BaseException as exc:  # handed to run() on the loop, which raises it there
                log.exception("CP sampler stopped")
                error = exc
            finally:
                loop.call_soon_threadsafe(finish, error)

        thread = NamedThread(target=body, name="cp-sampler", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            stop.set()
            self._wake.set()
            try:
                if not done.done():
                    await asyncio.wait({done})
            finally:
                # Normally already finished; if run() was cancelled twice, this waits at most
                # one sample (a few ms) so no thread outlives run().
                thread.join()
                self._running = False

    def _sample_loop(self, post: _Post, stop: threading.Event) -> None:
        fast, slow, diode = self._debounce
        processor = CpSampleProcessor(
            debounce_fast_samples=fast,
            debounce_slow_samples=slow,
            debounce_diode_samples=diode,
            blind_fault_s=self._blind_fault_s,
        )
        last_wave = waveform(self._duty_pct())
        settle_until = 0.0
        prev_pwm = False
        low_reads = 0  # AIN1 reads since the PWM started
        changed_at = -math.inf  # when our own waveform last changed
        low_read_at = -math.inf
        while not stop.is_set():
            started = time.monotonic()
            wave = waveform(self._duty_pct())
            if wave is not last_wave:
                last_wave = wave
                if wave is not Waveform.PWM:
                    # Into F (the positive peak decays) or x1 (the negative one does).
                    # Into PWM nothing decays: each detector follows a level it had, or
                    # charges at once; a decay still under way from the last change (PWM
                    # stopped and resumed within the settle time) keeps its pause, so a
                    # stale -12 V cannot vouch for a diode. This keeps the diode verdict,
                    # which the contactor waits for, off a needless 20 ms.
                    settle_until = started + self._settle_s
                changed_at = started
            pwm = wave is Waveform.PWM
            if not pwm:
                low_reads = 0
            # The first verdict after the PWM starts at full rate, then a check now and then;
            # none while the detectors settle after our own change (those samples are dropped).
            read_low = (
                pwm
                and started >= settle_until
                and (low_reads <= diode or started - low_read_at >= self._diode_period_s)
            )
            if read_low:
                low_reads += 1
                low_read_at = started
            outputs = self._sample(processor, wave, prev_pwm, settle_until, read_low)
            prev_pwm = pwm and waveform(self._duty_pct()) is Waveform.PWM
            for item in outputs:
                post(item, ())
            if self._window is not None:
                self._judge_window(self._window, processor, post)
            period_s = self._idle_period_s
            if self._vigilant or (pwm and processor.state in _SLOW_STATES):
                period_s = self._period_s  # a contactor is, or may be, closed
            elif pwm or processor.blind or started - changed_at < _ANSWER_WINDOW_S:
                period_s = min(period_s, self._waiting_period_s)
            pause_s = started + period_s - time.monotonic()
            if pause_s > 0 and self._wake.wait(pause_s):
                self._wake.clear()

    @staticmethod
    def _judge_window(window: WindowGuard, processor: CpSampleProcessor, post: _Post) -> None:
        """After a sample: a comparator trip the sampler confirms is delivered as an info
        event (after the sampler's own hazard, so the machine has heard of it), one it does
        not confirm in time as a ``cp_mismatch`` fault; each trip is re-armed after that."""
        judged = window.sampled(processor.forbids_closed)
        if judged is None:
            return
        verdict, tokens = judged
        if verdict is Verdict.CONFIRMED:
            seen = f"the ADC agrees (state {processor.state or 'unknown'})"
            post(DriverEvent(DEVICE, verdict.value, f"window comparator tripped; {seen}"), tokens)
            return
        detail = (
            f"window comparator tripped but the ADC still reads state {processor.state} after "
            f"{CONFIRM_SAMPLES} samples: the CP front end's two measurements disagree"
        )
        post(DriverEvent(DEVICE, verdict.value, detail, FaultKind.CP_MISMATCH), tokens)

    def _sample(
        self,
        processor: CpSampleProcessor,
        wave: Waveform,
        prev_pwm: bool,
        settle_until: float,
        read_low: bool,
    ) -> list[Output]:
        """One sample: AIN0, and AIN1 when ``read_low`` (only while PWM runs). ``prev_pwm``:
        PWM ran through the previous sample too, so the negative peak detector is charged."""
        if wave is Waveform.F:
            return self._sample_state_f(processor, settle_until)
        pwm = wave is Waveform.PWM
        try:
            raw_high = self._adc.read_raw(self._high_channel)
            raw_low = self._adc.read_raw(self._low_channel) if pwm and read_low else None
        except TransientError as exc:
            return processor.unusable("adc_error", str(exc), now=time.monotonic())
        now = time.monotonic()
        if now < settle_until or waveform(self._duty_pct()) is not wave:
            return []  # the detectors are still following our own waveform change
        if Ads1115.saturated(raw_high) or (raw_low is not None and Ads1115.saturated(raw_low)):
            return processor.unusable(
                "out_of_range", f"ADC saturated (raw {raw_high}, {raw_low})", now=now
            )
        high_v = self._calibration.cp_high_v(self._adc.to_volts(raw_high))
        low_v = None
        if raw_low is not None:
            low_v = self._calibration.cp_low_v(self._adc.to_volts(raw_low))
        return processor.feed(high_v, low_v, check_diode=pwm and prev_pwm, now=now)

    def _sample_state_f(self, processor: CpSampleProcessor, settle_until: float) -> list[Output]:
        """One sample of our own state F: AIN1 only (:meth:`CpSampleProcessor.feed_state_f`
        says why AIN0 cannot show F)."""
        try:
            raw_line = self._adc.read_raw(self._low_channel)
        except TransientError as exc:
            return processor.unusable("adc_error", str(exc), now=time.monotonic())
        now = time.monotonic()
        if now < settle_until or waveform(self._duty_pct()) is not Waveform.F:
            return []  # the detectors are still following our own waveform change
        if Ads1115.saturated(raw_line):
            return processor.unusable(
                "out_of_range", f"ADC saturated (raw {raw_line}) in state F", now=now
            )
        line_v = self._calibration.cp_low_v(self._adc.to_volts(raw_line))
        return processor.feed_state_f(line_v, now=now)
