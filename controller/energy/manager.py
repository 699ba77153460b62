"""The fuse manager: grid readings and the connectors' own currents in, limits out.

A listener of the supervisor's broadcast (each connector's ``MeterSampled`` says what its
car draws) and of the :class:`GridFeed`; it acts only through
``set_limit(connector, LimitSource.LOAD_MANAGEMENT, A)``. Every grid sample is acted on
as soon as it arrives (the PWM follows within the supervisor's next turn, well inside a
second); with no fresh sample the manager wakes when the newest one goes stale and sets
the safe fallback, so a silent meter is noticed within ``max_age_s`` of its last reading.

When several connectors change, the ones that go down are set first: the house never sees
a raise before the matching lower. Limits are rounded down to 0.1 A, and one that did not
change is not sent again. Loop thread only.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.connector_types import ConnectorStatus
from controller.domain import ConnectorView, MeterSample
from controller.energy.car_current import FOLLOW_S, CarReading, estimate
from controller.energy.circuits import Circuits
from controller.energy.fuse import (
    ConnectorLoad,
    GridSample,
    Phases,
    Site,
    fuse_limits,
    grid_phases_of,
    is_fresh,
    on_grid,
)
from controller.energy.grid import GridFeed
from controller.events import MeterSampled, Resync, StatusEvent, SupervisorEvent
from controller.limits import LimitSource

log = logging.getLogger(__name__)

#: Sleep at least this long between two checks for staleness (s): no busy loop.
MIN_WAKE_S = 0.05
#: How long grid readings and offers are kept to judge a car's current since its meter's
#: last reading (s): its meter is read about every second.
HISTORY_S = 10.0
#: A car whose meter reads this much below its offer may still ramp up to it (A): a car
#: draws a little less than offered, meters disagree a little.
BELOW_OFFER_A = 0.5
#: How long after a raise of its offer (or the start of its charging) a car may still be
#: ramping up (s); one below its offer for longer draws what it wants, and a rise of the
#: grid is the house's.
RAMP_S = 5.0
#: Statuses of a connector whose session can use current: it takes a share of its circuit.
WANTS_CURRENT = frozenset(
    {ConnectorStatus.CHARGING, ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE}
)


class LimitSink(Protocol):
    """What the manager needs of the supervisor."""

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        """Set or clear ``source``'s limit on one connector (loop thread)."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectorWiring:
    """How a connector is wired: ``rotation[i]`` is the grid phase (0-based) of its L(i+1);
    ``max_current_a`` is its own maximum (a circuit shares no more than that to it)."""

    connector_id: int
    rotation: tuple[int, ...] = (0, 1, 2)
    max_current_a: float = math.inf


def round_down(current_a: float) -> float:
    """``current_a`` rounded down to 0.1 A (never up: the fuse rule's bound stays a bound)."""
    return math.floor(current_a * 10.0 + 1e-9) / 10.0


