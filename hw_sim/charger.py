"""The simulated charger: cars, meters, pins, I2C chips, readers and faults, wired together.

:class:`SimCharger` owns every simulated device of a `--sim` run and the physics between
them: the PWM duty the driver writes into the fake sysfs tells each car what it may draw;
the contactor's main contacts (MockFactory pins) power it; the car's current reaches its
meter's registers (a real pymodbus server), whose energy integrates the car's power and is
kept in the state directory across restarts, as a real meter keeps counting through a
controller reboot; so are the cars' plug and charge state (``sim-cars.json``), since a car
stays plugged in while the charger reboots. The CP voltage the car's resistors produce
reaches the driver through the simulated ADS1115 on the SMBus stand-in. Faults are injected here.

Everything a driver talks to is hardware-level; nothing here knows about the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from drivers import cp_window
from drivers.base import CpState, SMBusLike
from drivers.contactor import ContactorConfig
from drivers.pilot_levels import FrontEndCalibration
from drivers.rcm import RcmConfig
from drivers.seams import HardwareSeams
from hw_sim.ads1115 import SimAds1115
from hw_sim.ev import EvSpec, SimEV
from hw_sim.house import SimHouse
from hw_sim.house_profile import HouseProfile
from hw_sim.meter_bus import SimMeterBus
from hw_sim.meter_server import SimMeter
from hw_sim.pilot_frontend import adc_inputs, cp_levels, ev_current_limit_a, window_active
from hw_sim.pins import (
    SimContactorPins,
    SimCpWindowPin,
    SimLockPins,
    SimPowerFailPin,
    SimRcmPins,
)
from hw_sim.pwm_sysfs import SimPwmSysfs
from hw_sim.rfid import SimRdm6300
from hw_sim.rfid_pn532 import SimPn532I2c, SimPn532Uart
from hw_sim.smbus import SimSMBus
from hw_sim.w1 import SimW1Thermometer

log = logging.getLogger(__name__)

TICK_S = 0.05  # physics step in wall-clock seconds
#: How often the meters' energy registers are written to the state dir (when they moved): a
#: real meter's register is non-volatile, so a controller killed with SIGKILL (which takes
#: the simulation with it) loses at most this much of the simulated count.
SAVE_EVERY_S = 0.2
CABLE_PP_OHM = 220.0  # a 32 A Type 2 cable (PP resistor), as the design's default socket
AMBIENT_C = 25.0
OVERTEMP_C = 90.0

#: BCM pins and I2C/PWM resources of simulated connectors 1-4 (connector 1 = the design's
#: defaults). A Pi header has 28 GPIOs, so four connectors are the simulation's limit.
SIM_CONNECTOR_DEFAULTS: tuple[dict[str, int], ...] = (
    {"contactor_pin": 17, "feedback_pin": 27, "rcm_fault_pin": 22, "rcm_test_pin": 23},
    {"contactor_pin": 5, "feedback_pin": 6, "rcm_fault_pin": 16, "rcm_test_pin": 20},
    {"contactor_pin": 12, "feedback_pin": 13, "rcm_fault_pin": 21, "rcm_test_pin": 26},
    {"contactor_pin": 8, "feedback_pin": 9, "rcm_fault_pin": 10, "rcm_test_pin": 11},
)
MAX_SIM_CONNECTORS = len(SIM_CONNECTOR_DEFAULTS)
#: Each socket's lock actuator (a holding solenoid) and its feedback contact: the header's
#: last free GPIOs (the LED is on 24, the UPS HAT's power-fail output on 25).
SIM_LOCK_PINS: tuple[dict[str, int], ...] = (
    {"lock_pin": 7, "lock_feedback_pin": 19},
    {"lock_pin": 4, "lock_feedback_pin": 18},
    {"lock_pin": 0, "lock_feedback_pin": 1},
    {"lock_pin": 14, "lock_feedback_pin": 15},
)
#: What ``--sim-cable`` chooses: a Type 2 socket with a lock (the cable's PP resistor rates
#: it), or a tethered 32 A cable (no PP, no lock).
CABLES = ("socket", "tethered")
TETHERED_CABLE_A = 32
#: Faults ``picharge sim fault`` injects: an RCD trip, an RCM whose self-test no longer
#: trips it, a welded contactor, one whose contacts do not close when energized (a dead
#: coil or burnt contacts: the coil pin is driven, the feedback never confirms), the meter
#: offline or talking garbage, a shorted CP, a missing EV diode, an overheated socket, a
#: jammed lock actuator (locking or unlocking fails), mains
#: under- or over-voltage (charger-wide), the state database unwritable (the controller's
#: side acts on it), the next firmware installation failing (the charger's flash).
FAULTS = (
    "rcd",
    "rcd-selftest",
    "weld",
    "close-fail",
    "meter",
    "meter-garbage",
    "cp",
    "diode",
    "overtemp",
    "lock",
    "undervoltage",
    "overvoltage",
    "storage",
    "firmware",
    "phase-weld",
    "phase-close-fail",
    "clear",
)
#: The mains the simulated meters see (they sit before the contactor, as in most wallboxes):
#: nominal, and what ``sim fault undervoltage|overvoltage`` makes of it (230 V -15 % / +14 %).
MAINS_V = 230.0
UNDERVOLTAGE_V = 195.0
OVERVOLTAGE_V = 262.0
#: The GPIO of the simulated UPS HAT's power-fail output (``[hardware] power_fail_pin``).
POWER_FAIL_PIN = 25


def sim_connector_section(
    index: int, configured: Mapping[str, Any], cable: str = "socket"
) -> dict[str, Any]:
    """Connector ``index``'s driver keys: what is configured, else the simulation's defaults
    (``cable``: a ``socket`` with its lock actuator, or a ``tethered`` cable)."""
    if cable not in CABLES:
        raise ValueError(f"cable must be one of {', '.join(CABLES)}, got {cable!r}")
    kind: dict[str, Any] = (
        dict(SIM_LOCK_PINS[index - 1])
        if cable == "socket"
        else {"tethered_cable_a": TETHERED_CABLE_A}
    )
    defaults: dict[str, Any] = {
        **SIM_CONNECTOR_DEFAULTS[index - 1],
        **kind,
        "pwm_chip": 0,
        "pwm_channel": index - 1,
        "adc_bus": 1,
        "adc_address": 0x47 + index,
        "temperature_sensor": f"28-0000000000{index:02x}",
    }
    return {**defaults, **configured}


@dataclass
class SimConnector:
    """One simulated connector: the car, its meter and the hardware around them."""

    id: int
    section: dict[str, Any]
    ev: SimEV
    meter: SimMeter
    contactor: SimContactorPins
    rcm: SimRcmPins
    adc: SimAds1115
    thermometer: SimW1Thermometer
    pwm_channel: int
    _diode_ok: bool = field(default=True, repr=False)
    _cp_short: bool = field(default=False, repr=False)
    meter_endpoint: str = ""
    faults: set[str] = field(default_factory=set)
    lock: SimLockPins | None = None  # the socket's lock actuator; None: a tethered cable
    #: The second contactor giving the car L2 and L3 ([phase_switch]); None: always three.
    phase_contactor: SimContactorPins | None = None
    #: The CP window comparator's output (``cp_window_pin`` configured), else None.
    window: SimCpWindowPin | None = None
    #: Called after anything on the CP line changed (the charger points it at the window
    #: comparator, which follows at once, on the thread that made the change).
    line_changed: Callable[[], None] = field(default=lambda: None, repr=False)
    #: The PWM output (%) the line was last computed with (each ADS1115 conversion, each
    #: physics step): the window comparator follows a change of the car or a fault with it,
    #: without the sysfs reads (system calls, each a GIL hand-over) a real comparator
    #: does not make either.
    duty_seen_pct: float = 0.0

    @property
    def diode_ok(self) -> bool:
        """False: the car's CP diode is shorted (``sim fault diode``)."""
        return self._diode_ok

    @diode_ok.setter
    def diode_ok(self, ok: bool) -> None:
        self._diode_ok = ok
        self.line_changed()

    @property
    def cp_short(self) -> bool:
        """True: the CP line is shorted to PE (``sim fault cp``)."""
        return self._cp_short

    @cp_short.setter
    def cp_short(self, short: bool) -> None:
        self._cp_short = short
        self.line_changed()


