"""The energy keys of the configuration (issue 16): [site], [grid_meter] and a connector's
phase rotation; a bad one is refused naming it, as every key is."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from controller.app import ChargePointApp, RunOptions
from controller.config import ConfigError, SiteConfig, parse_config

SITE = {"fuse_a": 35}
GRID = {"model": "sdm630", "transport": "tcp", "host": "192.0.2.7", "unit_id": 2}


def test_no_site_means_no_fuse_protection() -> None:
    config = parse_config({})
    assert config.site == SiteConfig() and config.site.fuse_a == 0.0
    assert config.connectors[0].phase_rotation == (0, 1, 2)


def test_a_site_and_its_grid_meter_are_read_with_defaults() -> None:
    config = parse_config(
        {
            "site": SITE,
            "grid_meter": GRID,
            "connector": [{"phase_rotation": "L2L3L1"}, {"phases": 1, "phase_rotation": "l3"}],
        }
    )
    assert config.site == SiteConfig(35.0, 3, 1.0, 6.0, 5.0)
    assert config.grid_meter == GRID
    assert [c.phase_rotation for c in config.connectors] == [(1, 2, 0), (2,)]
    assert "phase_rotation" not in config.connectors[0].drivers


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"site": {"fuse_a": 3}, "grid_meter": GRID}, "site.fuse_a"),
        ({"site": {**SITE, "phases": 2}, "grid_meter": GRID}, "site.phases"),
        ({"site": {**SITE, "margin_a": 40}, "grid_meter": GRID}, "site.margin_a"),
        (
            {"site": {**SITE, "fallback_current_a": 35}, "grid_meter": GRID},
            "site.fallback_current_a",
        ),
        ({"site": {**SITE, "grid_max_age_s": 0.1}, "grid_meter": GRID}, "site.grid_max_age_s"),
        ({"site": {**SITE, "fuse": 35}, "grid_meter": GRID}, "site.fuse"),
        ({"site": SITE}, "grid_meter"),
        ({"connector": [{"phase_rotation": "L1L1L2"}]}, "connector.1.phase_rotation"),
        ({"connector": [{"phase_rotation": "L2"}]}, "connector.1.phase_rotation"),
        ({"connector": [{"phases": 1, "phase_rotation": "L4"}]}, "connector.1.phase_rotation"),
        (
            {
                "site": {**SITE, "phases": 1},
                "grid_meter": GRID,
                "connector": [{"phases": 1, "phase_rotation": "L2"}],
            },
            "connector.1.phase_rotation",
        ),
    ],
)
def test_a_bad_energy_key_is_refused_naming_it(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert caught.value.key == key


def test_a_misspelt_grid_meter_key_is_refused_naming_the_nearest() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"site": SITE, "grid_meter": {**GRID, "baud": 9600}})
    assert caught.value.key == "grid_meter.baud"
    assert "did you mean baudrate?" in caught.value.problem
    pushed = parse_config({"site": SITE, "grid_meter": {"source": "push"}})
    assert pushed.grid_meter == {"source": "push"}
    with pytest.raises(ConfigError) as caught:
        parse_config({"site": SITE, "grid_meter": {"source": "push", "modell": "x"}})
    assert caught.value.key == "grid_meter.modell"


async def test_a_bad_grid_meter_value_stops_the_start_naming_it(tmp_path: Path) -> None:
    config = parse_config({"site": SITE, "grid_meter": {**GRID, "unit_id": 300}})
    app = ChargePointApp(dataclasses.replace(config, state_dir=tmp_path), RunOptions(sim=True))
    try:
        with pytest.raises(ConfigError) as caught:
            await app.start()
        assert caught.value.key == "grid_meter.unit_id"
    finally:
        await app.close()
