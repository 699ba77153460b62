"""The supervisor: owns the asyncio loop's work, wires drivers to connectors and the CSMS.

Drivers produce readings and events; the supervisor turns them into events for each
connector's pure state machine (:mod:`controller.connector`) and executes the commands it
returns on the drivers (contactor, PWM) and on the CSMS link (status, transactions). It
implements :class:`controller.domain.ChargePointControl` for the OCPP adapter and knows no
OCPP version and no GPIO number.

Everything here runs on the loop thread, but the safety path does not wait for it: at
start each connector's hazard detectors (CP sampler, RCM, thermometer) get the contactor's
interlock (:mod:`drivers.interlock`) and drop the coil on their own threads the moment they
see a hazard, and a watchdog thread (:mod:`controller.loop_watchdog`) drops every coil when
the loop stops beating. The loop then does the bookkeeping: the driver callback (CP
change, RCM trip) feeds the machine, whose ``OpenContactor`` repeats the open, and the
interlock is re-armed only after that, so no close can come between the hazard and the
machine hearing of it. The machine stays the only place that decides to close.

The other edges (web page and API, MQTT, local load management) act through
:meth:`Supervisor.set_limit` (each a :class:`~controller.limits.LimitSource` of its own)
and the commands above, hear what happens through :attr:`Supervisor.events` (a broadcast
with a bounded queue per listener, :mod:`controller.events`) and read the whole state with
:meth:`Supervisor.snapshot` (:mod:`controller.status_snapshot`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.availability import AvailabilityStore
from controller.connector import ConnectorMachine, reservation_allows, same_id
from controller.connector_safety import EV_CONNECTED_STATES
from controller.connector_types import (
    AuthorizationDropped,
    Authorized,
    AvailabilityAnswered,
    AvailabilityChanged,
    CableRatingChanged,
    CloseContactor,
    Command,
    ConnectorSettings,
    ConnectorStatus,
    CpChanged,
    Event,
    FaultCleared,
    FaultRaised,
    IdPresented,
    LimitChanged,
    LockChanged,
    OfferCurrent,
    OpenContactor,
    PilotVerified,
    RemoteStart,
    RemoteStartAnswered,
    RequestAuthorization,
    ReservationAnswered,
    ReservationCancelled,
    ReservationEnd,
    ReservationEnded,
    ReservationOutcome,
    Reserved,
    SetStateF,
    SettingsChanged,
    StartTransaction,
    StatusChanged,
    StopReason,
    StopRequested,
    StopTransaction,
    Tick,
    TransactionAnswered,
)
from controller.domain import (
    Answer,
    ConnectorView,
    CsmsLink,
    CsmsSettings,
    MeterSample,
    ReservationListener,
    ResetKind,
    SessionIds,
    Transaction,
    utc_now,
)
from controller.events import (
    Broadcast,
    FaultsChanged,
    LimitsChanged,
    LinkStateChanged,
    MeterSampled,
    StatusEvent,
    TransactionStarted,
    TransactionStopped,
)
from controller.hardware import ConnectorHardware, Hardware
from controller.journal import TransactionJournal
from controller.limits import LimitSource, check_limit
from controller.loop_watchdog import LOOP_STALL_S, LoopWatchdog
from controller.status_snapshot import STANDALONE, ConnectorSnapshot, StatusSnapshot
from drivers.base import (
    CpReading,
    CpState,
    DriverEvent,
    HazardDetector,
    LedPattern,
    MeterReading,
    OverheatDetector,
    PollingCardReader,
)
from drivers.errors import DriverError, FaultKind, PermanentFault
from drivers.mains import MainsJudge

log = logging.getLogger(__name__)

METER_POLL_S = 1.0
#: Longest sleep of the timer task (it sleeps until the next machine timer, at most this).
TICK_S = 1.0
TEMPERATURE_POLL_S = 10.0
OVERTEMP_HYSTERESIS_C = 5.0
#: After a diode fault the PWM stays off; the charger tries again this much later (the
#: sensor judges the diode afresh each time the PWM runs, so a still-shorted diode is
#: caught again before the car can be seen in C). Unplugging also clears it.
DIODE_RETRY_S = 30.0

#: Driver events that raise or clear a fault on the connector they belong to.
_FAULT_EVENTS: dict[tuple[str, str], tuple[FaultKind, bool]] = {
    ("cp", "diode_fault"): (FaultKind.DIODE_FAULT, True),
    ("cp", "diode_ok"): (FaultKind.DIODE_FAULT, False),
    ("cp", "cp_unreadable"): (FaultKind.CP_ERROR, True),
    ("cp", "cp_readable"): (FaultKind.CP_ERROR, False),
    # The window comparator tripped the coil and the sampler did not confirm (cleared by
    # unplugging: connector_safety.FAULT_POLICY).
    ("cp", "window_unconfirmed"): (FaultKind.CP_MISMATCH, True),
}
_READER_EVENTS = {"reader_failure": True, "recovered": False}
#: CP states with a car on the cable.
_CAR_STATES = frozenset({CpState.B, CpState.C, CpState.D})


@dataclass
class ConnectorRuntime:
    """One connector: its machine, its drivers and what the supervisor last saw."""

    hw: ConnectorHardware
    machine: ConnectorMachine
    overtemp_c: float
    reading: MeterReading | None = None
    offered_a: float = 0.0
    temperature_c: float | None = None  # the thermometer's last reading
    transaction: Transaction | None = None
    status: StatusChanged | None = None
    pending: dict[type, asyncio.Future[object]] = field(default_factory=dict)
    diode_retry: asyncio.TimerHandle | None = None
    #: A self-test of the RCM passed since the last session ended or the car left: the
    #: contactor closes for a session only after one (see Supervisor._rcm_self_test).
    rcm_passed: bool = False
    rcm_test: asyncio.Task[bool] | None = None
    #: Bumped whenever ``rcm_passed`` is reset: a test that began for a car or session
    #: since gone does not count for the next one.
    rcm_epoch: int = 0
    #: Under- or over-voltage of the mains, judged from this connector's meter.
    mains: MainsJudge = field(default_factory=MainsJudge)

    def forget_rcm_test(self) -> None:
        """The next session needs a self-test of its own (the car left, a session ended)."""
        self.rcm_passed = False
        self.rcm_epoch += 1

    def log_fields(self) -> dict[str, object]:
        """Structured log fields (journal: CONNECTOR=, TRANSACTION_ID=) for this connector."""
        fields: dict[str, object] = {"connector": self.hw.id}
        if self.transaction is not None:
            tx = self.transaction
            fields["transaction_id"] = tx.csms_id if tx.csms_id is not None else tx.local_id
            fields["id_tag"] = tx.id_tag
        return fields


class Supervisor:
    """Runs the charger. Create it, set :attr:`link`, then ``await run()`` in a task."""

    def __init__(
        self,
        hardware: Hardware,
        settings: dict[int, ConnectorSettings],
        *,
        overtemp_c: float = 80.0,
        clock: Callable[[], float] = time.monotonic,
        inoperative: Collection[int] = (),
    ) -> None:
        """``inoperative``: connectors a ChangeAvailability left Inoperative (a persistent
        state: they start Unavailable)."""
        self.hardware = hardware
        #: The CSMS link (or the standalone one): told synchronously, in command order
        #: (see controller.events for why it is not a broadcast listener).
        self.link: CsmsLink | None = None
        #: Every other listener (web page, API, MQTT, load management) subscribes here.
        self.events = Broadcast()
        #: The CSMS link's state as text for the snapshot (:data:`STANDALONE` without a
        #: CSMS); set by the app. Read at each timer tick (at least every ``TICK_S``): a
        #: change is published as LinkStateChanged, so the adapter needs no hook for it.
        self.link_state: Callable[[], str] = lambda: STANDALONE
        #: set at start by the composition root: messages waiting for another OCPP version
        self.outbox_other_versions: dict[str, int] = {}
        self._link_state_published: str | None = None
        self._clock = clock
        self.connectors = {
            c.id: ConnectorRuntime(
                c,
                ConnectorMachine(settings[c.id], available=c.id not in inoperative),
                overtemp_c,
            )
            for c in hardware.connectors
        }
        #: Stores each connector's availability as ChangeAvailability sets it, so that it
        #: survives a restart; set by the app (None: it lives in memory only).
        self.availability_store: AvailabilityStore | None = None
        self._reader_faulty = False
        #: Reservations made for connector 0 ("any connector"): each sits on one free
        #: connector, and a transaction of its id on any connector uses it up.
        self._zero_reservations: set[int] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        self.restart_requested: ResetKind | None = None
        self.diode_retry_s = DIODE_RETRY_S
        self._stop = asyncio.Event()
        #: Records transactions in the state database (issue 5: power-loss recovery);
        #: set by the app. Without one, transactions live in memory only.
        self.journal: TransactionJournal | None = None
        self._timers_changed = asyncio.Event()
        #: Called with "supervisor" at each timer tick and "meter-<id>" after each finished
        #: meter read; the app feeds controller.service.Heartbeats with it.
        self.beat: Callable[[str], None] = lambda name: None
        #: How long the loop may stay silent before the watchdog thread opens every coil.
        self.loop_stall_s = LOOP_STALL_S

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every driver loop and the timers until cancelled or a reset is requested."""
        for rt in self.connectors.values():
            self._execute(rt, rt.machine.restate_outputs())
            self._feed(rt, Tick())
            self._guard(rt)
            rt.hw.rcm.watch(functools.partial(self._rcm_changed, rt))
        if self.hardware.power_fail is not None:
            self.hardware.power_fail.watch(self._power_fail_changed)
        for rt in self.connectors.values():
            if rt.hw.lock is not None and rt.hw.lock.locked and rt.transaction is None:
                self._spawn(self._unlock(rt), f"unlock-{rt.hw.id}")  # latched before a restart
        watchdog = LoopWatchdog(
            [rt.hw.contactor.interlock for rt in self.connectors.values()],
            self._loop_stalled,
            limit_s=self.loop_stall_s,
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(watchdog.run(), name="loop-watchdog")
                for rt in self.connectors.values():
                    cid = rt.hw.id
                    tasks.create_task(
                        rt.hw.pilot.sensor.run(
                            functools.partial(self._cp_changed, rt),
                            functools.partial(self._driver_event, rt),
                        ),
                        name=f"cp-{cid}",
                    )
                    tasks.create_task(self._poll_meter(rt), name=f"meter-{cid}")
                    if rt.hw.thermometer is not None:
                        tasks.create_task(self._poll_temperature(rt), name=f"temp-{cid}")
                if self.hardware.reader is not None:
                    tasks.create_task(
                        self.hardware.reader.run(self._card, self._reader_event), name="rfid"
                    )
                tasks.create_task(self._tick(), name="timers")
                await self._stop.wait()
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            self.hardware.open_all_contactors()
            self.events.close()
            for task in list(self._tasks):
                task.cancel()
            for rt in self.connectors.values():
                if rt.diode_retry is not None:
                    rt.diode_retry.cancel()

    def _guard(self, rt: ConnectorRuntime) -> None:
        """Give the connector's hazard detectors its contactor's interlock (module doc)."""
        interlock = rt.hw.contactor.interlock
        for name, driver in (("CP sensor", rt.hw.pilot.sensor), ("RCM", rt.hw.rcm)):
            if isinstance(driver, HazardDetector):
                driver.guard(interlock)
            else:
                log.warning(
                    "connector %d: the %s cannot trip the contactor itself; its hazards "
                    "open it through the event loop only",
                    rt.hw.id,
                    name,
                )
        thermometer = rt.hw.thermometer
        if isinstance(thermometer, OverheatDetector):
            thermometer.guard_above(interlock, rt.overtemp_c)

    def _loop_stalled(self, stall_s: float, tokens: list[int]) -> None:
        """The loop is back after the watchdog opened every coil (controller.loop_watchdog).

        Re-arm, then let each machine that still wants its contactor closed close it again
        through the normal close path; the journal, the RCM self-test, the settle time and
        the feedback check all apply again. Hazards reported meanwhile were fed before this
        (their callbacks were queued first), so the machine has already opened for them.
        """
        log.error("event loop was silent for %.2f s; the watchdog opened every contactor", stall_s)
        for rt, token in zip(self.connectors.values(), tokens, strict=True):
            rt.hw.contactor.interlock.rearm(token)
            if rt.machine.contactor_closed and not rt.hw.contactor.energized:
                log.warning(
                    "connector %d: closing again after the stall", rt.hw.id, extra=rt.log_fields()
                )
                self._execute(rt, [CloseContactor()])

    def request_stop(self) -> None:
        self._stop.set()

    def set_fault(self, kind: FaultKind, active: bool, connector_id: int = 0) -> None:
        """Raise or clear a fault on one connector, or with ``connector_id`` 0 on every
        connector (a fault of the whole charge point: the state database failing is
        InternalError, see controller.recovery; a phase contactor's is its connector's)."""
        runtimes = (
            list(self.connectors.values()) if connector_id == 0 else [self._runtime(connector_id)]
        )
        for rt in runtimes:
            self._feed(rt, FaultRaised(kind) if active else FaultCleared(kind))

    async def shutdown(self, reason: StopReason) -> None:
        """Stop every running transaction with ``reason`` and open every contactor."""
        if self.journal is not None:
            self.journal.note_shutdown(reason)  # dying before the stops are recorded: Reboot
        for rt in self.connectors.values():
            if rt.transaction is not None and rt.transaction.running:
                self._feed(rt, StopRequested(reason))
        self.hardware.open_all_contactors()

    # --- feeding the machines -------------------------------------------------------------

    def _feed(self, rt: ConnectorRuntime, event: Event) -> list[Command]:
        machine = rt.machine
        faults, offer = machine.active_faults, machine.offer
        commands = machine.handle(event, self._clock())
        self._execute(rt, commands)
        if machine.next_timer_at is not None:
            self._timers_changed.set()  # _tick sleeps until the earliest timer: recompute
        # Told after the hardware acted: publishing only queues, it never delays the above.
        if machine.active_faults != faults:
            self.events.publish(FaultsChanged(rt.hw.id, machine.active_faults))
        if isinstance(event, LimitChanged) or machine.offer != offer:
            self.events.publish(LimitsChanged(rt.hw.id, machine.limits, machine.offer))
        return commands

    async def _tick(self) -> None:
        """Feed :class:`Tick` to each machine whose timer is due. Sleeps until the earliest
        timer (at most ``TICK_S``: each wake-up is also the watchdog's "supervisor" beat);
        :meth:`_feed` wakes it when a timer may have come forward. No polling: every wake-up
        of the loop costs CPU, which an idle charger should not spend (docs/benchmarks.md).
        """
        while True:
            self._timers_changed.clear()
            times = [rt.machine.next_timer_at for rt in self.connectors.values()]
            due = min((t for t in times if t is not None), default=None)
            delay_s = TICK_S if due is None else min(TICK_S, max(0.0, due - self._clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_s):
                    await self._timers_changed.wait()
            self.beat("supervisor")
            self._publish_link_state()
            for rt in self.connectors.values():
                due = rt.machine.next_timer_at
                if due is not None and due <= self._clock():
                    self._feed(rt, Tick())

    def _publish_link_state(self) -> None:
        state = self.link_state()
        if state != self._link_state_published:
            self._link_state_published = state
            self.events.publish(LinkStateChanged(state))

    def _cp_changed(self, rt: ConnectorRuntime, reading: CpReading) -> None:
        previous = rt.machine.cp_state
        if reading.state is not None:
            self._feed(rt, CpChanged(reading.state))
        if reading.diode_ok:
            self._feed(rt, PilotVerified())
        # A car may arrive in C or D straight away (S2 already closed: C1, "EV ready"); its
        # cable is read as for one arriving in B, or no current could ever be offered.
        if reading.state in _CAR_STATES and previous in (None, CpState.A):
            self._spawn(self._read_cable(rt), f"pp-{rt.hw.id}")
            if not rt.rcm_passed:
                # Test the RCM as the car arrives: a broken one shows (Faulted) before a
                # card is tapped, and the first close need not wait for the test.
                self._rcm_self_test(rt)
        elif reading.state is CpState.A:
            rt.forget_rcm_test()  # the next car's session is tested afresh
            self._feed(rt, CableRatingChanged(None))

    async def _read_cable(self, rt: ConnectorRuntime) -> None:
        try:
            rating = await rt.hw.pilot.proximity.read_cable_rating_a()
        except DriverError as exc:
            log.warning(
                "connector %d: cable rating unreadable: %s", rt.hw.id, exc, extra=rt.log_fields()
            )
            rating = None
        self._feed(rt, CableRatingChanged(None if rating is None else float(rating)))

    def _power_fail_changed(self, failing: bool) -> None:
        """The UPS/supercap HAT's warning: the charger runs on its reserve. Every running
        transaction stops now (PowerLoss, recorded and queued while there is power) and every
        connector faults (contactor open) until the supply is back."""
        if failing:
            log.warning("power-fail warning: stopping every transaction (PowerLoss)")
            for rt in self.connectors.values():
                if rt.transaction is not None and rt.transaction.running:
                    self._feed(rt, StopRequested(StopReason.POWER_LOSS))
        else:
            log.warning("power-fail warning over: the supply is back")
        self.set_fault(FaultKind.POWER_FAIL, failing)
        if failing:
            self.hardware.open_all_contactors()

    def _judge_mains(self, rt: ConnectorRuntime, reading: MeterReading) -> None:
        """Raise or clear under-/over-voltage as the meter's phase voltages say."""
        before = rt.mains.fault
        after = rt.mains.update(reading.voltage_v)
        if after == before:
            return
        volts = ", ".join(f"{v:.0f}" for v in reading.voltage_v if v is not None)
        log.warning(
            "connector %d: mains %s V: %s",
            rt.hw.id,
            volts,
            after or f"{before} over",
            extra=rt.log_fields(),
        )
        if before is not None:
            self._feed(rt, FaultCleared(before))
        if after is not None:
            self._feed(rt, FaultRaised(after))

    def _rcm_changed(self, rt: ConnectorRuntime, tripped: bool) -> None:
        event = FaultRaised(FaultKind.RCD_TRIP) if tripped else FaultCleared(FaultKind.RCD_TRIP)
        self._feed(rt, event)

    def _driver_event(self, rt: ConnectorRuntime, event: DriverEvent) -> None:
        level = logging.WARNING if event.fault else logging.INFO
        log.log(
            level,
            "connector %d: %s %s: %s",
            rt.hw.id,
            event.device,
            event.kind,
            event.detail,
            extra=rt.log_fields(),
        )
        mapped = _FAULT_EVENTS.get((event.device, event.kind))
        if mapped is not None:
            kind, raised = mapped
            self._feed(rt, FaultRaised(kind) if raised else FaultCleared(kind))
            if kind is FaultKind.DIODE_FAULT and raised:
                if rt.diode_retry is not None:
                    rt.diode_retry.cancel()
                rt.diode_retry = asyncio.get_running_loop().call_later(
                    self.diode_retry_s, self._feed, rt, FaultCleared(FaultKind.DIODE_FAULT)
                )

    def _reader_event(self, event: DriverEvent) -> None:
        log.log(
            logging.WARNING if event.fault else logging.INFO,
            "rfid %s: %s",
            event.kind,
            event.detail,
        )
        raised = _READER_EVENTS.get(event.kind)
        if raised is None or raised == self._reader_faulty:
            return
        self._reader_faulty = raised
        # A broken reader does not stop a running session (cards are only needed to start
        # one); it is reported on every connector, so the CSMS sees ReaderFailure.
        for rt in self.connectors.values():
            if rt.transaction is None:
                self._feed(
                    rt,
                    FaultRaised(FaultKind.READER_FAILURE)
                    if raised
                    else FaultCleared(FaultKind.READER_FAILURE),
                )

    def _card(self, uid: str) -> None:
        rt = self._connector_for_card(uid)
        self._move_any_reservation(rt, uid)
        log.info("card %s presented (connector %d)", uid, rt.hw.id)
        if FaultKind.RCD_SELFTEST in rt.machine.active_faults:
            # A session attempt on a connector whose RCM failed its self-test: test again
            # first; the card counts once the fault is gone (or is refused if it stays).
            self._spawn(self._card_after_rcm_test(rt, uid), f"rcm-retry-{rt.hw.id}")
            return
        self._feed(rt, IdPresented(uid))

    def _move_any_reservation(self, rt: ConnectorRuntime, uid: str) -> None:
        """An "any connector" reservation (connector 0) of another id holds the connector
        ``uid`` was presented for: it moves to a connector still free, so the card is not
        refused while one is left for the reservation (OCPP 1.6 §5.13, 2.0.1 H01: one
        connector must remain for it, not a given one). With none free it stays, and the
        card is refused there as before. A card of the reservation's group is let through
        by the move as well; its start then uses the reservation up where it went."""
        res = rt.machine.reservation
        if (
            res is None
            or res.reservation_id not in self._zero_reservations
            or reservation_allows(res, uid, None)
        ):
            return
        for other in self.connectors.values():
            free = other.machine.status.status is ConnectorStatus.AVAILABLE
            if other is rt or other.machine.reservation is not None or not free:
                continue
            self._feed(other, res)
            moved = other.machine.reservation
            if moved is not None and moved.reservation_id == res.reservation_id:
                self._feed(rt, ReservationCancelled(res.reservation_id, ReservationEnd.REPLACED))
                log.info(
                    "reservation %d (any connector) moved from connector %d to %d for card %s",
                    res.reservation_id,
                    rt.hw.id,
                    other.hw.id,
                    uid,
                )
            return

    async def _card_after_rcm_test(self, rt: ConnectorRuntime, uid: str) -> None:
        await asyncio.shield(self._rcm_self_test(rt))
        self._feed(rt, IdPresented(uid))

    def _rcm_self_test(self, rt: ConnectorRuntime) -> asyncio.Task[bool]:
        """The connector's RCM self-test (hardware reference 5.3, IEC 62955: before each
        session): the one running, or a new one. Its result: True when it passed.

        A pass sets ``rt.rcm_passed`` and clears a standing RCD_SELFTEST fault; a failure
        raises RCD_SELFTEST (Faulted, GroundFailure: no session starts or closes until a
        later test passes, tried again at the next card or remote start). While the fault
        output is active (a residual current: RCD_TRIP already blocks charging) the test
        cannot run; it is not counted as failed, and runs at the next attempt to close.
        Loop thread; the task is shared, so callers await it through ``asyncio.shield``.
        """
        if rt.rcm_test is not None and not rt.rcm_test.done():
            return rt.rcm_test
        task = asyncio.create_task(self._run_rcm_self_test(rt), name=f"rcm-test-{rt.hw.id}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        rt.rcm_test = task
        return task

    async def _run_rcm_self_test(self, rt: ConnectorRuntime) -> bool:
        if rt.hw.rcm.tripped:
            return False
        epoch = rt.rcm_epoch
        try:
            await rt.hw.rcm.self_test()
        except PermanentFault as fault:
            log.error(
                "connector %d: RCM self-test failed: %s", rt.hw.id, fault, extra=rt.log_fields()
            )
            rt.rcm_passed = False
            self._feed(rt, FaultRaised(fault.kind))
            return False
        rt.rcm_passed = rt.rcm_epoch == epoch  # else it was for a car or session now gone
        if FaultKind.RCD_SELFTEST in rt.machine.active_faults:
            log.info("connector %d: RCM self-test passed again", rt.hw.id, extra=rt.log_fields())
            self._feed(rt, FaultCleared(FaultKind.RCD_SELFTEST))
        return True

    def _connector_for_card(self, uid: str) -> ConnectorRuntime:
        """One reader serves every connector: the card's own session, else a car waiting
        (on a connector reserved for the card first, on one reserved for another last)."""
        runtimes = list(self.connectors.values())

        def free(rt: ConnectorRuntime) -> bool:
            return rt.machine.transaction_id_tag is None

        def waiting(rt: ConnectorRuntime) -> bool:
            return free(rt) and rt.machine.cp_state in (CpState.B, CpState.C, CpState.D)

        def mine(rt: ConnectorRuntime) -> bool:
            res = rt.machine.reservation
            return res is not None and same_id(res.id_tag, uid)

        def others(rt: ConnectorRuntime) -> bool:
            return rt.machine.reservation is not None and not mine(rt)

        def own_session(rt: ConnectorRuntime) -> bool:
            tag = rt.machine.transaction_id_tag
            return tag is not None and same_id(tag, uid)

        preferences: list[Callable[[ConnectorRuntime], bool]] = [
            own_session,
            lambda rt: waiting(rt) and mine(rt),
            lambda rt: waiting(rt) and not others(rt),
            lambda rt: free(rt) and mine(rt),
            waiting,
            lambda rt: free(rt) and not others(rt),
            free,
        ]
        for wanted in preferences:
            for rt in runtimes:
                if wanted(rt):
                    return rt
        return runtimes[0]

    async def _poll_meter(self, rt: ConnectorRuntime) -> None:
        offline = False
        while True:
            try:
                rt.reading = await rt.hw.meter.read()
            except PermanentFault as fault:
                if not offline:
                    offline = True
                    self._feed(rt, FaultRaised(fault.kind))
            except DriverError as exc:
                log.warning("connector %d: meter: %s", rt.hw.id, exc, extra=rt.log_fields())
            else:
                if offline:
                    offline = False
                    self._feed(rt, FaultCleared(FaultKind.METER_OFFLINE))
                self._judge_mains(rt, rt.reading)
                if self.journal is not None and rt.transaction is not None:
                    self.journal.reading(rt.transaction, rt.reading.energy_import_wh)
                sample = MeterSample(rt.hw.id, utc_now(), rt.reading, rt.offered_a)
                if self.link is not None:
                    self.link.meter_sampled(sample, rt.transaction)
                tx = rt.transaction
                self.events.publish(MeterSampled(sample, None if tx is None else tx.local_id))
            self.beat(f"meter-{rt.hw.id}")
            await asyncio.sleep(METER_POLL_S)

    async def _poll_temperature(self, rt: ConnectorRuntime) -> None:
        assert rt.hw.thermometer is not None
        hot = False
        while True:
            try:
                celsius = await rt.hw.thermometer.read_c()
            except DriverError as exc:
                log.warning("connector %d: temperature: %s", rt.hw.id, exc, extra=rt.log_fields())
            else:
                rt.temperature_c = celsius
                if not hot and celsius >= rt.overtemp_c:
                    hot = True
                    log.warning(
                        "connector %d: %.1f °C: overtemperature",
                        rt.hw.id,
                        celsius,
                        extra=rt.log_fields(),
                    )
                    self._feed(rt, FaultRaised(FaultKind.OVERTEMPERATURE))
                elif hot and celsius <= rt.overtemp_c - OVERTEMP_HYSTERESIS_C:
                    hot = False
                    self._feed(rt, FaultCleared(FaultKind.OVERTEMPERATURE))
            await asyncio.sleep(TEMPERATURE_POLL_S if not hot else METER_POLL_S)

    # --- executing commands ---------------------------------------------------------------

    def _execute(self, rt: ConnectorRuntime, commands: Iterable[Command]) -> None:
        for command in commands:
            match command:
                case OpenContactor():
                    rt.hw.contactor.open()
                    rt.hw.pilot.sensor.set_vigilant(False)
                    self._spawn(self._verify_open(rt), f"verify-open-{rt.hw.id}")
                case CloseContactor():
                    rt.hw.pilot.sensor.set_vigilant(True)  # CP sampled fast while closed
                    self._spawn(self._close_contactor(rt), f"close-{rt.hw.id}")
                case OfferCurrent(current_a=current_a):
                    rt.offered_a = current_a if current_a >= 6.0 else 0.0
                    rt.hw.pilot.generator.offer_current(current_a)
                case SetStateF():
                    rt.offered_a = 0.0
                    rt.hw.pilot.generator.set_state_f()
                case RequestAuthorization(id_tag=id_tag):
                    self._spawn(self._authorize(rt, id_tag), f"authorize-{rt.hw.id}")
                case StartTransaction():
                    self._start_transaction(rt, command)
                case StopTransaction(reason=reason, id_tag=id_tag):
                    self._stop_transaction(rt, reason, id_tag)
                case StatusChanged():
                    self._status_changed(rt, command)
                case AuthorizationDropped(id_tag=id_tag, reason=reason):
                    log.info(
                        "connector %d: id %s dropped: %s",
                        rt.hw.id,
                        id_tag,
                        reason,
                        extra=rt.log_fields(),
                    )
                case AvailabilityAnswered() | RemoteStartAnswered() | ReservationAnswered():
                    future = rt.pending.pop(type(command), None)
                    if future is not None and not future.done():
                        future.set_result(command)
                case ReservationEnded():
                    self._reservation_ended(rt, command)

    async def _close_contactor(self, rt: ConnectorRuntime) -> None:
        """Close for the machine's ``CloseContactor``: record, RCM self-test, then the coil.

        Each await is a moment in which the machine may change its mind (a fault, an
        unplug, a stop, a lower limit: it then sent ``OpenContactor``); after each one the
        machine is asked again, and the coil is energized only while it still wants that.
        tests/test_safety_awaits.py pauses this at every await and injects each hazard.
        """
        tx = rt.transaction
        if self.journal is not None and tx is not None:
            # No energy flows before the session is on disk (its StartTransaction queued).
            recorded = await self.journal.committed(tx.local_id)
            if not recorded or not rt.machine.contactor_closed:
                return  # InternalError opens it, or the machine changed its mind meanwhile
        while not rt.rcm_passed:  # again when the test was for a car or session now gone
            passed = await asyncio.shield(self._rcm_self_test(rt))
            if not passed or not rt.machine.contactor_closed:
                return  # RCD_SELFTEST (or a trip) opened it, or the machine changed its mind
        try:
            await rt.hw.contactor.close()
        except PermanentFault as fault:
            log.error("connector %d: %s", rt.hw.id, fault, extra=rt.log_fields())
            self._feed(rt, FaultRaised(fault.kind))
            return
        if not rt.machine.contactor_closed:
            # The driver opens when open() comes while it waits; this keeps the promise
            # should the machine have changed its mind without reaching the driver.
            rt.hw.contactor.open()

    async def _lock(self, rt: ConnectorRuntime) -> None:
        """Latch the plug for the session; the contactor may close only once it holds
        (``LockChanged``). A lock that fails is LOCK_FAILURE (ConnectorLockFailure), which
        the next plug-in retries."""
        assert rt.hw.lock is not None
        try:
            await rt.hw.lock.lock()
        except PermanentFault as fault:
            log.error("connector %d: %s", rt.hw.id, fault, extra=rt.log_fields())
            self._feed(rt, LockChanged(False))
            self._feed(rt, FaultRaised(fault.kind))
            return
        if rt.transaction is None:  # the session ended meanwhile: release it again
            await self._unlock(rt)
            return
        self._feed(rt, LockChanged(True))

    async def _unlock(self, rt: ConnectorRuntime) -> bool:
        """Release the plug (the session ended, or UnlockConnector); False when it stays
        latched (LOCK_FAILURE: the cable is stuck, the connector is Faulted)."""
        assert rt.hw.lock is not None
        self._feed(rt, LockChanged(False))  # first: the contactor must not close meanwhile
        try:
            await rt.hw.lock.unlock()
        except PermanentFault as fault:
            log.error("connector %d: %s", rt.hw.id, fault, extra=rt.log_fields())
            self._feed(rt, FaultRaised(fault.kind))
            return False
        return True

    async def _verify_open(self, rt: ConnectorRuntime) -> None:
        try:
            await rt.hw.contactor.verify_open()
        except PermanentFault as fault:
            log.critical("connector %d: %s", rt.hw.id, fault, extra=rt.log_fields())
            self._feed(rt, FaultRaised(fault.kind))

    async def _authorize(self, rt: ConnectorRuntime, id_tag: str) -> None:
        if self.link is None:
            self._feed(rt, Authorized(id_tag, False))
            return
        result = await self.link.authorize(id_tag)
        self._feed(rt, Authorized(id_tag, result.accepted, result.parent_id))

    def _start_transaction(self, rt: ConnectorRuntime, command: StartTransaction) -> None:
        id_tag = command.id_tag
        energy = rt.reading.energy_import_wh if rt.reading is not None else 0.0
        reservation_id = command.reservation_id
        if reservation_id is None:
            reservation_id = self._use_zero_reservation(rt, id_tag, command.parent_id)
        local_id = None
        if isinstance(self.link, SessionIds):  # the link already named this session
            local_id = self.link.session_id(rt.hw.id)
        tx = Transaction(
            local_id=local_id or uuid.uuid4().hex,
            connector_id=rt.hw.id,
            id_tag=id_tag,
            meter_start_wh=energy,
            started_at=utc_now(),
            parent_id=command.parent_id,
            reservation_id=reservation_id,
        )
        rt.transaction = tx
        if rt.hw.lock is not None:  # the socket latches the plug before mains may reach it
            self._spawn(self._lock(rt), f"lock-{rt.hw.id}")
        log.info(
            "connector %d: transaction %s started for %s at %.0f Wh",
            rt.hw.id,
            tx.local_id,
            id_tag,
            energy,
            extra=rt.log_fields(),
        )
        if self.journal is not None:
            self.journal.started(tx)  # recorded before the link queues StartTransaction
        if self.link is not None:
            self.link.transaction_started(tx)
        self.events.publish(TransactionStarted(_copy(tx)))

    def _stop_transaction(self, rt: ConnectorRuntime, reason: StopReason, id_tag: str) -> None:
        tx = rt.transaction
        if tx is None:
            return
        tx.meter_stop_wh = (
            rt.reading.energy_import_wh if rt.reading is not None else tx.meter_start_wh
        )
        tx.stopped_at = utc_now()
        tx.stop_reason = reason
        tx.stop_id_tag = id_tag if reason is StopReason.LOCAL else None
        rt.transaction = None
        rt.forget_rcm_test()  # each session gets its own RCM self-test before closing
        if rt.hw.lock is not None:  # the contactor is open: the plug is released
            self._spawn(self._unlock(rt), f"unlock-{rt.hw.id}")
        log.info(
            "connector %d: transaction %s stopped (%s) at %.0f Wh, %.0f Wh charged",
            rt.hw.id,
            tx.local_id,
            reason,
            tx.meter_stop_wh,
            tx.meter_stop_wh - tx.meter_start_wh,
            extra={**rt.log_fields(), "transaction_id": tx.csms_id or tx.local_id},
        )
        if self.link is not None:
            self.link.transaction_stopped(tx)
        if self.journal is not None:
            self.journal.stopped(tx)  # after StopTransaction is queued (controller.recovery)
        self.events.publish(TransactionStopped(_copy(tx)))

    def _use_zero_reservation(
        self, rt: ConnectorRuntime, id_tag: str, parent_id: str | None
    ) -> int | None:
        """A connector-0 reservation of this id held by another connector: used up now."""
        for other in self.connectors.values():
            res = other.machine.reservation
            if (
                other is not rt
                and res is not None
                and res.reservation_id in self._zero_reservations
                and reservation_allows(res, id_tag, parent_id)
            ):
                self._feed(other, ReservationCancelled(res.reservation_id, ReservationEnd.USED))
                return res.reservation_id
        return None

    def _reservation_ended(self, rt: ConnectorRuntime, command: ReservationEnded) -> None:
        log.info(
            "connector %d: reservation %d ended: %s",
            rt.hw.id,
            command.reservation_id,
            command.reason,
            extra=rt.log_fields(),
        )
        if command.reason is ReservationEnd.REPLACED:
            return  # it lives on, on another connector
        self._zero_reservations.discard(command.reservation_id)
        if isinstance(self.link, ReservationListener):
            self.link.reservation_ended(command.reservation_id, command.reason)

    def _status_changed(self, rt: ConnectorRuntime, command: StatusChanged) -> None:
        if rt.status == command:
            return
        rt.status = command
        log.info(
            "connector %d: %s%s",
            rt.hw.id,
            command.status,
            f" ({command.fault})" if command.fault else "",
            extra=rt.log_fields(),
        )
        if self.link is not None:
            self.link.status_changed(rt.hw.id, command.status, command.fault)
        self.events.publish(StatusEvent(rt.hw.id, command.status, command.fault))
        if self.hardware.led is not None:
            self.hardware.led.show(self._led_pattern())
        reader = self.hardware.reader
        if isinstance(reader, PollingCardReader):
            # A car plugged in and waiting for a card: poll fast, a tap must start the session
            # at once; otherwise poll at the idle rate, which costs less CPU all day long.
            reader.expect_card(
                any(
                    r.status is not None and r.status.status == "Preparing"
                    for r in self.connectors.values()
                )
            )

    def _led_pattern(self) -> LedPattern:
        statuses = {rt.status.status if rt.status else None for rt in self.connectors.values()}
        if any(rt.machine.active_faults for rt in self.connectors.values()):
            return LedPattern.FAULT
        if "Charging" in statuses:
            return LedPattern.CHARGING
        if statuses & {"Preparing", "SuspendedEV", "SuspendedEVSE", "Finishing"}:
            return LedPattern.WAITING
        return LedPattern.IDLE

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # --- ChargePointControl ---------------------------------------------------------------

    @property
    def connector_ids(self) -> tuple[int, ...]:
        return tuple(self.connectors)

    def _runtime(self, connector_id: int) -> ConnectorRuntime:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise LookupError(f"no connector {connector_id}") from None

    def view(self, connector_id: int) -> ConnectorView:
        rt = self._runtime(connector_id)
        status = rt.status or rt.machine.status
        return ConnectorView(
            connector_id,
            status.status,
            status.fault,
            rt.transaction,
            rt.reading,
            rt.offered_a,
            rt.machine.limits.lowest_except(LimitSource.CSMS),
            thermometer=rt.hw.thermometer is not None,
            temperature_c=rt.temperature_c,
            ev_connected=rt.machine.cp_state in EV_CONNECTED_STATES,
        )

    def snapshot(self) -> StatusSnapshot:
        """The whole charge point now (controller.status_snapshot): for the sim status,
        the systemd status line and any listener. Loop thread only."""
        connectors = sorted(self.connectors.values(), key=lambda rt: rt.hw.id)
        return StatusSnapshot(
            tuple(ConnectorSnapshot.of(rt) for rt in connectors),
            self.link_state(),
            self.outbox_other_versions,
        )

    def transaction_by_csms_id(self, csms_id: int) -> Transaction | None:
        for rt in self.connectors.values():
            if rt.transaction is not None and rt.transaction.csms_id == csms_id:
                return rt.transaction
        return None

    async def _ask(self, rt: ConnectorRuntime, event: Event, answer: type) -> object:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        rt.pending[answer] = future
        self._feed(rt, event)
        try:
            return await asyncio.wait_for(future, 1.0)
        finally:
            rt.pending.pop(answer, None)

    async def remote_start(self, id_tag: str, connector_id: int | None, authorized: bool) -> bool:
        if connector_id is None:
            candidates = [rt for rt in self.connectors.values() if rt.transaction is None]
            fitting = [
                rt for rt in candidates if reservation_allows(rt.machine.reservation, id_tag, None)
            ]
            candidates = fitting or candidates
            waiting = [rt for rt in candidates if rt.machine.cp_state in (CpState.B, CpState.C)]
            if not (waiting or candidates):
                return False
            rt = (waiting or candidates)[0]
        else:
            rt = self._runtime(connector_id)
        if FaultKind.RCD_SELFTEST in rt.machine.active_faults:
            await asyncio.shield(self._rcm_self_test(rt))  # a session attempt: test again
        answer = await self._ask(rt, RemoteStart(id_tag, authorized), RemoteStartAnswered)
        assert isinstance(answer, RemoteStartAnswered)
        return answer.accepted

    async def remote_stop(self, tx: Transaction) -> bool:
        rt = self._runtime(tx.connector_id)
        if rt.transaction is not tx:
            return False
        self._feed(rt, StopRequested(StopReason.REMOTE))
        return True

    async def deauthorize(self, tx: Transaction) -> None:
        rt = self._runtime(tx.connector_id)
        if rt.transaction is tx:
            self._feed(rt, StopRequested(StopReason.DE_AUTHORIZED))

    async def transaction_answered(
        self, tx: Transaction, parent_id: str | None, withhold_energy: bool
    ) -> None:
        if parent_id is not None:
            tx.parent_id = parent_id
        rt = self._runtime(tx.connector_id)
        if rt.transaction is tx:
            self._feed(rt, TransactionAnswered(parent_id, withhold_energy))

    async def reset(self, kind: ResetKind) -> Answer:
        reason = StopReason.HARD_RESET if kind is ResetKind.HARD else StopReason.SOFT_RESET
        await self.shutdown(reason)
        self.restart_requested = kind
        # Give the link a moment to send the StopTransactions before the restart.
        loop = asyncio.get_running_loop()
        loop.call_later(0.5 if kind is ResetKind.SOFT else 0.1, self.request_stop)
        return Answer.ACCEPTED

    async def stop_transaction(self, tx: Transaction, reason: StopReason) -> bool:
        rt = self._runtime(tx.connector_id)
        if rt.transaction is not tx:
            return False
        self._feed(rt, StopRequested(reason))
        return True

    async def unlock(self, connector_id: int) -> Answer:
        """UnlockConnector: stop the session (UnlockCommand), then release the plug.
        NotSupported without a lock actuator (a tethered cable)."""
        rt = self._runtime(connector_id)
        if rt.transaction is not None:
            self._feed(rt, StopRequested(StopReason.UNLOCK_COMMAND))
        if rt.hw.lock is None:
            return Answer.NOT_SUPPORTED
        return Answer.UNLOCKED if await self._unlock(rt) else Answer.UNLOCK_FAILED

    async def change_availability(self, connector_id: int, available: bool) -> Answer:
        runtimes = (
            list(self.connectors.values()) if connector_id == 0 else [self._runtime(connector_id)]
        )
        outcomes = []
        for rt in runtimes:
            answer = await self._ask(rt, AvailabilityChanged(available), AvailabilityAnswered)
            assert isinstance(answer, AvailabilityAnswered)
            outcomes.append(str(answer.outcome))
            if self.availability_store is not None:  # Accepted or Scheduled: it is wanted
                await self.availability_store.save(rt.hw.id, available)
        if "Scheduled" in outcomes:
            return Answer.SCHEDULED
        return Answer.ACCEPTED

    async def reserve(
        self,
        connector_id: int,
        id_tag: str,
        parent_id: str | None,
        expiry: dt.datetime,
        reservation_id: int,
    ) -> Answer:
        if connector_id == 0:
            target = self._zero_target(reservation_id)
            if target is None:
                return self._zero_refusal()
            rt = target
        else:
            rt = self._runtime(connector_id)
        previous = [
            other
            for other in self.connectors.values()
            if other is not rt
            and other.machine.reservation is not None
            and other.machine.reservation.reservation_id == reservation_id
        ]
        expires_at = self._clock() + (expiry - utc_now()).total_seconds()
        event = Reserved(reservation_id, id_tag, parent_id, expires_at)
        was_zero = reservation_id in self._zero_reservations
        if connector_id == 0:  # before the status change it brings, which a link reads
            self._zero_reservations.add(reservation_id)
        answer = await self._ask(rt, event, ReservationAnswered)
        assert isinstance(answer, ReservationAnswered)
        if answer.outcome is not ReservationOutcome.ACCEPTED and not was_zero:
            self._zero_reservations.discard(reservation_id)
        if answer.outcome is ReservationOutcome.ACCEPTED:
            for other in previous:
                self._feed(other, ReservationCancelled(reservation_id, ReservationEnd.REPLACED))
            if connector_id == 0:
                self._zero_reservations.add(reservation_id)
            else:
                self._zero_reservations.discard(reservation_id)
            log.info(
                "connector %d reserved for %s until %s (reservation %d%s)",
                rt.hw.id,
                id_tag,
                expiry.isoformat(),
                reservation_id,
                ", any connector" if connector_id == 0 else "",
                extra=rt.log_fields(),
            )
        return Answer(answer.outcome.value)

    def holds_any_reservation(self, connector_id: int) -> bool:
        """Connector ``connector_id`` holds a reservation made for any connector
        (:class:`~controller.domain.AnyReservationHolders`). Loop thread only."""
        res = self._runtime(connector_id).machine.reservation
        return res is not None and res.reservation_id in self._zero_reservations

    def _zero_target(self, reservation_id: int) -> ConnectorRuntime | None:
        """Where a connector-0 reservation goes: where it is already, else a free connector."""
        runtimes = list(self.connectors.values())
        for rt in runtimes:
            res = rt.machine.reservation
            if res is not None and res.reservation_id == reservation_id:
                return rt
        for rt in runtimes:
            if rt.machine.status.status is ConnectorStatus.AVAILABLE:
                return rt
        return None

    def _zero_refusal(self) -> Answer:
        statuses = {rt.machine.status.status for rt in self.connectors.values()}
        if statuses <= {ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE}:
            if ConnectorStatus.FAULTED in statuses:
                return Answer.FAULTED
            return Answer.UNAVAILABLE
        return Answer.OCCUPIED

    async def cancel_reservation(self, reservation_id: int) -> Answer:
        for rt in self.connectors.values():
            res = rt.machine.reservation
            if res is not None and res.reservation_id == reservation_id:
                self._feed(rt, ReservationCancelled(reservation_id))
                return Answer.ACCEPTED
        return Answer.REJECTED

    def set_current_limit(self, connector_id: int, current_a: float | None) -> None:
        """The CSMS's smart-charging limit: :meth:`set_limit` of :attr:`LimitSource.CSMS`."""
        self.set_limit(connector_id, LimitSource.CSMS, current_a)

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        """Set ``source``'s limit on a connector (0 = every connector) to ``current_a``, or
        clear it with None; every other source keeps its limit. Below 6 A the car is
        paused. Raises LookupError for an unknown connector and ValueError for a negative
        or non-finite current, before any connector changed. Loop thread only."""
        check_limit(current_a)
        runtimes = (
            list(self.connectors.values()) if connector_id == 0 else [self._runtime(connector_id)]
        )
        for rt in runtimes:
            self._feed(rt, LimitChanged(current_a, source))

    def apply_settings(self, settings: CsmsSettings) -> None:
        change = {
            "stop_on_ev_disconnect": settings.stop_on_ev_disconnect,
            "connection_timeout_s": settings.connection_timeout_s,
        }
        for rt in self.connectors.values():
            settings_now = dataclasses.replace(rt.machine.settings, **change)  # type: ignore[arg-type]
            self._feed(rt, SettingsChanged(settings_now))


class _Stopped(Exception):
    """Raised inside the task group to end :meth:`Supervisor.run` on request."""


def _copy(tx: Transaction) -> Transaction:
    """A copy for listeners: the supervisor and the CSMS link go on changing the original
    (its CSMS id, its samples), and a listener must see the transaction as it was."""
    return dataclasses.replace(tx, samples=list(tx.samples))