class SimCharger:
    """All simulated hardware of one `--sim` run.

    Create it, ``await start()`` (which returns the seams and driver settings that point the
    real drivers at it), then ``await stop()``. ``speed`` makes car and meter time run faster
    than the wall clock; it never touches protocol timers (those belong to the controller).
    """

    def __init__(
        self,
        state_dir: Path,
        connector_sections: list[dict[str, Any]],
        *,
        meter_section: Mapping[str, Any] | None = None,
        rfid_section: Mapping[str, Any] | None = None,
        speed: float = 1.0,
        ev_spec: EvSpec | None = None,
        house_meter_section: Mapping[str, Any] | None = None,
        house_phases: int = 3,
        house_profile: HouseProfile | None = None,
        house_start_s: float = 0.0,
        phase_switch: tuple[int, ContactorConfig] | None = None,
    ) -> None:
        """``phase_switch``: the connector with a phase contactor, and that contactor's pins."""
        self._phase_switch = phase_switch
        if not 1 <= len(connector_sections) <= MAX_SIM_CONNECTORS:
            raise ValueError(f"the simulation has 1 to {MAX_SIM_CONNECTORS} connectors")
        self.state_dir = state_dir
        self.speed = speed
        self._meter_section = dict(meter_section or {})
        self._rfid_type = str((rfid_section or {}).get("type", "pn532_uart"))
        self._sections = connector_sections
        self._ev_spec = ev_spec
        self._tmp = tempfile.TemporaryDirectory(prefix="picharge-sim-")
        self.factory = MockFactory()
        self.bus = SimSMBus()
        self.pwm = SimPwmSysfs(Path(self._tmp.name) / "pwm", channels=len(connector_sections))
        self.w1_root = Path(self._tmp.name) / "w1"
        self.calibration = FrontEndCalibration()
        self.connectors: list[SimConnector] = []
        self.reader: SimPn532Uart | SimPn532I2c | SimRdm6300 | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._energy_file = state_dir / "sim-meters.json"
        self._saved_energy: dict[str, float] | None = None
        self._save_failed = False
        self._cars_file = state_dir / "sim-cars.json"
        #: ``sim fault firmware``: the next firmware installation fails (the controller's
        #: simulated installer asks; it is the charger's flash, not a connector's).
        self.firmware_fault = False
        self.mains_v = MAINS_V  # read by the physics thread each step
        self.power_fail: SimPowerFailPin | None = None
        #: The house behind a grid meter, when the configuration has one ([grid_meter]).
        self.house = (
            SimHouse(house_meter_section, house_phases, house_profile, house_start_s)
            if house_meter_section is not None
            else None
        )
        #: Driver settings that reach the house's grid meter (after start).
        self.grid_meter_settings: dict[str, Any] = {}
        #: Connector 1's meter and the grid meter on one simulated RS-485 bus, when the
        #: configuration puts both on the same serial port.
        self._meter_bus: SimMeterBus | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> tuple[HardwareSeams, dict[str, Any], dict[str, Any]]:
        """Start every device; return (seams, meter settings, rfid settings) for the drivers."""
        saved = self._load_energy()
        cars = self._load_cars()
        shared = self._grid_meter_on_the_meter_bus()
        for index, section in enumerate(self._sections, start=1):
            connector = await self._start_connector(
                index, section, saved, serve=not (shared and index == 1)
            )
            car = cars.get(str(index), {})
            if car.get("plugged"):  # still plugged in from before the restart
                connector.ev.plug()
                connector.ev.requesting = bool(car.get("requesting", True))
            self.connectors.append(connector)
        if self._phase_switch is not None:
            cid, pins = self._phase_switch
            self.connector(cid).phase_contactor = SimContactorPins.from_config(self.factory, pins)
        self.power_fail = SimPowerFailPin(self.factory, POWER_FAIL_PIN)
        rfid_settings = self._start_reader()
        if self.house is not None and shared:
            # One RS-485 bus: connector 1's meter and the grid meter, each with its unit id.
            c1, grid = self.connectors[0], self.house.meter
            assert isinstance(grid, SimMeter)  # rtu_port is None for a Shelly
            self._meter_bus = SimMeterBus([c1.meter, grid])
            c1.meter_endpoint = await self._meter_bus.start_rtu()
            self.grid_meter_settings = self.house.served_on(c1.meter_endpoint)
        elif self.house is not None:
            self.grid_meter_settings = await self.house.start()
        meter_settings = self._meter_settings()
        self.step(0.0)  # the meters measure the mains from the start, as wired ones do
        self._ticker = asyncio.create_task(self._tick_forever(), name="sim-physics")
        seams = HardwareSeams(
            pin_factory=self.factory,
            open_i2c_bus=self._open_bus,
            pwm_sysfs_root=self.pwm.root,
            w1_sysfs_root=self.w1_root,
        )
        return seams, meter_settings, rfid_settings

    async def stop(self) -> None:
        """Stop the physics, save the meters' energy, and release every device; idempotent."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self.connectors:
            self._save_energy()
        if self._meter_bus is not None:
            await self._meter_bus.stop()
            self._meter_bus = None
        if self.house is not None:
            await self.house.stop()
        for c in self.connectors:
            await c.meter.stop()
            c.contactor.close()
            if c.phase_contactor is not None:
                c.phase_contactor.close()
            c.rcm.close()
        self.connectors.clear()
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.pwm.close()
        self.factory.close()
        self._tmp.cleanup()

    def _open_bus(self, number: int) -> SMBusLike:
        # Every connector's ADC sits on this one bus; closing a driver's handle must not
        # take the bus away from the others, so each driver gets a view that only it closes.
        return _BusHandle(self.bus)

    def _grid_meter_on_the_meter_bus(self) -> bool:
        """True when ``[grid_meter]`` names the charger meter's RS-485 port (both RTU): the
        simulation then serves both unit ids on one pty, as the wires are on a real bus."""
        port = None if self.house is None else self.house.rtu_port
        meter = self._meter_section
        return (
            port is not None
            and meter.get("transport", "tcp") == "rtu"
            and port == str(meter.get("serial_port", "/dev/serial0"))
        )

    async def _start_connector(
        self, index: int, section: dict[str, Any], saved: dict[str, float], serve: bool = True
    ) -> SimConnector:
        """Start one connector's devices; ``serve=False`` leaves its meter to a shared bus."""
        prefix = f"connector.{index}"
        ev = SimEV(EvSpec(**vars(self._ev_spec)) if self._ev_spec else EvSpec())
        meter = SimMeter(
            str(self._meter_section.get("model", "sdm630")),
            unit_id=int(self._meter_section.get("unit_id", 1)),
            energy_wh=saved.get(str(index), 0.0),
        )
        thermometer = SimW1Thermometer(self.w1_root, str(section["temperature_sensor"]))
        thermometer.set_c(AMBIENT_C)
        connector = SimConnector(
            id=index,
            section=section,
            ev=ev,
            meter=meter,
            contactor=SimContactorPins.from_config(
                self.factory, ContactorConfig.from_section(section, prefix)
            ),
            rcm=SimRcmPins.from_config(self.factory, RcmConfig.from_section(section, prefix)),
            adc=SimAds1115(lambda channel: 0.0),
            thermometer=thermometer,
            pwm_channel=int(section["pwm_channel"]),
        )
        connector.adc = SimAds1115(lambda channel: self._adc_input(connector, channel))
        window = cp_window.from_section(section, prefix)
        if window is not None:
            connector.window = SimCpWindowPin(self.factory, window)
            connector.line_changed = lambda: self._follow_window(connector)
            ev.on_change = connector.line_changed
            self._follow_window(connector, fresh=True)
        self.bus.attach(int(section["adc_address"]), connector.adc)
        if "lock_pin" in section:
            unlock = section.get("unlock_pin")
            connector.lock = SimLockPins(
                self.factory,
                int(section["lock_pin"]),
                int(section["lock_feedback_pin"]),
                None if unlock is None else int(unlock),
                feedback_active_high=bool(section.get("lock_feedback_active_high", True)),
            )
        if not serve:
            pass  # its pty is the shared bus's, started with the grid meter
        elif self._meter_section.get("transport", "tcp") == "rtu":
            connector.meter_endpoint = await meter.start_rtu()
        else:
            host, port = await meter.start_tcp("127.0.0.1", 0)
            connector.meter_endpoint = f"{host}:{port}"
        return connector

    def _start_reader(self) -> dict[str, Any]:
        if self._rfid_type == "rdm6300":
            rdm = SimRdm6300()
            self.reader = rdm
            return {"type": "rdm6300", "serial_port": rdm.port_path}
        if self._rfid_type == "pn532_i2c":
            i2c = SimPn532I2c()
            i2c.attach(self.bus)
            self.reader = i2c
            return {"type": "pn532_i2c", "i2c_bus": 1}
        uart = SimPn532Uart()
        self.reader = uart
        return {"type": "pn532_uart", "serial_port": uart.port_path}

    def _meter_settings(self) -> dict[str, Any]:
        """Meter driver settings for connector 1; :meth:`meter_settings_for` for the others."""
        return self.meter_settings_for(1)

    def meter_settings_for(self, connector_id: int) -> dict[str, Any]:
        c = self.connector(connector_id)
        settings = {**self._meter_section, "unit_id": c.meter.unit_id}
        if self._meter_section.get("transport", "tcp") == "rtu":
            settings.update(transport="rtu", serial_port=c.meter_endpoint, parity="N")
        else:
            host, _, port = c.meter_endpoint.rpartition(":")
            settings.update(transport="tcp", host=host, port=int(port))
        settings.setdefault("min_request_gap_s", 0.0)
        return settings

    # -- physics ----------------------------------------------------------------------------

    def offered_a(self, c: SimConnector) -> float | None:
        """What the car reads from the PWM (None: nothing offered)."""
        return ev_current_limit_a(self.pwm.output_pct(c.pwm_channel))

    def cp_state(self, c: SimConnector) -> CpState:
        """The state on the CP line as a meter on the wire would classify it."""
        duty = self.pwm.output_pct(c.pwm_channel)
        if c.cp_short:
            return CpState.E
        if duty <= 0.0:
            return CpState.F
        return c.ev.cp_state(self.offered_a(c))

    def _cp_levels(self, c: SimConnector) -> tuple[float, float]:
        """The CP's highest and lowest level now (the peak detectors' inputs)."""
        duty = self.pwm.output_pct(c.pwm_channel)  # read once: this runs on every conversion
        c.duty_seen_pct = duty
        return self._levels_at(c, duty)

    @staticmethod
    def _levels_at(c: SimConnector, duty: float) -> tuple[float, float]:
        ev_state = CpState.E if c.cp_short else c.ev.cp_state(ev_current_limit_a(duty))
        return cp_levels(ev_state, duty, diode_ok=c.diode_ok, cp_short=c.cp_short)

    def _adc_input(self, c: SimConnector, channel: int) -> float:
        """Called by the simulated ADS1115 (on the driver's sampling thread)."""
        high_v, low_v = self._cp_levels(c)
        pp_ohms = CABLE_PP_OHM if c.ev.plugged else None
        return adc_inputs(high_v, low_v, pp_ohms, self.calibration)[channel]

    def _follow_window(self, c: SimConnector, *, fresh: bool = False) -> None:
        """The window comparator judges the positive peak the ADS1115's AIN0 reads: called
        after every change the simulation makes to the line (the car, a CP fault) on the
        thread that made it, with the PWM as last seen, and at each physics step with the
        PWM read afresh (``fresh``: our own PWM changes, a full battery)."""
        if c.window is not None:
            high_v = self._cp_levels(c)[0] if fresh else self._levels_at(c, c.duty_seen_pct)[0]
            c.window.follow(window_active(high_v))

    def step(self, wall_dt_s: float) -> None:
        """Advance every car and meter by ``wall_dt_s`` wall-clock seconds (times speed)."""
        ev_dt = wall_dt_s * self.speed
        for c in self.connectors:
            self._follow_window(c, fresh=True)
            powered = c.contactor.main_contacts_closed
            phase = c.phase_contactor
            c.ev.supplied_phases = 3 if phase is None or phase.main_contacts_closed else 1
            c.ev.step(ev_dt, self.offered_a(c), powered)
            volts = self.mains_v  # the meter sits before the contactor: it sees mains
            currents = c.ev.phase_currents_a
            c.meter.set_measurements(
                (volts, volts, volts),
                currents,
                (currents[0] * volts, currents[1] * volts, currents[2] * volts),
                50.0,
            )
            c.meter.add_energy_wh(c.ev.power_w * ev_dt / 3600.0)
        if self.house is not None:
            # Every connector is wired L1-L2-L3 in the simulation: its phase n is grid phase n.
            self.house.step(
                [
                    c.ev.phase_currents_a if c.contactor.main_contacts_closed else (0.0, 0.0, 0.0)
                    for c in self.connectors
                ],
                ev_dt,
            )

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        last_save = last
        while True:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            self.step(now - last)
            last = now
            if now - last_save >= SAVE_EVERY_S:
                self._save_energy()
                last_save = now

    def _load_energy(self) -> dict[str, float]:
        try:
            data = json.loads(self._energy_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning(
                "simulated meter energy in %s unreadable (%s): starting at 0 Wh",
                self._energy_file,
                exc,
            )
            return {}
        return {str(k): float(v) for k, v in data.items() if math.isfinite(float(v))}

    def _load_cars(self) -> dict[str, dict[str, bool]]:
        """Each connector's car as the last run left it: {"1": {"plugged", "requesting"}}."""
        try:
            data = json.loads(self._cars_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("simulated cars in %s unreadable (%s): unplugged", self._cars_file, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(k): {"plugged": bool(v.get("plugged")), "requesting": bool(v.get("requesting"))}
            for k, v in data.items()
            if isinstance(v, dict)
        }

    def _save_cars(self) -> None:
        """Written at once on every plug, unplug, charge and pause (a SIGKILL loses none)."""
        data = {
            str(c.id): {"plugged": c.ev.plugged, "requesting": c.ev.requesting}
            for c in self.connectors
        }
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._cars_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self._cars_file)
        except OSError as exc:  # a broken state directory: the car is still where it is
            log.warning("simulated cars not saved to %s: %s", self._cars_file, exc)

    def _save_energy(self) -> None:
        data = {str(c.id): c.meter.energy_wh for c in self.connectors}
        if data == self._saved_energy:
            return  # unchanged: an idle charger writes nothing
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self._energy_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            tmp.replace(self._energy_file)
        except OSError as exc:  # the state directory is broken (a test of exactly that)
            if self._saved_energy is not None or not self._save_failed:
                log.warning("simulated meter energy not saved to %s: %s", self._energy_file, exc)
            self._save_failed = True
            self._saved_energy = None
            return
        self._saved_energy = data
        self._save_failed = False

    # -- the control endpoint ---------------------------------------------------------------

    def connector(self, connector_id: int) -> SimConnector:
        for c in self.connectors:
            if c.id == connector_id:
                return c
        raise LookupError(
            f"no connector {connector_id} (the simulation has {len(self.connectors)})"
        )

    def tap(self, uid_hex: str) -> None:
        try:
            uid = bytes.fromhex(uid_hex)
        except ValueError:
            raise ValueError(f"card UID must be hex, got {uid_hex!r}") from None
        # Queued in the reader, whose thread or chip plays one presentation after another
        # (field empty in between): a tap acknowledged here is never lost or merged.
        if isinstance(self.reader, SimRdm6300):
            self.reader.tap(uid, hold_s=0.3)
        elif self.reader is not None:
            self.reader.tap(uid)

    def inject(self, connector_id: int, fault: str) -> None:
        c = self.connector(connector_id)
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        if fault == "clear":
            c.rcm.clear()
            c.rcm.set_selftest_broken(False)
            c.contactor.set_welded(False)
            c.contactor.set_stuck_open(False)
            if c.phase_contactor is not None:
                c.phase_contactor.set_welded(False)
                c.phase_contactor.set_stuck_open(False)
            c.meter.set_fault(None)
            c.cp_short = False
            c.diode_ok = True
            c.thermometer.set_c(AMBIENT_C)
            c.faults.clear()
            if c.lock is not None:
                c.lock.jammed = False
            self.firmware_fault = False
            self.mains_v = MAINS_V
            if self.power_fail is not None:
                self.power_fail.set(False)  # the supply is back
            return
        if fault.startswith("phase-") and c.phase_contactor is None:
            raise ValueError(f"connector {c.id} has no phase contactor ([phase_switch])")
        if fault == "lock" and c.lock is None:
            raise ValueError(f"connector {c.id} has a tethered cable: no lock to jam")
        c.faults.add(fault)
        if fault == "lock":
            assert c.lock is not None
            c.lock.jammed = True
        elif fault == "rcd":
            c.rcm.trip()
        elif fault == "rcd-selftest":
            c.rcm.set_selftest_broken(True)
        elif fault == "weld":
            c.contactor.set_welded(True)
        elif fault == "close-fail":
            c.contactor.set_stuck_open(True)
        elif fault == "phase-weld":
            assert c.phase_contactor is not None
            c.phase_contactor.set_welded(True)
        elif fault == "phase-close-fail":
            assert c.phase_contactor is not None
            c.phase_contactor.set_stuck_open(True)
        elif fault == "meter":
            c.meter.set_fault("offline")
        elif fault == "meter-garbage":
            c.meter.set_fault("garbage")
        elif fault == "cp":
            c.cp_short = True
        elif fault == "diode":
            c.diode_ok = False
        elif fault == "overtemp":
            c.thermometer.set_c(OVERTEMP_C)
        elif fault == "firmware":
            self.firmware_fault = True
        elif fault == "undervoltage":
            self.mains_v = UNDERVOLTAGE_V
        elif fault == "overvoltage":
            self.mains_v = OVERVOLTAGE_V

    def status(self) -> dict[str, Any]:
        """The hardware's view, per connector (the controller adds OCPP fields)."""
        connectors = []
        for c in self.connectors:
            offered = self.offered_a(c)
            connectors.append(
                {
                    "id": c.id,
                    "cp_state": str(self.cp_state(c)),
                    "contactor_closed": c.contactor.main_contacts_closed,
                    "coil_energized": c.contactor.coil_energized,
                    "offered_current_a": round(offered or 0.0, 2),
                    "ev_current_a": round(c.ev.current_a, 2),
                    "energy_wh": round(c.meter.energy_wh, 1),
                    "power_w": round(c.ev.power_w, 1),
                    "soc_pct": round(c.ev.soc_pct, 1),
                    "ev_plugged": c.ev.plugged,
                    "faults": sorted(c.faults),
                    "cable": "socket" if c.lock is not None else "tethered",
                    "lock_engaged": None if c.lock is None else c.lock.engaged,
                    "meter_modbus": c.meter_endpoint,
                    "phases_supplied": c.ev.supplied_phases,
                    # the CP window comparator's verdict (None: no cp_window_pin)
                    "cp_window_active": None if c.window is None else c.window.active,
                    "ev_phase_currents_a": [round(a, 2) for a in c.ev.phase_currents_a],
                }
            )
        first = self.connectors[0].meter_endpoint if self.connectors else ""
        status: dict[str, Any] = {
            "connectors": connectors,
            "meter_modbus_tcp": first,
            "mains_v": self.mains_v,
            "power_fail": self.power_fail is not None and self.power_fail.failing,
        }
        if self.house is not None:
            status["house"] = self.house.status()
        return status

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One control request (see :mod:`hw_sim.control`)."""
        action = request["action"]
        connector_id = int(request.get("connector", 1))
        if action == "status":
            return self.status()
        if action == "tap":
            self.tap(str(request.get("uid", "")))
            return {}
        if action == "fault":
            self.inject(connector_id, str(request.get("fault", "")))
            return {}
        if action == "power-fail":  # the UPS HAT warns; `sim fault clear` brings power back
            if self.power_fail is None:
                raise LookupError("the simulation has no power-fail input")
            self.power_fail.set(True)
            return {}
        if action == "house":
            return self._house(request)
        ev = self.connector(connector_id).ev
        if action == "plug":
            ev.plug()
        elif action == "unplug":
            ev.unplug()
        elif action == "charge":
            ev.charge()
        elif action == "pause":
            ev.pause()
        else:
            raise ValueError(f"unknown action {action!r}")
        self._save_cars()
        return {}

    def _house(self, request: dict[str, Any]) -> dict[str, Any]:
        """``house``: set the load and PV (W) and the grid meter's fault; answer its state."""
        if self.house is None:
            raise ValueError("this simulation has no house: configure [site] and [grid_meter]")
        load_w = float(request.get("load_w", self.house.load_w))
        pv_w = float(request.get("pv_w", self.house.pv_w))
        self.house.set(load_w, pv_w)
        if "phase_load_w" in request:
            self.house.set_phase_load(request["phase_load_w"])
        if "meter_fault" in request:
            fault = request["meter_fault"]
            if fault not in ("offline", "garbage", "none"):
                raise ValueError(f"meter_fault must be offline, garbage or none, got {fault!r}")
            self.house.meter.set_fault(None if fault == "none" else fault)
        return self.house.status()


class _BusHandle:
    """A driver's handle on the shared simulated bus: closing it closes only the handle."""

    def __init__(self, bus: SimSMBus) -> None:
        self._bus: SimSMBus | None = bus

    def _open(self) -> SimSMBus:
        if self._bus is None:
            raise OSError("I2C bus handle closed")
        return self._bus

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        return self._open().read_i2c_block_data(i2c_addr, register, length)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Any) -> None:
        self._open().write_i2c_block_data(i2c_addr, register, data)

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        self._open().i2c_rdwr(*i2c_msgs)

    def close(self) -> None:
        self._bus = None
