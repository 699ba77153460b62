"""Runs each connector's charging mode: readings in, ``LimitSource.MODE`` out.

It wakes on every grid reading (and at least every :data:`TICK_S`, for the delays and the
schedule), reads what each car draws from the fuse manager (which hears the connectors'
meters), computes the surplus and the fuse rule's offer, and steps the pure mode machine
(:mod:`controller.energy.modes`). A limit that did not change is not sent again, so the
PWM moves only when the mode's decision does.

The mode of each connector is the user's choice: from the page, the API or MQTT through
:meth:`ModeRunner.set_mode`, kept in the state database (settings namespace
``energy_mode``) so that a restart keeps it; ``[energy] mode`` is only the first choice.
So are its thresholds (:meth:`ModeRunner.set_thresholds`,
:mod:`controller.energy.thresholds`), which apply at the next step, without a restart: the
delays count from when the surplus last changed sides as before, and a run or a pause in
progress keeps the minimum it began with when the new one is shorter (a longer one applies
at once), so a change never costs the contactor an operation the old minimum spared it.

Without a grid meter (a standalone charger with ``[energy]`` and no ``[site]``) the runner
has no fuse manager and no feed: it wakes every :data:`TICK_S` for the schedule, the fuse
rule sets no bound, and the modes that need the surplus are refused (:attr:`choices`),
at run time as in the configuration, so no connector is ever held waiting for a surplus
that nothing measures. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from controller.config import Config
from controller.domain import ConnectorView
from controller.energy import schedule as planner
from controller.energy.fuse import fuse_limits, is_fresh
from controller.energy.grid import GridFeed
from controller.energy.manager import FuseManager, LimitSink, round_down
from controller.energy.mode_config import ModeSettings, parse_energy
from controller.energy.modes import NEEDS_GRID, NO_GRID_METER, Mode, ModeState, step, surplus_a
from controller.energy.thresholds import ThresholdLayers
from controller.events import (
    Broadcast,
    MeterSampled,
    Resync,
    SupervisorEvent,
    TransactionStarted,
    TransactionStopped,
)
from controller.limits import LimitSource
from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

#: The longest the runner sleeps without a grid reading (s): delays are checked this often.
TICK_S = 1.0
#: Where the user's choice of mode is kept (the state database's settings table).
NAMESPACE = "energy_mode"
NOMINAL_VOLTAGE_V = 230.0
#: The broadcast queue of the runner: it needs only the newest reading and the sessions.
EVENTS_MAXLEN = 64

_UNSENT = object()


class ModeRunner:
    """Keeps every connector's ``LimitSource.MODE`` at what its mode decides."""

    def __init__(
        self,
        settings: ModeSettings,
        fuse: FuseManager | None,
        feed: GridFeed | None,
        sink: LimitSink,
        full_power_w: Mapping[int, float],
        clock: Callable[[], float] = time.monotonic,
        local_now: Callable[[], dt.datetime] = dt.datetime.now,
        views: Callable[[int], ConnectorView] | None = None,
    ) -> None:
        if (fuse is None) != (feed is None):
            raise ValueError("a fuse manager and its grid feed go together")
        self.settings = settings
        self._fuse = fuse
        self._feed = feed
        #: Where limits go (the supervisor); a bench may wrap it to stamp each one.
        self.sink = sink
        self._full_power_w = dict(full_power_w)
        self._clock = clock
        self._local_now = local_now
        self._modes: dict[int, Mode] = dict(settings.modes)
        #: Each connector's thresholds: configured, and changed at run time.
        self.thresholds = ThresholdLayers(settings.default, settings.own)
        self._states = {cid: ModeState() for cid in self._modes}
        self._sent: dict[int, object] = {cid: _UNSENT for cid in self._modes}
        self._energy_wh: dict[int, float] = {}
        self._meter_start_wh: dict[int, float] = {}
        self._storage: Storage | None = None
        #: How a connector is now (the supervisor's ``view``): after a :class:`Resync` a
        #: session begun or ended among the events lost is read from it, so a departure plan
        #: never counts a running session from zero (and charges past its target).
        self._views = views
        #: The surplus per car phase (A) each connector saw at the last step (None: unknown).
        self.surplus: dict[int, float | None] = {cid: None for cid in self._modes}

    @property
    def modes(self) -> Mapping[int, Mode]:
        return dict(self._modes)

    @property
    def choices(self) -> tuple[Mode, ...]:
        """The modes this charger can run: the solar ones need a grid meter. (The schedule
        also needs a connector's window or departure: :meth:`set_mode` says so.)"""
        return tuple(m for m in Mode if not (m in NEEDS_GRID and self._fuse is None))

    def _refusal(self, connector_id: int, mode: Mode) -> str | None:
        """Why ``mode`` cannot run on the connector (None: it can)."""
        if mode not in self.choices:
            return f"{mode} {NO_GRID_METER}"
        if mode is Mode.SCHEDULE and self.thresholds[connector_id].schedule.empty:
            return "no schedule configured (off_peak or departure)"
        return None

    async def restore(self, storage: Storage) -> None:
        """Take the modes and thresholds the user chose in an earlier run; later choices are
        kept there. A schedule mode without a schedule now is not taken."""
        self._storage = storage
        await self.thresholds.restore(storage)
        try:
            stored = await storage.load_settings(NAMESPACE)
        except StorageError as exc:
            log.error("charging modes not read (%s): the configured ones apply", exc)
            return
        for key, value in stored.items():
            if key.isdigit() and int(key) in self._modes and value in set(Mode):
                why = self._refusal(int(key), Mode(value))
                if why is not None:  # chosen under another configuration
                    log.warning(
                        "connector %s: the stored charging mode %s is not possible now (%s): "
                        "the configured %s applies",
                        key,
                        value,
                        why,
                        self._modes[int(key)],
                    )
                    continue
                self._modes[int(key)] = Mode(value)
        for cid, mode in self._modes.items():
            if mode is Mode.SCHEDULE and self.thresholds[cid].schedule.empty:
                # The file now puts it in the schedule mode, which the file's own window or
                # departure allows; a window cleared at run time would hold the car for ever.
                log.warning("connector %d: schedule mode: the configured schedule again", cid)
                self.thresholds.change(cid, {"off_peak": None, "departure": None})
                await self.thresholds.save(cid)
        log.info("charging modes: %s", {cid: str(m) for cid, m in self._modes.items()})

    async def set_mode(self, connector_id: int, mode: Mode) -> None:
        """The user's choice for one connector: applied now, kept across restarts.

        KeyError for a connector that does not exist, ValueError (saying why) for a mode
        not possible here (a solar mode without a grid meter, a schedule mode without a
        schedule); the connector then keeps its mode.
        """
        if connector_id not in self._modes:
            raise KeyError(connector_id)
        why = self._refusal(connector_id, mode)
        if why is not None:
            raise ValueError(why)
        self._modes[connector_id] = mode
        log.info("charging mode of connector %d: %s", connector_id, mode)
        self.step()
        if self._storage is not None:
            try:
                await self._storage.save_setting(NAMESPACE, str(connector_id), str(mode))
            except StorageError as exc:
                log.error("charging mode of connector %d not stored: %s", connector_id, exc)

    async def set_thresholds(self, connector_id: int, values: Mapping[str, Any]) -> None:
        """A change of some of a connector's thresholds (None forgets the key's run-time
        change): applied at once, kept across restarts. KeyError: no such connector;
        ConfigurationError (drivers.errors) names the bad key; nothing changes then."""
        before = self.thresholds[connector_id].timing
        self.thresholds.change(
            connector_id, values, needs_schedule=self._modes[connector_id] is Mode.SCHEDULE
        )
        state = self._states[connector_id]
        kept = before.min_run_s if state.charging else before.min_pause_s
        self._states[connector_id] = replace(state, kept_s=max(state.kept_s, kept))
        log.info("thresholds of connector %d: %s", connector_id, dict(values))
        self.step()
        await self.thresholds.save(connector_id)

    async def on_event(self, event: SupervisorEvent) -> None:
        """Broadcast listener: each session's energy, for a departure plan."""
        if isinstance(event, MeterSampled):
            self._energy_wh[event.sample.connector_id] = event.sample.reading.energy_import_wh
        elif isinstance(event, TransactionStarted):
            tx = event.transaction
            self._meter_start_wh[tx.connector_id] = tx.meter_start_wh
        elif isinstance(event, TransactionStopped):
            self._meter_start_wh.pop(event.transaction.connector_id, None)
        elif isinstance(event, Resync):
            self.resync()

    def resync(self) -> None:
        """Events were lost (the broadcast's queue overflowed): each connector's session and
        meter reading are read again from its view, and the limits decided anew."""
        if self._views is None:
            return
        for cid in self._modes:
            view = self._views(cid)
            tx = view.transaction
            if tx is not None and tx.running:
                self._meter_start_wh[cid] = tx.meter_start_wh
            else:
                self._meter_start_wh.pop(cid, None)
            if view.reading is not None:
                self._energy_wh[cid] = view.reading.energy_import_wh
        self.step()

    def _session_wh(self, connector_id: int) -> float:
        start = self._meter_start_wh.get(connector_id)
        if start is None:
            return 0.0
        return max(0.0, self._energy_wh.get(connector_id, start) - start)

    def _grid_terms(self, now: float) -> dict[int, tuple[float | None, float]]:
        """Each connector's surplus per car phase (A; None: unknown) and the fuse rule's
        offer (A, rounded down); without a grid meter: unknown and no bound."""
        if self._fuse is None or self._feed is None:
            return {cid: (None, math.inf) for cid in self._modes}
        sample = self._feed.latest
        loads = self._fuse.loads()
        fresh = sample is not None and is_fresh(self._fuse.site, sample, now)
        offers = fuse_limits(self._fuse.site, sample, loads, now)
        shared = self._fuse.limits  # with [[circuit]] shares: what it set last
        terms: dict[int, tuple[float | None, float]] = {}
        for load in loads:
            cid = load.connector_id
            available = None
            if fresh and sample is not None:
                grid = [sample.current_a[p] or 0.0 for p in self._fuse.site.grid_phases]
                available = surplus_a(grid, load.current_a, len(load.grid_phases))
            terms[cid] = (available, round_down(min(offers[cid], shared.get(cid, math.inf))))
        return terms

    def step(self) -> Mapping[int, float | None]:
        """Decide every connector's mode limit for the newest reading now; send changes."""
        now = self._clock()
        minute = planner.minute_of_day(self._local_now())
        decided: dict[int, float | None] = {}
        for cid, (available, fuse_a) in self._grid_terms(now).items():
            self.surplus[cid] = available
            thresholds = self.thresholds[cid]
            scheduled = planner.allows(
                thresholds.schedule,
                minute,
                self._session_wh(cid),
                self._full_power_w[cid],
                charging=self._states[cid].charging and cid in self._meter_start_wh,
            )
            state, limit = step(
                self._modes[cid],
                thresholds.timing,
                self._states[cid],
                available,
                fuse_a,
                now,
                scheduled,
            )
            if state.charging != self._states[cid].charging:
                log.info(
                    "connector %d (%s): %s",
                    cid,
                    self._modes[cid],
                    "charging" if state.charging else "paused",
                )
            self._states[cid] = state
            decided[cid] = limit
            if self._sent[cid] != limit:
                self.sink.set_limit(cid, LimitSource.MODE, limit)
                self._sent[cid] = limit
        return decided

    async def run(self) -> None:
        """Step on every grid reading and at least every :data:`TICK_S`; until cancelled."""
        self.step()
        while True:
            if self._feed is None:
                await asyncio.sleep(TICK_S)
            else:
                await self._feed.wait(TICK_S)
            self.step()

    def surplus_cap_a(self, connector_id: int, car_phases: int) -> float | None:
        """What the surplus could give the connector's car per phase on ``car_phases``
        phases (A), for the 1-or-3 phase choice; None when its mode does not follow the
        surplus (fast, schedule). The solar modes with no fresh reading: 0 (nothing known).
        """
        if self._modes.get(connector_id) not in NEEDS_GRID or self._fuse is None:
            return None
        assert self._feed is not None
        sample = self._feed.latest
        if sample is None or not is_fresh(self._fuse.site, sample, self._clock()):
            return 0.0
        load = next(load for load in self._fuse.loads() if load.connector_id == connector_id)
        grid = [sample.current_a[p] or 0.0 for p in self._fuse.site.grid_phases]
        return surplus_a(grid, load.current_a, car_phases)

    def status(self) -> dict[str, Any]:
        """The energy picture for the page, the API and MQTT (JSON-ready): ``grid_meter``
        says whether the house is measured, ``modes`` lists the :attr:`choices`."""
        sample = None if self._feed is None else self._feed.latest
        fresh = (
            self._fuse is not None
            and sample is not None
            and is_fresh(self._fuse.site, sample, self._clock())
        )
        grid = None if sample is None or not fresh else list(sample.current_a)
        net_w = None
        if grid is not None:
            net_w = NOMINAL_VOLTAGE_V * math.fsum(a or 0.0 for a in grid)
        return {
            "grid_meter": self._fuse is not None,
            "grid_fresh": fresh,
            "grid_current_a": None if grid is None else [_round(a) for a in grid],
            "grid_power_w": None if net_w is None else round(net_w),
            "connectors": [
                {
                    "id": cid,
                    "mode": str(mode),
                    "charging": self._states[cid].charging,
                    "surplus_a": _round(self.surplus.get(cid)),
                    "surplus_w": None
                    if (s := self.surplus.get(cid)) is None
                    else round(s * NOMINAL_VOLTAGE_V * self._phases(cid)),
                    "thresholds": dict(self.thresholds[cid].values),
                    "threshold_sources": dict(self.thresholds[cid].sources),
                }
                for cid, mode in sorted(self._modes.items())
            ],
            "modes": [str(m) for m in self.choices],
        }

    def _phases(self, connector_id: int) -> int:
        for load in [] if self._fuse is None else self._fuse.loads():
            if load.connector_id == connector_id:
                return len(load.grid_phases)
        return 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def build_modes(
    config: Config,
    fuse: FuseManager | None,
    feed: GridFeed | None,
    sink: LimitSink,
    events: Broadcast,
    clock: Callable[[], float] = time.monotonic,
    views: Callable[[int], ConnectorView] | None = None,
) -> ModeRunner:
    """The runner ``[energy]`` and each ``[connector.energy]`` ask for, listening to
    ``events``; ConfigurationError names the key. ``clock``: monotonic seconds (a test's
    simulated time). ``fuse`` and ``feed`` None: no grid meter (the standalone modes).
    ``views``: each connector's view, read after a :class:`Resync`."""
    settings = parse_energy(
        config.energy,
        {c.id: c.mode for c in config.connectors},
        [c.id for c in config.connectors],
        {c.id: c.energy for c in config.connectors},
        grid_meter=fuse is not None,
    )
    full_power_w = {c.id: c.max_current_a * c.phases * NOMINAL_VOLTAGE_V for c in config.connectors}
    runner = ModeRunner(settings, fuse, feed, sink, full_power_w, clock=clock, views=views)
    events.subscribe("energy-modes", runner.on_event, maxlen=EVENTS_MAXLEN)
    return runner
