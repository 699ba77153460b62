"""The simulated charger's hardware alone, without the controller: what ``--sim`` builds
(pymodbus meter, MockFactory pins, SMBus ADS1115, pty card reader, fake sysfs) behind the
same drivers a Pi uses, for tests that drive the drivers or ``check-hw`` directly."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from controller.config import Config
from controller.hardware import Hardware
from controller.sim_root import SimCharger, start_simulation
from drivers.base import DriverEvent, ignore_events


@contextlib.asynccontextmanager
async def simulated_hardware(
    config: Config,
    state_dir: Path,
    *,
    connectors: int = 1,
    speed: float = 1.0,
    on_event: Callable[[DriverEvent], None] = ignore_events,
) -> AsyncIterator[tuple[SimCharger, Hardware, Config]]:
    """The simulation and the drivers on it (EV time x ``speed``), closed afterwards; yields
    the simulator, the drivers and the configuration the simulation completed."""
    sim, hardware, config = await start_simulation(
        config, state_dir, connectors=connectors, speed=speed, on_event=on_event
    )
    try:
        yield sim, hardware, config
    finally:
        await hardware.close()
        await sim.stop()
