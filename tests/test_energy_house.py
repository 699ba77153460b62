"""The simulated house (issue 16): a day of load and PV, built in or from a CSV, behind a
simulated grid meter that also sees the chargers, at the simulation's speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hw_sim.house import SimHouse
from hw_sim.house_profile import BUILT_IN, built_in, load


def energy_kwh(day: str, column: int) -> float:
    profile = built_in(day)
    return sum(profile.at(t)[column] for t in range(0, 86_400, 60)) * 60 / 3.6e6


def test_the_built_in_days_have_the_sun_where_it_belongs() -> None:
    sunny, cloudy, winter = (built_in(name) for name in BUILT_IN)
    assert sunny.at(3 * 3600) == (250.0, 0.0)  # night: standby, no sun
    assert sunny.at(13.5 * 3600)[1] > 6500.0  # midday: near the 7 kW peak
    assert sunny.at(18.5 * 3600)[0] >= 5250.0  # dinner on the cooktop
    assert 40.0 < energy_kwh("sunny", 1) < 70.0  # 8 kWp on a long June day
    assert energy_kwh("cloudy", 1) < 0.8 * energy_kwh("sunny", 1)
    assert energy_kwh("winter", 1) < 15.0 and winter.at(8 * 3600)[1] == 0.0
    # Clouds come and go: the PV jumps several times within an hour around noon.
    noon = [cloudy.at(12 * 3600 + m * 60)[1] for m in range(60)]
    assert len({round(p, -2) for p in noon}) > 3
    assert built_in("cloudy") == cloudy  # the same weather every run


def test_a_csv_day_is_interpolated_and_repeats(tmp_path: Path) -> None:
    day = tmp_path / "day.csv"
    day.write_text("time,load_w,pv_w\n06:00,400,0\n12:00,1000,6000\n18:00,3000,0\n")
    profile = load(str(day))
    assert profile.at(9 * 3600) == pytest.approx((700.0, 3000.0))
    assert profile.at(86_400 + 12 * 3600) == pytest.approx((1000.0, 6000.0))
    assert profile.at(0.0) == pytest.approx((1700.0, 0.0))  # 18:00 -> 06:00 across midnight


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("when,load_w,pv_w\n06:00,1,1\n", "header"),
        ("time,load_w,pv_w\n6h,1,1\n", "day.csv:2: time must be HH:MM"),
        ("time,load_w,pv_w\n06:00,-1,1\n", "day.csv:2: load_w and pv_w must be powers"),
        ("time,load_w,pv_w\n06:00,1,x\n", "day.csv:2: load_w and pv_w must be numbers"),
        ("time,load_w,pv_w\n06:00,1,1\n05:00,1,1\n", "day.csv:3: times must ascend"),
        ("time,load_w,pv_w\n", "no points"),
    ],
)
def test_a_bad_csv_day_names_the_line(tmp_path: Path, text: str, problem: str) -> None:
    day = tmp_path / "day.csv"
    day.write_text(text)
    with pytest.raises(ValueError, match=problem):
        load(str(day))


def test_the_grid_meter_sees_the_house_and_the_chargers_per_phase() -> None:
    house = SimHouse({"model": "sdm630"}, profile=built_in("sunny"), start_s=13.5 * 3600)
    house.step([(16.0, 16.0, 16.0), (10.0, 0.0, 0.0)], 1.0)
    load_w, pv_w = built_in("sunny").at(13.5 * 3600 + 1.0)
    per_phase_a = (load_w - pv_w) / 3 / 230.0
    assert house.grid_current_a == pytest.approx(
        (per_phase_a + 26.0, per_phase_a + 16.0, per_phase_a + 16.0)
    )
    assert house.status()["clock"] == "13:30:01"
    house.set(load_w=0.0, pv_w=0.0)  # a value by hand holds
    house.step([], 3600.0)
    assert house.grid_current_a == (0.0, 0.0, 0.0) and house.status()["profile"] is None


def picharge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


SITE_TOML = '[site]\nfuse_a = 25\n[grid_meter]\nmodel = "em24"\n'


@pytest.mark.parametrize(
    ("config", "flags", "named"),
    [
        (SITE_TOML, ["--sim-house", "nowhere.csv"], "--sim-house: [Errno 2]"),
        ("", ["--sim-house", "sunny"], "--sim-house: needs a house"),
        (SITE_TOML, ["--sim-house", "sunny", "--sim-house-start", "25:00"], "no such time"),
    ],
)
def test_a_house_that_cannot_be_simulated_exits_2_naming_the_flag(
    tmp_path: Path, config: str, flags: list[str], named: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(config)
    result = picharge("run", "--sim", "--config", str(path), "--state-dir", str(tmp_path), *flags)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