class FuseManager:
    """Keeps every connector's LOAD_MANAGEMENT limit at what the main fuse allows."""

    def __init__(
        self,
        site: Site,
        wiring: Sequence[ConnectorWiring],
        feed: GridFeed,
        sink: LimitSink,
        clock: Callable[[], float] = time.monotonic,
        circuits: Circuits | None = None,
        views: Callable[[int], ConnectorView] | None = None,
    ) -> None:
        self.site = site
        #: How a connector is now (the supervisor's ``view``): after a :class:`Resync` the
        #: manager rebuilds what each car draws and wants from it instead of the events lost.
        self._views = views
        self.circuits = circuits  # shares within [[circuit]] limits (controller.energy.circuits)
        self._wants: dict[int, bool] = {}
        self._wiring = {w.connector_id: w for w in wiring}
        self._feed = feed
        #: Where limits go (the supervisor); a bench may wrap it to stamp each one.
        self.sink = sink
        self._clock = clock
        self._car_a: dict[int, Phases] = {w.connector_id: (0.0, 0.0, 0.0) for w in wiring}
        self._car_read: dict[int, tuple[float, float]] = {}  # (taken_at, offered_a) per car
        self._grid: collections.deque[GridSample] = collections.deque()
        #: What each connector's PWM offered at each step (from its view), for a while.
        self._offered: dict[int, collections.deque[tuple[float, float]]] = {
            w.connector_id: collections.deque() for w in wiring
        }
        self._charging: dict[int, bool] = {}  # each connector's car in C, as last viewed
        self._raised_at: dict[int, float] = {}  # when its offer last rose, or it began to charge
        self._sent: dict[int, float] = {}
        self.fallback = True  # until the first fresh reading

    @property
    def limits(self) -> Mapping[int, float]:
        """The limits last set, per connector."""
        return dict(self._sent)

    async def on_event(self, event: SupervisorEvent) -> None:
        """Broadcast listener: remember what each car draws (its own meter, its phases)."""
        if isinstance(event, MeterSampled) and event.sample.connector_id in self._car_a:
            self._take(event.sample)
        elif isinstance(event, StatusEvent):
            self._wants[event.connector_id] = event.status in WANTS_CURRENT
        elif isinstance(event, Resync):
            self.resync()

    def resync(self) -> None:
        """Events were lost (the broadcast's queue overflowed): a meter reading or a status
        change missed would leave a car's current or its share wrong until the next one, so
        both are read again from each connector's view, and the limits decided anew."""
        if self._views is None:
            return
        for cid in self._wiring:
            view = self._views(cid)
            self._wants[cid] = view.status in WANTS_CURRENT
            if view.reading is not None:
                self._take(MeterSample(cid, dt.datetime.now(dt.UTC), view.reading, view.offered_a))
        log.warning("fuse manager: events were lost; each connector read again")
        self.step()

    def _take(self, sample: MeterSample) -> None:
        c = sample.reading.current_a
        self._car_a[sample.connector_id] = (c[0] or 0.0, c[1] or 0.0, c[2] or 0.0)
        self._car_read[sample.connector_id] = (sample.reading.taken_at, sample.offered_a)

    @property
    def wiring(self) -> list[ConnectorWiring]:
        """How each connector is wired now."""
        return list(self._wiring.values())

    def rewire(self, wiring: ConnectorWiring) -> None:
        """A connector's phases changed (1/3-phase switching): the fuse rule sees the new ones."""
        self._wiring[wiring.connector_id] = wiring

    def loads(self) -> list[ConnectorLoad]:
        """Each connector as the fuse rule sees it now: the phases its car draws on (its
        meter says), and what it draws on them, judged from its meter, what it was offered
        and the grid since (:mod:`controller.energy.car_current`)."""
        readings = []
        for cid, wiring in self._wiring.items():
            car = self._car_a[cid]
            taken_at, offered_then = self._car_read.get(cid, (-math.inf, 0.0))
            offers = [offered_then, *(a for t, a in self._offered[cid] if t > taken_at)]
            readings.append(
                CarReading(
                    cid,
                    on_grid(wiring.rotation, car),
                    taken_at,
                    grid_phases_of(wiring.rotation, car),
                    below_offer=self._ramping(cid) and max(offers) > max(car) + BELOW_OFFER_A,
                    most_offered_a=max([offered_then, *(a for _, a in self._offered[cid])]),
                )
            )
        grid = list(self._grid)
        latest = self._feed.latest
        if latest is not None and (not grid or grid[-1] is not latest):
            grid.append(latest)
        drawn = estimate(readings, grid)
        return [ConnectorLoad(r.connector_id, r.phases, drawn[r.connector_id]) for r in readings]

    def _ramping(self, connector_id: int) -> bool:
        """Whether the car may still be ramping up: it charges, and its offer rose (or its
        charging began) less than :data:`RAMP_S` ago."""
        raised_at = self._raised_at.get(connector_id, -math.inf)
        return self._charging.get(connector_id, False) and self._clock() - raised_at <= RAMP_S

    def _remember(self, now: float) -> None:
        """Keep the newest grid reading and each PWM's offer now, for :meth:`loads`."""
        sample = self._feed.latest
        if sample is not None and (not self._grid or self._grid[-1] is not sample):
            self._grid.append(sample)
        while self._grid and self._grid[0].taken_at < now - HISTORY_S:
            self._grid.popleft()
        if self._views is None:
            return
        for cid, offered in self._offered.items():
            view = self._views(cid)
            # Only a car charging (state C, contactor closed) can be ramping up: one waiting
            # in B may not draw, so a rise meanwhile is the house's.
            charging = view.status is ConnectorStatus.CHARGING
            began = charging and not self._charging.get(cid, False)
            rose = bool(offered) and view.offered_a > offered[-1][1] + BELOW_OFFER_A
            if began or rose:
                self._raised_at[cid] = now
            self._charging[cid] = charging
            offered.append((now, view.offered_a))
            while offered and offered[0][0] < now - FOLLOW_S:
                offered.popleft()

    def step(self) -> Mapping[int, float]:
        """Decide and set the limits for the newest grid sample now; lowers first."""
        now = self._clock()
        self._remember(now)
        sample = self._feed.latest
        loads = self.loads()
        decided = fuse_limits(self.site, sample, loads, now)
        if self.circuits is not None:
            phases = {load.connector_id: load.grid_phases for load in loads}
            maxima = {cid: w.max_current_a for cid, w in self._wiring.items()}
            decided = self.circuits.limits(decided, phases, maxima, self._wants, now)
        fresh = is_fresh(self.site, sample, now)
        if fresh == self.fallback:
            self.fallback = not fresh
            if fresh:
                log.info("grid meter readings are fresh: fuse protection active")
            else:
                log.warning(
                    "no fresh grid meter reading for %.1f s: every connector falls back to %.1f A",
                    self.site.max_age_s,
                    self.site.fallback_a,
                )
        limits = {cid: round_down(a) for cid, a in decided.items()}
        changes = [(a - self._sent.get(cid, math.inf), cid, a) for cid, a in limits.items()]
        for _, cid, a in sorted(changes):
            if self._sent.get(cid) != a:
                self.sink.set_limit(cid, LimitSource.LOAD_MANAGEMENT, a)
                self._sent[cid] = a
        return limits

    def _until_stale_s(self) -> float:
        sample = self._feed.latest
        if sample is None:
            return self.site.max_age_s
        return max(MIN_WAKE_S, sample.taken_at + self.site.max_age_s - self._clock() + MIN_WAKE_S)

    async def run(self) -> None:
        """Act on every sample and on every sample going stale; runs until cancelled."""
        self.step()
        while True:
            await self._feed.wait(self._until_stale_s())
            self.step()
