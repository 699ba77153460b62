"""Runs the 1/3-phase switch of one connector: the pure rules, the phase contactor, the charger.

:class:`~controller.energy.phase_switch.PhaseChoice` decides from the offers on three
phases and on one (the connector's first wired phase): the fuse rule's, capped in a solar
mode by what the surplus gives on that many phases (:meth:`PhaseControl.offers`); the
:class:`~controller.energy.phase_switch.PhaseSwitch` sequence does the switch. This module
only moves things between them and the world, on the loop thread:

- what it sees: the main contactor's coil and feedback, the phase contactor's feedback
  (read from the drivers), the car's current (its meter's ``MeterSampled``) and the
  connector's faults (``FaultsChanged``);
- what it does: the ``PHASE_SWITCH`` limit (0 A holds the PWM and keeps the main contactor
  open; ``Supervisor.set_limit``), the phase contactor's coil, a connector fault
  (``Supervisor.set_fault``), and the fuse manager's view of the connector's phases.

The phase contactor's coil is driven here, not through the connector machine: it is the
energy edge's device, as the grid meter is. One more interlock sits at the coil: whatever
the sequence believes, it is not moved while the main contactor's coil is energized or its
feedback shows the main contacts closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from controller.config import PhaseSwitchConfig
from controller.domain import ConnectorView
from controller.energy.fuse import fuse_limits
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager
from controller.energy.phase_switch import (
    Command,
    HoldPwm,
    Observation,
    PhaseChoice,
    PhaseSwitch,
    PhaseSwitchSettings,
    RaiseFault,
    ReleasePwm,
    SetPhases,
)
from controller.events import FaultsChanged, MeterSampled, Resync, SupervisorEvent
from controller.limits import LimitSource
from drivers.contactor import GpioContactor
from drivers.errors import FaultKind, PermanentFault

log = logging.getLogger(__name__)

#: How often the sequence looks at the contactors while a switch is under way (s), and
#: at the offers otherwise (the minimum interval is minutes: a second is plenty).
BUSY_POLL_S = 0.1
IDLE_POLL_S = 1.0


class SurplusCaps(Protocol):
    """What the phase choice needs of the charging modes (the runner implements it)."""

    def surplus_cap_a(self, connector_id: int, car_phases: int) -> float | None:
        """The surplus per phase on ``car_phases`` phases (A); None: the mode takes no
        account of it."""
        ...


@runtime_checkable
class ChargerControl(Protocol):
    """What the phase switch needs of the supervisor (loop thread)."""

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        """Set or clear ``source``'s limit on one connector."""
        ...

    def set_fault(self, kind: FaultKind, active: bool, connector_id: int = 0) -> None:
        """Raise or clear a fault on one connector."""
        ...

    def view(self, connector_id: int) -> ConnectorView:
        """How the connector is now (after a Resync: the faults missed)."""
        ...


