"""Each connector's own thresholds of the charging modes (issue 16): ``[connector.energy]``
over ``[energy]``, changed at run time over both, all checked by one function.

The runner is the real one, built from a configuration by ``build_modes``, on simulated
time: a grid reading each simulated second, the limits it sends recorded as the supervisor
would receive them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import ConfigError, parse_config
from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.manager import ConnectorWiring, FuseManager
from controller.energy.mode_config import parse_energy
from controller.energy.mode_runner import ModeRunner, build_modes
from controller.energy.modes import Mode
from controller.energy.thresholds import NAMESPACE, check
from controller.events import Broadcast
from controller.storage import Storage
from drivers.errors import ConfigurationError
from tests.support.energy import ModeSink as Sink

SITE = {"fuse_a": 40.0}
GRID = {"model": "em24", "transport": "tcp", "host": "192.0.2.7"}
SOLAR = {"mode": "solar", "start_delay_s": 60, "stop_delay_s": 30, "min_run_s": 300}


def doc(energy: dict[str, Any], *connectors: dict[str, Any]) -> dict[str, Any]:
    return {
        "site": SITE,
        "grid_meter": GRID,
        "energy": energy,
        "connector": list(connectors) or [{}],
    }


class House:
    """The runner of a configuration on simulated time (s), fed one grid reading a second."""

    def __init__(self, document: dict[str, Any]) -> None:
        config = parse_config(document)
        self.now = 0.0
        self.feed = GridFeed(clock=lambda: self.now)
        self.sink = Sink()
        wiring = [ConnectorWiring(c.id) for c in config.connectors]
        fuse = FuseManager(Site(fuse_a=40.0), wiring, self.feed, self.sink, clock=lambda: self.now)
        self.runner: ModeRunner = build_modes(
            config, fuse, self.feed, self.sink, Broadcast(), clock=lambda: self.now
        )

    def run(self, until_s: float, export_a: float) -> dict[int, float]:
        """Step each second up to ``until_s`` with ``export_a`` exported on every phase;
        when each connector was first offered current (s), if it was."""
        started: dict[int, float] = {}
        while self.now < until_s:
            self.now += 1.0
            self.feed.push([-export_a] * 3)
            self.runner.step()
            for cid, limit in self.sink.mode.items():
                if limit and cid not in started:
                    started[cid] = self.now
        return started

    def paused_at(self, connector_id: int, until_s: float, export_a: float) -> float | None:
        while self.now < until_s:
            self.now += 1.0
            self.feed.push([-export_a] * 3)
            self.runner.step()
            if self.sink.mode.get(connector_id) == 0.0:
                return self.now
        return None


# --- configuration ------------------------------------------------------------------------


def test_a_connector_table_overrides_the_energy_table_for_that_connector_only() -> None:
    house = House(doc(SOLAR, {}, {"energy": {"start_delay_s": 10, "off_peak": "22:00-06:00"}}))
    first, second = house.runner.thresholds[1], house.runner.thresholds[2]
    assert first.timing.start_delay_s == 60.0 and second.timing.start_delay_s == 10.0
    assert first.timing.min_run_s == second.timing.min_run_s == 300.0  # from [energy]
    assert first.schedule.empty and second.schedule.off_peak == (22 * 60, 6 * 60)
    assert second.sources["start_delay_s"] == "connector"
    assert second.sources["min_run_s"] == "energy"
    assert second.sources["settle_s"] == "default"


@pytest.mark.parametrize(
    ("connector", "key", "words"),
    [
        ({"energy": {"start_delay": 10}}, "connector.2.energy.start_delay", "start_delay_s?"),
        ({"energy": {"mode": "solar"}}, "connector.2.energy.mode", "expected one of"),
        ({"energy": {"min_run_s": -5}}, "connector.2.energy.min_run_s", "0-86400 s"),
        ({"energy": {"settle_s": "10 s"}}, "connector.2.energy.settle_s", "number of seconds"),
        ({"energy": {"off_peak": "22:00"}}, "connector.2.energy.off_peak", "HH:MM-HH:MM"),
        ({"energy": {"departure": "7:5"}}, "connector.2.energy.departure", "HH:MM"),
        ({"energy": {"departure": "07:00"}}, "connector.2.energy.energy_kwh", "needs"),
        ({"energy": {"energy_kwh": 500}}, "connector.2.energy.energy_kwh", "0-200 kWh"),
        ({"energy": 5}, "connector.2.energy", "must be a table"),
        ({"mode": "schedule"}, "energy.off_peak", "needs off_peak or departure"),
        (
            {"mode": "schedule", "energy": {"off_peak": "none"}},
            "connector.2.energy.off_peak",
            "needs off_peak or departure",
        ),
    ],
)
def test_a_bad_connector_threshold_is_refused_naming_it(
    connector: dict[str, Any], key: str, words: str
) -> None:
    # Unknown keys are refused as the file is read, values as energy management is built
    # (the app turns both into exit code 2 naming the key).
    with pytest.raises((ConfigError, ConfigurationError)) as refused:
        House(doc(SOLAR, {}, connector))
    assert refused.value.key == key
    assert words in refused.value.problem


def test_a_connector_table_without_a_site_plans_that_connector_alone() -> None:
    # No grid meter: a connector's own departure plan still works (the standalone modes).
    table = {"departure": "07:00", "energy_kwh": 10}
    config = parse_config({"connector": [{"mode": "schedule", "energy": table}]})
    parsed = parse_energy(
        config.energy, {1: "schedule"}, [1], {1: config.connectors[0].energy}, grid_meter=False
    )
    assert parsed.modes[1] is Mode.SCHEDULE
    assert parsed.thresholds(1).schedule.departure == 7 * 60
    with pytest.raises(ConfigurationError) as refused:
        parse_energy({}, {1: "solar"}, [1], {1: table}, grid_meter=False)
    assert refused.value.key == "connector.1.mode"


def test_a_connector_may_drop_the_window_every_other_connector_charges_in() -> None:
    house = House(doc({"off_peak": "22:00-06:00"}, {}, {"energy": {"off_peak": ""}}))
    assert house.runner.thresholds[1].schedule.off_peak is not None
    assert house.runner.thresholds[2].schedule.empty


def test_one_check_judges_every_threshold_and_names_it() -> None:
    assert check({"start_delay_s": 30, "off_peak": " 22:00-06:00 ", "departure": "NONE"}) == {
        "start_delay_s": 30.0,
        "off_peak": "22:00-06:00",
        "departure": "",
    }
    for values, key in (
        ({"stop_delay_s": float("nan")}, "stop_delay_s"),
        ({"min_pause_s": True}, "min_pause_s"),
        ({"energy_kwh": 0}, "energy_kwh"),
        ({"off_peak": "06:00-06:00"}, "off_peak"),
        ({"mode": "fast"}, "mode"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            check(values)
        assert refused.value.key == key


# --- the runner ---------------------------------------------------------------------------


def test_each_connector_starts_after_its_own_start_delay() -> None:
    house = House(doc(SOLAR, {}, {"energy": {"start_delay_s": 10}}))
    house.run(30, export_a=0.0)  # no sun: both paused
    assert house.sink.mode == {1: 0.0, 2: 0.0}
    sunny = house.now
    started = house.run(sunny + 120, export_a=20.0)  # 10 A for each of the two cars
    assert started[2] - sunny == pytest.approx(10.0, abs=1.0)
    assert started[1] - sunny == pytest.approx(60.0, abs=1.0)


def test_a_start_delay_changed_at_run_time_applies_to_the_next_start() -> None:
    house = House(doc(SOLAR))
    house.run(5, export_a=0.0)
    asyncio.run(house.runner.set_thresholds(1, {"start_delay_s": 15}))
    sunny = house.now
    started = house.run(sunny + 60, export_a=10.0)
    assert started[1] - sunny == pytest.approx(15.0, abs=1.0)
    assert house.runner.thresholds[1].sources["start_delay_s"] == "run_time"
    # null gives the key back to the configuration.
    asyncio.run(house.runner.set_thresholds(1, {"start_delay_s": None}))
    assert house.runner.thresholds[1].timing.start_delay_s == 60.0
    assert house.runner.thresholds[1].sources["start_delay_s"] == "energy"


def test_a_run_in_progress_keeps_the_minimum_run_it_began_with() -> None:
    """Shortening min_run_s during a run does not end that run sooner (the contactor was
    promised 300 s); the shorter minimum holds from the next run on."""
    house = House(doc(SOLAR))
    started = house.run(100, export_a=10.0)[1]
    asyncio.run(house.runner.set_thresholds(1, {"min_run_s": 30}))
    paused = house.paused_at(1, started + 600, export_a=0.0)
    assert paused is not None and paused - started >= 300.0
    # The next run: started again after the sun came back, it may end after 30 s.
    again = house.run(house.now + 300, export_a=10.0)[1]
    paused = house.paused_at(1, again + 600, export_a=0.0)
    assert paused is not None and 30.0 <= paused - again < 300.0


def test_a_longer_minimum_run_applies_to_the_run_in_progress_at_once() -> None:
    house = House(doc(SOLAR))
    started = house.run(100, export_a=10.0)[1]
    asyncio.run(house.runner.set_thresholds(1, {"min_run_s": 900}))
    paused = house.paused_at(1, started + 1200, export_a=0.0)
    assert paused is not None and paused - started >= 900.0


def test_a_bad_change_at_run_time_changes_nothing() -> None:
    house = House(doc({**SOLAR, "off_peak": "22:00-06:00"}))
    runner = house.runner
    for values, key in (
        ({"start_delay_s": 10, "stop_delay_s": -1}, "stop_delay_s"),
        ({"departure": "07:00"}, "energy_kwh"),
        ({"bogus": 1}, "bogus"),
        ({"bogus": None}, "bogus"),
    ):
        with pytest.raises(ConfigurationError) as refused:
            asyncio.run(runner.set_thresholds(1, values))
        assert refused.value.key == key
    assert runner.thresholds[1].timing.start_delay_s == 60.0
    asyncio.run(runner.set_mode(1, Mode.SCHEDULE))
    with pytest.raises(ConfigurationError) as refused:  # the schedule mode needs its window
        asyncio.run(runner.set_thresholds(1, {"off_peak": ""}))
    assert refused.value.key == "off_peak"
    with pytest.raises(KeyError):
        asyncio.run(runner.set_thresholds(3, {"start_delay_s": 10}))


def test_an_energy_target_waits_for_a_departure_set_after_it() -> None:
    house = House(doc(SOLAR))
    asyncio.run(house.runner.set_thresholds(1, {"energy_kwh": 20}))
    assert house.runner.thresholds[1].schedule.empty
    asyncio.run(house.runner.set_thresholds(1, {"departure": "07:00"}))
    schedule = house.runner.thresholds[1].schedule
    assert (schedule.departure, schedule.energy_wh) == (7 * 60, 20_000.0)
    status = house.runner.status()["connectors"][0]
    assert status["thresholds"]["departure"] == "07:00"
    assert status["thresholds"]["energy_kwh"] == 20.0
    assert status["threshold_sources"]["departure"] == "run_time"


async def test_changes_are_kept_across_a_restart_and_one_the_file_overrules_is_dropped(
    tmp_path: Path,
) -> None:
    storage = await Storage.open(tmp_path)
    try:
        house = House(doc({**SOLAR, "off_peak": "22:00-06:00"}))
        await house.runner.restore(storage)
        await house.runner.set_thresholds(1, {"settle_s": 4, "off_peak": ""})
        # The file now says: the schedule mode. The window cleared at run time would hold
        # the car for ever: the configured one applies again; the other change stays.
        again = House(doc({**SOLAR, "mode": "schedule", "off_peak": "22:00-06:00"}))
        await again.runner.restore(storage)
        thresholds = again.runner.thresholds[1]
        assert thresholds.schedule.off_peak == (22 * 60, 6 * 60)
        assert thresholds.sources["off_peak"] == "energy"
        assert thresholds.timing.settle_s == 4.0
        # A stored change no configuration can take (a hand-edited row) is dropped.
        await storage.save_setting(NAMESPACE, "1", '{"settle_s": -1}')
        await storage.save_setting(NAMESPACE, "7", '{"settle_s": 1}')
        third = House(doc(SOLAR))
        await third.runner.restore(storage)
        assert third.runner.thresholds[1].sources["settle_s"] == "default"
        assert await storage.load_settings(NAMESPACE) == {}
    finally:
        await storage.close()


@settings(max_examples=100, deadline=None)
@given(
    old=st.tuples(st.integers(0, 200), st.integers(0, 200)),
    new=st.tuples(st.integers(0, 200), st.integers(0, 200)),
    change_at=st.integers(1, 300),
    spans=st.lists(st.integers(1, 90), min_size=2, max_size=10),
)
def test_a_change_never_ends_a_run_or_pause_sooner_than_the_minimum_it_began_with(
    old: tuple[int, int], new: tuple[int, int], change_at: int, spans: list[int]
) -> None:
    """Whatever the day and whenever the owner changes min_run_s and min_pause_s: a run or
    pause that began before the change lasts at least the larger of the old and the new
    minimum, one that began after it the new one. The day: sun and clouds in turn, for
    ``spans`` seconds each."""
    delays = {"mode": "solar", "start_delay_s": 5, "stop_delay_s": 5}
    house = House(doc({**delays, "min_run_s": old[0], "min_pause_s": old[1]}))
    switches: list[tuple[float, bool]] = [(-math.inf, False)]
    for i, duration in enumerate(spans):
        sunny = i % 2 == 0
        for _ in range(duration):
            if house.now + 1 == change_at:
                change = {"min_run_s": new[0], "min_pause_s": new[1]}
                asyncio.run(house.runner.set_thresholds(1, change))
            house.run(house.now + 1, export_a=10.0 if sunny else 0.0)
            charging = bool(house.sink.mode.get(1))
            if charging != switches[-1][1]:
                switches.append((house.now, charging))
    for (began, charging), (ended, _) in itertools.pairwise(switches):
        which = 0 if charging else 1  # the minimum run, or the minimum pause
        if ended < change_at:
            least = old[which]
        elif began >= change_at:
            least = new[which]
        else:
            least = max(old[which], new[which])
        assert ended - began >= least, (began, ended, charging)
