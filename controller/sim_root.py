"""The composition root of ``--sim``: the only place in the product that imports hw_sim.

It starts the simulated hardware, then builds the *same* drivers as on a Pi with
:func:`controller.hardware.build_hardware`, pointed at the simulation through seams (a
MockFactory, the SMBus stand-in, fake sysfs trees) and endpoint settings (the meter's
Modbus address, the reader's pseudo-terminal). The simulated charger's physics and meter
servers run on a loop of their own (thread ``sim-ev-meter``), apart from the controller's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from controller.config import Config, ConnectorConfig
from controller.energy.grid_meter import PUSHED_SOURCES, build_meter, parse_role
from controller.hardware import Hardware, build_hardware
from drivers import meter as meter_driver
from drivers.base import EventSink
from drivers.contactor import ContactorConfig
from drivers.errors import ConfigurationError
from drivers.rfid_reader import READER_TYPES
from drivers.seams import HardwareSeams
from hw_sim import house_profile
from hw_sim.charger import (
    MAX_SIM_CONNECTORS,
    POWER_FAIL_PIN,
    SimCharger,
    sim_connector_section,
)
from hw_sim.control import ControlServer, RemoteControlRefused, loopback_only
from hw_sim.house_profile import HouseProfile
from hw_sim.loop_thread import SimChargerOnThread

__all__ = [
    "MAX_SIM_CONNECTORS",
    "ControlServer",
    "RemoteControlRefused",
    "SimCharger",
    "loopback_only",
    "start_simulation",
]


async def start_simulation(
    config: Config,
    state_dir: Path,
    *,
    connectors: int,
    speed: float,
    cable: str = "socket",
    on_event: EventSink,
    house_day: str | None = None,
    house_start_s: float = 0.0,
) -> tuple[SimCharger, Hardware, Config]:
    """Start the simulated charger and its drivers; returns the config as the drivers saw it."""
    sections = []
    for index in range(1, connectors + 1):
        configured = config.connectors[index - 1] if index <= len(config.connectors) else None
        section = sim_connector_section(index, configured.drivers if configured else {}, cable)
        section.setdefault("temperature_type", "ds18b20")
        sections.append(section)
    sim_config = dataclasses.replace(
        config,
        # Each configured connector as configured (its mode and thresholds too), its
        # drivers the simulated ones; a connector beyond the configured ones has defaults.
        connectors=tuple(
            dataclasses.replace(config.connectors[i - 1], drivers=section)
            if i <= len(config.connectors)
            else ConnectorConfig(id=i, drivers=section)
            for i, section in enumerate(sections, start=1)
        ),
        # the simulated UPS HAT's power-fail output (`picharge sim power-fail`)
        raw={
            **config.raw,
            "hardware": {**config.raw.get("hardware", {}), "power_fail_pin": POWER_FAIL_PIN},
        },
    )
    reader_type = config.rfid.get("type", "pn532_uart")
    if reader_type not in READER_TYPES:
        raise ConfigurationError(
            "rfid.type", f"must be one of {', '.join(READER_TYPES)}, got {reader_type!r}"
        )
    # A house behind a grid meter when the configuration protects a fuse with a polled one.
    house = (
        config.site.fuse_a > 0 and config.grid_meter.get("source", "modbus") not in PUSHED_SOURCES
    )
    if house_day is not None and not house:
        raise ConfigurationError(
            "--sim-house", "needs a house: [site] fuse_a and a [grid_meter] that is polled"
        )
    both_rtu = all(
        section.get("transport") == "rtu" for section in (config.meter, config.grid_meter)
    )
    if house and both_rtu:  # the simulation defaults to Modbus TCP where none is named
        _check_meter_lines(config)
    sim = SimChargerOnThread(
        state_dir,
        sections,
        meter_section=config.meter,
        rfid_section=config.rfid,
        speed=speed,
        house_meter_section=config.grid_meter if house else None,
        house_phases=config.site.phases,
        house_profile=_house_profile(house_day) if house else None,
        house_start_s=house_start_s,
        phase_switch=None
        if config.phase_switch is None
        else (
            config.phase_switch.connector,
            ContactorConfig.from_section(config.phase_switch.drivers, "phase_switch"),
        ),
    )
    try:
        seams, _, rfid_settings = await sim.start()
        if house:
            grid_meter = {**config.grid_meter, **sim.grid_meter_settings}
            sim_config = dataclasses.replace(sim_config, grid_meter=grid_meter)
        hardware = build_hardware(
            sim_config,
            seams,
            on_event,
            meter_overrides={c.id: sim.meter_settings_for(c.id) for c in sim.connectors},
            rfid_overrides=rfid_settings,
        )
    except BaseException:
        await sim.stop()
        raise
    return sim, hardware, sim_config


def _check_meter_lines(config: Config) -> None:
    """Claim the configured meters' lines as on a Pi, before the simulation puts its own
    pseudo-terminals in their place: a grid meter on the charger meter's RS-485 port with
    the same unit id or other line settings is refused naming the key, as it would be on
    the real bus (drivers.modbus_line). Builds drivers without opening anything."""
    seams = HardwareSeams()
    meter_section = {k: v for k, v in config.meter.items() if k != "type"}
    meter_driver.from_config(meter_section, seams)
    role = parse_role(config.grid_meter)
    if role.meter is not None:
        build_meter(role.meter, seams=seams)


def _house_profile(day: str | None) -> HouseProfile | None:
    """``--sim-house``: a built-in day or a CSV file; the error names the flag."""
    if day is None:
        return None
    try:
        return house_profile.load(day)
    except (OSError, ValueError) as exc:
        raise ConfigurationError("--sim-house", str(exc)) from exc
