"""Watch the charger's hardware and report what it sees, keeping every contactor open.

This is the hardware layer's own loop: it brings every driver up (CP to x1 so a car can be
detected, RCM watched, meter polled, reader read) and turns readings and driver events into
log lines and a snapshot for ``picharge sim status``. It never closes a contactor: charging
decisions belong to the connector state machine and the supervisor, which drive the same
drivers. Anything alarming (an RCM trip, a CP fault) opens the contactor all the same,
because opening is always safe.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from controller.hardware import ConnectorHardware, Hardware
from drivers.base import CpReading, DriverEvent, EventSink, MeterReading
from drivers.errors import DriverError

log = logging.getLogger(__name__)

METER_POLL_S = 1.0


@dataclass
class ConnectorView:
    """What the monitor last saw on one connector."""

    cp: CpReading | None = None
    meter: MeterReading | None = None
    rcm_tripped: bool = False
    temperature_c: float | None = None
    cable_a: int | None = None
    events: list[str] = field(default_factory=list)


class HardwareMonitor:
    """Runs every driver's loop; call :meth:`run` in a task and cancel it to stop."""

    def __init__(self, hardware: Hardware, on_event: EventSink) -> None:
        self.hardware = hardware
        self._on_event = on_event
        self.views = {c.id: ConnectorView() for c in hardware.connectors}
        self.cards: list[str] = []

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for c in self.hardware.connectors:
                c.pilot.generator.offer_current(0)  # x1: +12 V, nothing offered
                c.rcm.watch(functools.partial(self._rcm_changed, c))
                tasks.create_task(
                    c.pilot.sensor.run(functools.partial(self._cp_changed, c), self._on_event),
                    name=f"cp-{c.id}",
                )
                tasks.create_task(self._poll_meter(c), name=f"meter-{c.id}")
            if self.hardware.reader is not None:
                tasks.create_task(self.hardware.reader.run(self._card, self._on_event), name="rfid")

    def _cp_changed(self, c: ConnectorHardware, reading: CpReading) -> None:
        self.views[c.id].cp = reading
        log.info("connector %d: CP %s (%.1f V)", c.id, reading.state, reading.high_v)
        if reading.state is None or reading.state in ("E", "F") or reading.diode_ok is False:
            c.contactor.open()

    def _rcm_changed(self, c: ConnectorHardware, tripped: bool) -> None:
        self.views[c.id].rcm_tripped = tripped
        if tripped:
            c.contactor.open()
        log.warning("connector %d: RCM %s", c.id, "tripped" if tripped else "clear")

    def _card(self, uid: str) -> None:
        self.cards.append(uid)
        log.info("card presented: %s", uid)

    async def _poll_meter(self, c: ConnectorHardware) -> None:
        view = self.views[c.id]
        while True:
            try:
                view.meter = await c.meter.read()
            except DriverError as exc:
                log.warning("connector %d: meter: %s", c.id, exc)
            if c.thermometer is not None:
                try:
                    view.temperature_c = await c.thermometer.read_c()
                except DriverError as exc:
                    log.warning("connector %d: temperature: %s", c.id, exc)
            await asyncio.sleep(METER_POLL_S)

    def status(self) -> dict[str, Any]:
        """Per-connector fields for ``picharge sim status`` (the controller's view)."""
        out = []
        for cid, view in self.views.items():
            out.append(
                {
                    "id": cid,
                    "measured_cp_state": view.cp.state if view.cp else None,
                    "meter_energy_wh": view.meter.energy_import_wh if view.meter else None,
                    "temperature_c": view.temperature_c,
                    "ocpp_status": None,
                    "transaction_id": None,
                }
            )
        return {"controller": out, "cards_seen": list(self.cards)}


def log_event(event: DriverEvent) -> None:
    """The default event sink: faults as warnings, the rest at info level."""
    level = logging.WARNING if event.fault else logging.INFO
    log.log(level, "%s %s: %s", event.device, event.kind, event.detail)
