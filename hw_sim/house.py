"""The simulated house behind the grid meter (issue 16): its own load, its PV, its meter.

The grid meter is a :class:`~hw_sim.meter_server.SimMeter` of the configured model, served
over Modbus like every simulated meter, so the controller reads it through the real driver;
or, with ``source = "shelly"``, a :class:`~hw_sim.shelly.SimShellyPro3EM` on HTTP.
It measures the house's load and PV (spread evenly over the house's phases) plus every
simulated charger's current on the phase it is wired to. The simulator steps it with the
cars (:meth:`SimHouse.step`), so a car that follows a lower offer shows on the grid.

Powers in W (load >= 0, PV >= 0 produced), currents in A, import positive; a phase that
exports shows a negative power and a positive current magnitude, as an Eastron does.
Runs on the simulator's loop (``sim-ev-meter``); ``set`` may come from any thread (two
float stores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hw_sim.house_profile import HouseProfile
from hw_sim.meter_server import SimMeter
from hw_sim.shelly import SimShellyPro3EM

NOMINAL_VOLTAGE_V = 230.0


class SimHouse:
    """A household load and a PV array behind one simulated grid meter."""

    def __init__(
        self,
        meter_section: Mapping[str, Any] | None = None,
        phases: int = 3,
        profile: HouseProfile | None = None,
        start_s: float = 0.0,
    ) -> None:
        section = dict(meter_section or {})
        self.phases = phases
        self.meter: SimMeter | SimShellyPro3EM
        if section.get("source") == "shelly":  # a Shelly Pro 3EM's HTTP API, not Modbus
            self.meter = SimShellyPro3EM()
        else:
            self.meter = SimMeter(
                str(section.get("model", "sdm630")), unit_id=section.get("unit_id"), energy_wh=0.0
            )
        self._transport = str(section.get("transport", "tcp"))
        self._serial_port = str(section.get("serial_port", "/dev/serial0"))
        self.endpoint = ""
        self.load_w = 0.0
        self.pv_w = 0.0
        #: Loads on one phase each, on top of the spread ``load_w`` (an oven on L2 and L3).
        self.phase_load_w: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.grid_current_a: tuple[float, float, float] = (0.0, 0.0, 0.0)
        #: A day's load and PV to follow (None: the constant ``set`` values).
        self.profile = profile
        #: Simulated time of day (s), advanced at the simulation's speed.
        self.clock_s = start_s
        if profile is not None:
            self.load_w, self.pv_w = profile.at(start_s)

    async def start(self) -> dict[str, Any]:
        """Serve the grid meter; return the driver settings that reach it."""
        if isinstance(self.meter, SimShellyPro3EM):
            host, port = await self.meter.start("127.0.0.1", 0)
            self.endpoint = f"http://{host}:{port}"
            return {"host": host, "port": port}
        if self._transport == "rtu":
            return self.served_on(await self.meter.start_rtu())
        settings: dict[str, Any] = {"unit_id": self.meter.unit_id, "min_request_gap_s": 0.0}
        host, port = await self.meter.start_tcp("127.0.0.1", 0)
        self.endpoint = f"{host}:{port}"
        settings.update(transport="tcp", host=host, port=port)
        return settings

    def served_on(self, path: str) -> dict[str, Any]:
        """The driver settings of the grid meter served over RTU on the pty ``path`` (its
        own, or an RS-485 bus it shares with a charger's meter: hw_sim.meter_bus)."""
        assert isinstance(self.meter, SimMeter)
        self.endpoint = path
        return {
            "unit_id": self.meter.unit_id,
            "min_request_gap_s": 0.0,
            "transport": "rtu",
            "serial_port": path,
            "parity": "N",
        }

    @property
    def rtu_port(self) -> str | None:
        """The serial port configured for a Modbus RTU grid meter (None: TCP or HTTP)."""
        if isinstance(self.meter, SimShellyPro3EM) or self._transport != "rtu":
            return None
        return self._serial_port

    async def stop(self) -> None:
        await self.meter.stop()

    def set(self, load_w: float, pv_w: float) -> None:
        """What the house consumes and the PV produces now (W, both >= 0)."""
        for name, value in (("load", load_w), ("pv", pv_w)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a power >= 0 W, got {value}")
        self.load_w, self.pv_w = float(load_w), float(pv_w)
        self.profile = None  # a value set by hand holds until the next one

    def set_phase_load(self, phase_load_w: Sequence[float]) -> None:
        """Loads on single phases (W per L1, L2, L3, each >= 0), on top of the spread load."""
        values = [float(w) for w in phase_load_w]
        if len(values) != 3 or not all(math.isfinite(w) and w >= 0 for w in values):
            raise ValueError(f"phase loads must be three powers >= 0 W, got {phase_load_w!r}")
        self.phase_load_w = (values[0], values[1], values[2])

    def step(self, charger_a: Sequence[tuple[float, float, float]], energy_dt_s: float) -> None:
        """Advance the day by ``energy_dt_s`` simulated seconds and measure the house plus
        ``charger_a`` (each charger's current per grid phase)."""
        self.clock_s += energy_dt_s
        if self.profile is not None:
            self.load_w, self.pv_w = self.profile.at(self.clock_s)
        house_w = (self.load_w - self.pv_w) / self.phases
        power = [0.0, 0.0, 0.0]
        for p in range(self.phases):
            power[p] = (
                house_w
                + self.phase_load_w[p]
                + NOMINAL_VOLTAGE_V * math.fsum(c[p] for c in charger_a)
            )
        current = [p_w / NOMINAL_VOLTAGE_V for p_w in power]
        self.grid_current_a = (current[0], current[1], current[2])
        volts = tuple(NOMINAL_VOLTAGE_V if p < self.phases else 0.0 for p in range(3))
        self.meter.set_measurements(
            (volts[0], volts[1], volts[2]),
            (abs(current[0]), abs(current[1]), abs(current[2])),
            (power[0], power[1], power[2]),
        )
        # Import and export count per phase, each on its own register (a phase exporting
        # while another imports adds to both); a meter that nets the phases first (German
        # "saldierend") would count less of each: the simulation does not model that choice.
        imported_w = math.fsum(p for p in power if p > 0)
        exported_w = -math.fsum(p for p in power if p < 0)
        self.meter.add_energy_wh(imported_w * energy_dt_s / 3600.0)
        self.meter.add_export_wh(exported_w * energy_dt_s / 3600.0)

    def status(self) -> dict[str, Any]:
        day_s = int(self.clock_s) % 86_400
        return {
            "profile": None if self.profile is None else self.profile.name,
            "clock": f"{day_s // 3600:02d}:{day_s // 60 % 60:02d}:{day_s % 60:02d}",
            "load_w": round(self.load_w, 1),
            "pv_w": round(self.pv_w, 1),
            "phase_load_w": [round(w, 1) for w in self.phase_load_w],
            "grid_current_a": [round(a, 2) for a in self.grid_current_a],
            "grid_meter_modbus": self.endpoint,
            "grid_meter_fault": self.meter.fault,
        }