class PhaseControl:
    """One connector's phase switch at work. Loop thread only."""

    def __init__(
        self,
        config: PhaseSwitchConfig,
        wiring: ConnectorWiring,
        main: GpioContactor,
        phase: GpioContactor,
        manager: FuseManager,
        feed: GridFeed,
        charger: ChargerControl,
        clock: Callable[[], float] = time.monotonic,
        modes: SurplusCaps | None = None,
    ) -> None:
        self.connector_id = config.connector
        self._modes = modes
        self.machine = PhaseSwitch(
            PhaseSwitchSettings(
                min_interval_s=config.min_interval_s,
                zero_current_timeout_s=config.zero_current_timeout_s,
                feedback_timeout_s=config.feedback_timeout_s,
            )
        )
        self.choice = PhaseChoice(config.min_interval_s)
        self._wiring = wiring
        self._main = main
        self._phase = phase
        self._manager = manager
        self._feed = feed
        self._charger = charger
        self._clock = clock
        self._car_a = 0.0
        self._faults: frozenset[FaultKind] = frozenset()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wired_phases = 0
        self._rewire()  # the coil starts de-energized: one phase

    # --- what it sees -----------------------------------------------------------------------

    async def on_event(self, event: SupervisorEvent) -> None:
        """Broadcast listener: the car's current and the connector's faults."""
        if isinstance(event, MeterSampled) and event.sample.connector_id == self.connector_id:
            self._car_a = max((a or 0.0) for a in event.sample.reading.current_a)
            self._wake.set()
        elif isinstance(event, FaultsChanged) and event.connector_id == self.connector_id:
            self._faults = event.faults
            self._wake.set()
        elif isinstance(event, Resync):  # events were missed: the view says how things are
            view = self._charger.view(self.connector_id)
            # The view names the most serious fault only: enough to start no switch, and
            # ours hidden behind another still keeps the main contactor open by itself.
            self._faults = frozenset() if view.fault is None else frozenset({view.fault})
            self._wake.set()

    def observation(self) -> Observation:
        """The contactors as their drivers see them now, the car's last current, faults."""
        main_closed = self._main.energized or bool(self._main.main_contacts_closed)
        feedback = self._phase.main_contacts_closed
        phases = None if feedback is None else 3 if feedback else 1
        return Observation(main_closed, self._car_a, phases, self._faults)

    def offers(self, now: float) -> tuple[float, float]:
        """What the connector would be offered on three phases and on one (A): the fuse
        rule's offer, and in a solar mode no more than the surplus gives on that many
        phases (a surplus covering 6 A on one phase but not on three charges on one)."""
        loads = self._manager.loads()
        ours = next(load for load in loads if load.connector_id == self.connector_id)
        others = [load for load in loads if load.connector_id != self.connector_id]
        rotation = self._wiring.rotation
        offers = []
        for phases in (frozenset(rotation), frozenset(rotation[:1])):
            candidate = dataclasses.replace(ours, grid_phases=phases)
            limits = fuse_limits(self._manager.site, self._feed.latest, [*others, candidate], now)
            offer = min(limits[self.connector_id], self._wiring.max_current_a)
            if self._modes is not None:
                cap = self._modes.surplus_cap_a(self.connector_id, len(phases))
                offer = offer if cap is None else min(offer, cap)
            offers.append(offer)
        return offers[0], offers[1]

    # --- what it does -----------------------------------------------------------------------

    def step(self) -> None:
        """Decide, advance the sequence with a fresh look, and act."""
        now = self._clock()
        wanted = self.choice.decide(self.machine.phases, *self.offers(now), now)
        commands = self.machine.want(wanted, now)
        self._execute(commands)
        self._execute(self.machine.observe(self.observation(), now))

    def _execute(self, commands: list[Command]) -> None:
        for command in commands:
            match command:
                case HoldPwm():
                    log.info(
                        "connector %d: pausing for a switch to %d phase(s)",
                        self.connector_id,
                        self.machine.wanted,
                    )
                    self._charger.set_limit(self.connector_id, LimitSource.PHASE_SWITCH, 0.0)
                case ReleasePwm():
                    self._charger.set_limit(self.connector_id, LimitSource.PHASE_SWITCH, None)
                case SetPhases(phases=phases):
                    self._drive_coil(phases)
                case RaiseFault(kind=kind, detail=detail):
                    log.error("connector %d: %s", self.connector_id, detail)
                    self._charger.set_fault(kind, True, self.connector_id)
        if commands:
            self._rewire()

    def _rewire(self) -> None:
        """Tell the fuse manager the phases the car may now draw on."""
        phases = self.machine.phases
        if phases == self._wired_phases:
            return
        self._wired_phases = phases
        rotation = self._wiring.rotation if phases == 3 else self._wiring.rotation[:1]
        self._manager.rewire(dataclasses.replace(self._wiring, rotation=rotation))
        log.info("connector %d: charging on %d phase(s)", self.connector_id, phases)

    def _drive_coil(self, phases: int) -> None:
        """Energize (3) or de-energize (1) the phase contactor, never under the main's load."""
        if self._main.energized or self._main.main_contacts_closed:
            log.critical(
                "connector %d: phase contactor NOT switched: the main contactor is closed",
                self.connector_id,
            )
            return  # the sequence sees no feedback change and faults
        if phases == 3:
            self._spawn(self._phase.close(), "phase-contactor-close")
        else:
            self._phase.open()
            self._spawn(self._phase.verify_open(), "phase-contactor-verify-open")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(self._report(coro), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, coro: Coroutine[Any, Any, None]) -> None:
        # The driver's own verdict is logged; the sequence judges the feedback itself and
        # raises the connector's fault (one place decides, with its own timeout).
        try:
            await coro
        except PermanentFault as fault:
            log.warning("connector %d: %s", self.connector_id, fault)
        self._wake.set()

    async def run(self) -> None:
        """Step at every event and poll; runs until cancelled."""
        while True:
            self.step()
            timeout = BUSY_POLL_S if self.machine.held else IDLE_POLL_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
