"""The fuse manager (issue 16): grid samples in, LOAD_MANAGEMENT limits out, within one
turn of a reading; the safe fallback when readings stop, and back when they return."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time

import pytest

from controller.connector_types import ConnectorStatus
from controller.domain import ConnectorView, MeterSample
from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager, round_down
from controller.events import MeterSampled, Resync
from controller.limits import LimitSource
from drivers.base import MeterReading
from tests.support.wait import until


class Sink:
    """Records every set_limit, as the supervisor would receive it."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, LimitSource, float | None]] = []
        self.at: list[float] = []

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        self.calls.append((connector_id, source, current_a))
        self.at.append(time.monotonic())

    def last(self, connector_id: int) -> float | None:
        return next((a for c, _, a in reversed(self.calls) if c == connector_id), None)


def sampled(connector_id: int, current_a: tuple[float, float, float]) -> MeterSampled:
    reading = MeterReading((230.0,) * 3, current_a, (0.0,) * 3, 0.0, 1.0, 50.0, time.monotonic())
    return MeterSampled(MeterSample(connector_id, dt.datetime.now(dt.UTC), reading, 16.0), None)


def test_a_grid_sample_sets_each_connector_and_lowers_before_it_raises() -> None:
    site = Site(fuse_a=32.0, margin_a=2.0)
    feed, sink = GridFeed(), Sink()
    manager = FuseManager(site, [ConnectorWiring(1), ConnectorWiring(2)], feed, sink)
    feed.push([10.0, 10.0, 10.0])
    manager.step()
    assert sink.calls == [
        (1, LimitSource.LOAD_MANAGEMENT, 10.0),
        (2, LimitSource.LOAD_MANAGEMENT, 10.0),
    ]
    # Car 1 now draws 10 A on L1 only (a one-phase car); the oven takes L2 and L3.
    asyncio.run(manager.on_event(sampled(1, (10.0, 0.0, 0.0))))
    sink.calls.clear()
    feed.push([20.0, 26.0, 26.0])
    manager.step()
    # L1: 30 - 10 other = 20, shared by both = 10 each; L2/L3: 30 - 26 = 4 for connector 2.
    assert sink.calls == [(2, LimitSource.LOAD_MANAGEMENT, 4.0)]  # car 1 unchanged: not resent
    asyncio.run(manager.on_event(sampled(1, (0.0, 0.0, 0.0))))
    sink.calls.clear()
    feed.push([31.0, 2.0, 2.0])  # the car stopped; now the oven is on L1
    manager.step()
    assert [c for c, _, _ in sink.calls] == [1, 2]  # both lower: 1 goes 10 -> 0 first
    assert sink.last(1) == 0.0 and sink.last(2) == 0.0
    feed.push([2.0, 2.0, 2.0])
    sink.calls.clear()
    manager.step()
    assert sink.calls == [
        (1, LimitSource.LOAD_MANAGEMENT, 14.0),
        (2, LimitSource.LOAD_MANAGEMENT, 14.0),
    ]


def test_limits_are_rounded_down_never_up() -> None:
    assert round_down(13.99) == 13.9
    assert round_down(14.0) == 14.0
    assert round_down(0.05) == 0.0


@pytest.mark.timing  # a bound on wall-clock time: run alone
async def test_a_reading_reaches_the_limit_in_one_turn_and_silence_falls_back_then_recovers() -> (
    None
):
    site = Site(fuse_a=25.0, margin_a=1.0, fallback_a=6.0, max_age_s=0.4)
    feed, sink = GridFeed(), Sink()
    manager = FuseManager(site, [ConnectorWiring(1)], feed, sink)
    task = asyncio.create_task(manager.run())
    try:
        await until(lambda: sink.last(1) == 6.0, what="the fallback before any reading")
        pushed = feed.push([4.0, 4.0, 4.0])
        await until(lambda: sink.last(1) == 20.0, what="the fuse limit")
        assert sink.at[-1] - pushed.taken_at < 0.1  # same loop turns, far under 1 s
        assert not manager.fallback
        # No more readings: the fallback comes once the sample is older than max_age_s.
        await until(lambda: sink.last(1) == 6.0, timeout_s=2.0, what="the fallback")
        assert sink.at[-1] - pushed.taken_at == pytest.approx(0.45, abs=0.2)
        assert manager.fallback
        feed.push([10.0, 4.0, 4.0])
        await until(lambda: sink.last(1) == 14.0, what="recovery on a fresh reading")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_after_lost_events_the_manager_reads_each_car_again_from_its_view() -> None:
    """A listener that lost events (Resync) would go on subtracting a car's old current
    from the grid's until its next meter reading: it reads the connector's view instead."""
    reading = sampled(1, (10.0, 10.0, 10.0)).sample.reading
    view = ConnectorView(1, ConnectorStatus.CHARGING, None, None, reading, 16.0)
    feed, sink = GridFeed(), Sink()
    manager = FuseManager(
        Site(fuse_a=32.0, margin_a=2.0), [ConnectorWiring(1)], feed, sink, views=lambda _: view
    )
    feed.push([25.0, 25.0, 25.0])  # the car's 10 A included; its reading never arrived
    manager.step()
    assert sink.last(1) == 5.0  # 30 - 25 taken as the house's
    asyncio.run(manager.on_event(Resync(dropped=3)))
    assert sink.last(1) == 15.0  # 30 - (25 - 10): the car's own current is not the house's
    assert manager.loads()[0].current_a == (10.0, 10.0, 10.0)


def test_a_house_rise_is_seen_at_once_while_a_car_draws_steadily_below_its_offer() -> None:
    """A car that takes 16 A of the 24 A offered, long after its offer last rose, is not
    ramping: a rise of the grid is the house's and lowers the offer at that reading, not at
    the car meter's next."""
    now = [0.0]
    feed = GridFeed(clock=lambda: now[0])
    view = ConnectorView(1, ConnectorStatus.CHARGING, None, None, None, 24.0)
    sink = Sink()
    manager = FuseManager(
        Site(fuse_a=25.0, margin_a=1.0),
        [ConnectorWiring(1)],
        feed,
        sink,
        clock=lambda: now[0],
        views=lambda _: view,
    )

    def car_reads(current_a: float) -> None:
        reading = MeterReading((230.0,) * 3, (current_a,) * 3, (0.0,) * 3, 0.0, 1.0, 50.0, now[0])
        sample = MeterSample(1, dt.datetime.now(dt.UTC), reading, 24.0)
        asyncio.run(manager.on_event(MeterSampled(sample, None)))

    for t, grid_a in ((0.0, 0.0), (0.6, 16.0), (9.8, 16.0)):
        now[0] = t
        if t > 0:
            car_reads(16.0)
        now[0] += 0.1
        feed.push([grid_a] * 3)
        manager.step()
    assert sink.last(1) == 24.0  # the house takes nothing
    now[0] = 10.2
    feed.push([31.0] * 3)  # the oven: 15 A more on every phase
    manager.step()
    assert sink.last(1) == 9.0  # 24 - 15, at this reading
