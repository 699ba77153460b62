"""Builds local energy management from the configuration (the composition root's helper).

With ``[site] fuse_a`` set, the app gets a :class:`LocalEnergy`: the grid feed, the grid
meter's poller (unless readings are pushed) and the fuse manager, subscribed to the
supervisor's broadcast, and the charging modes. Without it, a standalone charger with
``[energy]`` (or a ``[[connector]] mode``) gets the charging modes alone (fast and
schedule: the clock and each connector's own meter); with neither there is nothing to run
and no limit is ever set.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.config import Config
from controller.domain import ConnectorView
from controller.energy.circuits import Circuits, parse_circuits
from controller.energy.fuse import Site
from controller.energy.grid import GridFeed
from controller.energy.grid_meter import GridMeterRole, build_meter, parse_role, poll
from controller.energy.manager import ConnectorWiring, FuseManager, LimitSink
from controller.energy.mode_runner import ModeRunner, build_modes
from controller.energy.phase_control import ChargerControl, PhaseControl
from controller.events import Broadcast
from controller.hardware import Hardware
from drivers.base import EventSink
from drivers.errors import ConfigurationError

#: The broadcast queue of the manager: it only needs the newest reading of each connector.
EVENTS_MAXLEN = 64


@dataclass
class LocalEnergy:
    """The running parts: ``feed.push`` is the entry for pushed grid readings. ``feed``,
    ``manager`` and ``role`` are None without a grid meter (the modes run alone)."""

    feed: GridFeed | None
    manager: FuseManager | None
    jobs: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = field(default_factory=list)
    modes: ModeRunner | None = None  # the charging modes ([energy])
    role: GridMeterRole | None = None  # the parsed [grid_meter]

    def pushed(self, source: str) -> GridFeed | None:
        """The feed when the grid meter's readings are pushed through ``source`` (``"push"``:
        the local API, ``"mqtt"``: the MQTT bridge), else None."""
        if self.role is None or self.role.source != source:
            return None
        return self.feed

    def start(self) -> Sequence[asyncio.Task[None]]:
        """Start the poller and the manager as named tasks of the running loop."""
        tasks = [asyncio.create_task(job(), name=name) for name, job in self.jobs]
        return tasks


def build_local_energy(
    config: Config,
    sink: LimitSink,
    events: Broadcast,
    on_event: EventSink,
    hardware: Hardware | None = None,
) -> LocalEnergy | None:
    """The energy parts ``config`` asks for, or None; ConfigurationError names the key.

    ``hardware`` is the charger's: a grid meter on its meter's RS-485 port then shares that
    line (``Hardware.seams``), and with ``[phase_switch]`` it holds the connector's phase
    contactor, and ``sink`` must also raise connector faults
    (:class:`~controller.energy.phase_control.ChargerControl`).
    """
    if config.site.fuse_a <= 0:
        return _standalone_modes(config, sink, events)
    role = parse_role(config.grid_meter)
    if role.source == "mqtt" and config.mqtt is None:
        raise ConfigurationError("grid_meter.source", "is 'mqtt': configure [mqtt] url")
    site = Site(
        fuse_a=config.site.fuse_a,
        margin_a=config.site.margin_a,
        phases=config.site.phases,
        fallback_a=config.site.fallback_current_a,
        max_age_s=config.site.grid_max_age_s,
    )
    feed = GridFeed()
    wiring = [ConnectorWiring(c.id, c.phase_rotation, c.max_current_a) for c in config.connectors]
    circuits = parse_circuits(config.circuits, [c.id for c in config.connectors])
    manager = FuseManager(
        site,
        wiring,
        feed,
        sink,
        circuits=Circuits(circuits) if circuits else None,
        views=_views(sink),
    )
    events.subscribe("energy", manager.on_event, maxlen=EVENTS_MAXLEN)
    energy = LocalEnergy(feed, manager, [("energy-fuse", manager.run)], role=role)
    if role.shelly is not None:
        from controller.energy.shelly import poll_shelly  # aiohttp only where configured

        energy.jobs.append(
            (
                "energy-grid-meter",
                functools.partial(poll_shelly, role.shelly, feed, role.interval_s),
            )
        )
    energy.modes = build_modes(config, manager, feed, sink, events, views=_views(sink))
    if config.phase_switch is not None:
        control = _phase_control(config, manager, feed, sink, events, hardware, energy.modes)
        energy.jobs.append(("energy-phase-switch", control.run))
    energy.jobs.append(("energy-modes", energy.modes.run))
    if role.meter is not None:
        meter = build_meter(role.meter, on_event, None if hardware is None else hardware.seams)
        energy.jobs.append(
            ("energy-grid-meter", functools.partial(poll, meter, feed, role.interval_s))
        )
    return energy


def _views(sink: LimitSink) -> Callable[[int], ConnectorView] | None:
    """Each connector's view where the sink is the charger (read after a Resync)."""
    return sink.view if isinstance(sink, ChargerControl) else None


def _standalone_modes(config: Config, sink: LimitSink, events: Broadcast) -> LocalEnergy | None:
    """Without ``[site]``: the charging modes alone when configured, else None. The parts
    that act on the house's readings are refused naming their section."""
    given = (
        ("grid_meter", config.grid_meter),
        ("circuit", config.circuits),
        ("phase_switch", config.phase_switch),
    )
    for key, table in given:
        if table:
            raise ConfigurationError(key, "needs [site] fuse_a (the house's main fuse)")
    if not config.energy and all(c.mode is None and not c.energy for c in config.connectors):
        return None
    modes = build_modes(config, None, None, sink, events, views=_views(sink))
    return LocalEnergy(None, None, [("energy-modes", modes.run)], modes)


def _phase_control(
    config: Config,
    manager: FuseManager,
    feed: GridFeed,
    sink: LimitSink,
    events: Broadcast,
    hardware: Hardware | None,
    modes: ModeRunner,
) -> PhaseControl:
    """The phase switch of ``[phase_switch]``'s connector, subscribed to the broadcast."""
    assert config.phase_switch is not None
    cid = config.phase_switch.connector
    connector = None if hardware is None else hardware.connector(cid)
    if connector is None or connector.phase_contactor is None:
        raise ConfigurationError("phase_switch", "no phase contactor was built for it")
    if not isinstance(sink, ChargerControl):
        raise TypeError("a phase switch needs a sink that raises connector faults")
    wiring = next(w for w in manager.wiring if w.connector_id == cid)
    control = PhaseControl(
        config.phase_switch,
        wiring,
        connector.contactor,
        connector.phase_contactor,
        manager,
        feed,
        sink,
        modes=modes,
    )
    events.subscribe("energy-phase-switch", control.on_event, maxlen=EVENTS_MAXLEN)
    return control
