"""Configuration shared by the end-to-end tests of the charging modes (issue 16)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from controller.app import ChargePointApp, RunOptions
from controller.config import ConfigError, parse_config
from controller.limits import LimitSource

#: ``[energy]`` for a solar mode whose delays are seconds: the simulation runs x30, and the
#: rules are the same as with the defaults' minutes.
QUICK_SOLAR: dict[str, object] = {
    "mode": "solar",
    "start_delay_s": 1.0,
    "stop_delay_s": 1.5,
    "min_run_s": 3.0,
    "min_pause_s": 2.0,
    "settle_s": 1.5,
}


async def refused_at_start(state_dir: Path, doc: dict[str, Any]) -> ConfigError:
    """The configuration error that stops the simulated controller's start with ``doc``
    (exit code 2 from ``picharge run``); fails the test when it starts."""
    config = dataclasses.replace(parse_config(doc), state_dir=state_dir)
    app = ChargePointApp(config, RunOptions(sim=True))
    try:
        with pytest.raises(ConfigError) as refused:
            await app.start()
        return refused.value
    finally:
        await app.close()


class ModeSink:
    """The MODE limit each connector was last sent (absent: never)."""

    def __init__(self) -> None:
        self.mode: dict[int, float | None] = {}

    def set_limit(self, connector_id: int, source: LimitSource, current_a: float | None) -> None:
        if source is LimitSource.MODE:
            self.mode[connector_id] = current_a
