"""``picharge check-hw``: the wiring self-test, step by step, with the likely fix for each failure.

Per connector: read the meter and print its values; read the CP with the PWM off (x1,
a steady +12 V from the EVSE side) and name the IEC 61851 state; click the contactor and
check that the feedback contact follows, only in state A (no EV connected), with the PWM
still off so no car could draw current even if one were plugged in at that moment (the
contactor also opens at once if the CP leaves A while it is closed), after saying what to
power for a 230 V coil and what the feedback must show; run the PWM at 6 A with nothing
plugged in and measure both swings against +12/-12 V; run the RCM self-test; read the
temperature sensor if one is configured; then ask for an EV tester (bounded, SKIP without
one), read PP into a cable rating and let the CP sensor judge the diode with the PWM on
(:mod:`controller.check_hw_pilot`). Then show every LED pattern (LOOK: a person judges) and
wait (bounded) for a card at the reader and print its UID. Each step prints PASS, FAIL
(with the reason and what to check in the wiring), SKIP (nothing configured to check) or
LOOK. Exit code 0 when nothing failed, 1 otherwise; a bad configuration exits with 2
before any pin moves. ``--calibrate`` measures the CP levels and writes the board's gain and
offset instead (:mod:`controller.check_hw_calibrate`).

It drives the same drivers as ``picharge run`` (built by
:func:`controller.hardware.build_hardware`), so stop the service first. ``--sim`` runs it
against the simulated charger of :mod:`controller.sim_root` (to try it without a Pi, and
for the tests, which inject each fault there); ``--sim-control`` then lets ``picharge sim``
plug in the tester and tap cards while check-hw waits for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from controller.check_hw_pilot import CpWatch, check_pwm, check_window, check_with_tester
from controller.check_hw_report import Outcome, Report, StepResult
from controller.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from controller.hardware import ConnectorHardware, Hardware, build_hardware, log_event
from drivers.base import (
    CardReader,
    CpState,
    DriverEvent,
    LedPattern,
    MeterReading,
    StatusIndicator,
)
from drivers.errors import ConfigurationError, DriverError, FaultKind, PermanentFault
from drivers.rcm import GpioRcm
from drivers.seams import HardwareSeams
from drivers.threads import on_named_loop

CP_TIMEOUT_S = 2.0  # a settled CP state takes ~0.1 s; an absent ADC is reported after 0.1 s
CLICK_HOLD_S = 0.5  # how long the contactor stays closed: long enough to hear it
CARD_TIMEOUT_S = 20.0
TESTER_TIMEOUT_S = 60.0  # plugging an EV tester in takes a person a moment
LED_HOLD_S = 3.0  # long enough to see two slow blinks


# --- meter ---------------------------------------------------------------------------------


def _phases(values: tuple[float | None, ...], unit: str, fmt: str) -> str:
    shown = [format(v, fmt) for v in values if v is not None]
    return f"{'/'.join(shown)} {unit}" if shown else f"- {unit}"


def describe_reading(r: MeterReading) -> str:
    parts = [
        _phases(r.voltage_v, "V", ".1f"),
        _phases(r.current_a, "A", ".2f"),
        f"{r.total_power_w:.0f} W" if r.total_power_w is not None else "- W",
        f"{r.energy_import_wh / 1000:.3f} kWh",
    ]
    if r.frequency_hz is not None:
        parts.append(f"{r.frequency_hz:.1f} Hz")
    return ", ".join(parts)


_METER_FIXES = (
    (
        "cannot open the port",
        "the serial port cannot be opened: check [meter] serial_port (ls -l /dev/serial* "
        "/dev/ttyUSB*), that the user is in the dialout group and the serial console is off",
    ),
    (
        "cannot connect",
        "no connection: check [meter] host and port (Modbus TCP), or that [meter] serial_port "
        "exists (RTU)",
    ),
    (
        "no reply",
        "nothing answered: check RS485 A/B (swap them if unsure), the meter's supply, "
        "[meter] unit_id, baudrate and parity against the meter's menu, and the transceiver "
        "on the UART (GPIO14 TX pin 8, GPIO15 RX pin 10)",
    ),
    (
        "garbled",
        "replies arrive garbled: [meter] baudrate, parity or stopbits differ from the meter's, "
        "or a long bus lacks its 120 ohm termination or a common ground",
    ),
    (
        "exception",
        "the meter answered but refused the request: check [meter] model (register map) and "
        "that unit_id is this meter's address",
    ),
    (
        "implausible",
        "the values make no sense: check [meter] model (another model's register map or word "
        "order) and that unit_id is this meter's address",
    ),
)


async def check_meter(c: ConnectorHardware) -> StepResult:
    try:
        reading = await c.meter.read()
    except DriverError as exc:
        detail = exc.detail if isinstance(exc, PermanentFault) else str(exc)
        fix = next(
            (fix for key, fix in _METER_FIXES if key in detail.lower()),
            "check the meter's wiring, supply and the [meter] settings",
        )
        return StepResult("meter", Outcome.FAIL, f"no reading: {detail}", fix)
    return StepResult("meter", Outcome.PASS, describe_reading(reading))


# --- control pilot --------------------------------------------------------------------------


_CP_FAILS = {
    CpState.E: (
        "0 V: state E (CP shorted to PE, or no CP supply)",
        "check that the CP wire is not shorted to PE and that the CP driver stage (op-amp) "
        "gets its +-12 V supply",
    ),
    CpState.F: (
        "-12 V although the PWM is off: state F",
        "the PWM output stays low: check dtoverlay=pwm in config.txt (GPIO18, pin 12), "
        "[[connector]] pwm_chip/pwm_channel, and set pwm_inverted = true if the driver stage "
        "inverts",
    ),
}
_CP_NAMES = {
    CpState.A: "state A (no EV connected)",
    CpState.B: "state B (an EV is connected)",
    CpState.C: "state C (an EV is connected and asks to charge)",
    CpState.D: "state D (an EV is connected and asks to charge with ventilation)",
}


async def check_cp(c: ConnectorHardware, cp: CpWatch) -> StepResult:
    with contextlib.suppress(TimeoutError):
        await cp.settle(CP_TIMEOUT_S)
    address = f"0x{c.pilot.adc.address:02x}"
    if cp.unreadable is not None or cp.latest is None:
        why = cp.unreadable or f"no settled reading within {CP_TIMEOUT_S:g} s"
        return StepResult(
            "cp",
            Outcome.FAIL,
            f"CP unreadable: {why}",
            f"the ADS1115 at {address} does not answer sensibly: check SDA (GPIO2, pin 3), SCL "
            "(GPIO3, pin 5), its 3.3 V and GND, the ADDR pin against adc_address, and that I2C "
            "is enabled (i2cdetect -y 1)",
        )
    reading = cp.latest
    volts = f"{reading.high_v:+.1f} V"
    if reading.state is None:
        return StepResult(
            "cp",
            Outcome.FAIL,
            f"{volts} with the PWM off fits no IEC 61851 state",
            "calibrate the board (picharge check-hw --calibrate), and check the CP "
            "front end's supply",
        )
    if reading.state in _CP_FAILS:
        what, fix = _CP_FAILS[reading.state]
        return StepResult("cp", Outcome.FAIL, f"{volts}: {what}", fix)
    return StepResult("cp", Outcome.PASS, f"{volts} with the PWM off: {_CP_NAMES[reading.state]}")


# --- contactor ------------------------------------------------------------------------------


def explain_contactor(c: ConnectorHardware, report: Report) -> None:
    """What to power before the click, and what the feedback contact must show."""
    cfg = c.contactor.config
    report.note(
        f"the coil is switched by GPIO{cfg.coil_pin} through the relay driver. A 230 V coil "
        "pulls in only with mains on its control circuit: switch on the breaker that feeds "
        "the coil now (nothing is plugged in, so the socket carries no current); a 12/24 V "
        "coil needs its DC supply"
    )
    if cfg.feedback_pin is not None:
        kind = "mirror (NC)" if cfg.feedback_type == "mirror" else "auxiliary (NO)"
        report.note(
            f"listen for one click in and one out; the {kind} feedback contact on "
            f"GPIO{cfg.feedback_pin} must say 'main contacts open' before, 'closed' while "
            "the coil is on and 'open' again after"
        )


async def check_contactor(
    c: ConnectorHardware, cp: CpWatch, hold_s: float, report: Report | None = None
) -> StepResult:
    contactor = c.contactor
    cfg = contactor.config
    reading = cp.latest
    if reading is None or reading.state is not CpState.A:
        if reading is not None and reading.state in (CpState.B, CpState.C, CpState.D):
            why = f"the CP says an EV is connected (state {reading.state})"
            fix = "unplug the car and run check-hw again"
        else:
            why = "the CP state is not A (see the cp step)"
            fix = "fix the CP first; the contactor is only switched with no EV connected"
        return StepResult("contactor", Outcome.FAIL, f"refused to switch: {why}", fix)
    pins = f"coil GPIO{cfg.coil_pin}" + (
        f", feedback GPIO{cfg.feedback_pin}" if cfg.feedback_pin is not None else ""
    )
    feedback_fix = (
        f"check the feedback contact's wiring to GPIO{cfg.feedback_pin} (12/24 V wetting "
        "through an opto-coupler) and feedback_type (mirror = NC contact, auxiliary = NO) and "
        "feedback_active_low"
    )
    if contactor.main_contacts_closed:
        return StepResult(
            "contactor",
            Outcome.FAIL,
            f"the feedback says the main contacts are closed with the coil off ({pins})",
            "a welded contactor (do not charge: have it replaced), or " + feedback_fix,
        )
    if report is not None:
        explain_contactor(c, report)
    interrupted: list[CpState | None] = []
    left_a = asyncio.Event()

    def cp_left_a() -> None:
        contactor.open()
        interrupted.append(cp.latest.state if cp.latest else None)
        left_a.set()

    cp.guard = cp_left_a
    c.pilot.sensor.set_vigilant(True)  # sample fast while the contactor may be closed
    try:
        try:
            await contactor.close()
        except PermanentFault as fault:
            fix = (
                "if you heard no click: a 230 V coil needs mains on its control circuit "
                "(switch on its breaker), a 12/24 V coil its DC supply; then check the coil "
                f"driver (GPIO{cfg.coil_pin} -> transistor or relay board -> coil); if it "
                "clicked: " + feedback_fix
            )
            if fault.kind is FaultKind.CONTACTOR_WELDED:
                fix = "a welded contactor (do not charge: have it replaced), or " + feedback_fix
            return StepResult("contactor", Outcome.FAIL, f"{fault.detail} ({pins})", fix)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(left_a.wait(), hold_s)
        contactor.open()
        try:
            await contactor.verify_open()
        except PermanentFault as fault:
            return StepResult(
                "contactor",
                Outcome.FAIL,
                f"{fault.detail} ({pins})",
                "WELDED or stuck main contacts: do not charge, have the contactor replaced; "
                "or " + feedback_fix,
            )
    finally:
        cp.guard = None
        contactor.open()
        c.pilot.sensor.set_vigilant(False)
    if interrupted:
        return StepResult(
            "contactor",
            Outcome.FAIL,
            f"the CP left state A (now {interrupted[0]}) while the contactor was closed; "
            "opened at once",
            "leave the car unplugged while check-hw runs",
        )
    if cfg.feedback_pin is None:
        return StepResult(
            "contactor",
            Outcome.SKIP,
            f"switched the coil on and off ({pins}; listen for the click); no feedback contact "
            "is configured, so the contacts cannot be checked",
        )
    return StepResult(
        "contactor",
        Outcome.PASS,
        f"closed and opened again; the feedback contact followed both ways ({pins})",
    )


# --- RCM, temperature -----------------------------------------------------------------------


async def check_rcm(c: ConnectorHardware) -> StepResult:
    rcm = c.rcm
    pins = ""
    if isinstance(rcm, GpioRcm):
        pins = f"fault GPIO{rcm.config.fault_pin}, TEST GPIO{rcm.config.test_pin}"
    if rcm.tripped:
        return StepResult(
            "rcm",
            Outcome.FAIL,
            f"the fault output is active before any test ({pins})",
            "a residual current is flowing, or the fault input's level is inverted "
            "(rcm_fault_active_high); check the RCM's supply and its fault output -> opto -> GPIO",
        )
    try:
        await rcm.self_test()
    except PermanentFault as fault:
        return StepResult(
            "rcm",
            Outcome.FAIL,
            f"self-test failed: {fault.detail} ({pins})",
            "check TEST: GPIO -> transistor -> the module's TEST input (RCM14: 12 V), the "
            "module's supply, and its fault output -> opto -> GPIO (rcm_fault_active_high)",
        )
    return StepResult(
        "rcm", Outcome.PASS, f"TEST made the fault output rise and clear again ({pins})"
    )


async def check_temperature(c: ConnectorHardware) -> StepResult:
    assert c.thermometer is not None
    try:
        celsius = await c.thermometer.read_c()
    except DriverError as exc:
        return StepResult(
            "temperature",
            Outcome.FAIL,
            f"unreadable: {exc}",
            "check the DS18B20's data line (GPIO4, pin 7) with its 4.7 kOhm pull-up to 3.3 V, "
            "dtoverlay=w1-gpio, and temperature_sensor (ls /sys/bus/w1/devices)",
        )
    return StepResult("temperature", Outcome.PASS, f"{celsius:.1f} °C")


# --- status LED -----------------------------------------------------------------------------

#: Each pattern the controller shows, in the order a session shows them, and what it means.
LED_PATTERNS = (
    (LedPattern.IDLE, "steady on: available, nothing plugged in"),
    (LedPattern.WAITING, "slow blink (1 s): plugged in, waiting for a card or the car"),
    (LedPattern.CHARGING, "fast blink (0.25 s): charging"),
    (LedPattern.FAULT, "double flash: a fault, see the journal"),
)


async def check_led(led: StatusIndicator | None, report: Report, hold_s: float) -> StepResult:
    """Show every pattern for ``hold_s``; only a person can see whether the LED followed."""
    if led is None:
        return StepResult("led", Outcome.SKIP, "no status LED configured ([hardware] led_type)")
    try:
        for pattern, meaning in LED_PATTERNS:
            report.note(f"LED now: {meaning}")
            led.show(pattern)
            await asyncio.sleep(hold_s)
    finally:
        led.show(LedPattern.OFF)
    return StepResult(
        "led",
        Outcome.LOOK,
        f"showed {len(LED_PATTERNS)} patterns, {hold_s:g} s each: did the LED follow them?",
        "check led_pin (default GPIO24, pin 18), the LED's series resistor and its polarity "
        "(led_active_high)",
    )


# --- card -----------------------------------------------------------------------------------

_READER_FIXES = {
    "rdm6300": "the RDM6300 reads only 125 kHz (EM4100) cards: check its TX -> Pi RX (GPIO15, "
    "pin 10; through a divider if it sends 5 V), its 5 V supply and antenna, "
    "[rfid] serial_port, enable_uart=1 and that the serial console is off",
    "pn532_uart": "check TX/RX crossed (PN532 TX -> GPIO15 pin 10, RX -> GPIO14 pin 8), the "
    "board's interface switches on HSU, [rfid] serial_port and baudrate, and that the card is "
    "a 13.56 MHz (MIFARE/NFC) one",
    "pn532_i2c": "check SDA/SCL (pins 3 and 5), the board's interface switches on I2C, and "
    "that i2cdetect -y 1 shows 0x24; the card must be a 13.56 MHz (MIFARE/NFC) one",
}


async def check_card(
    reader: CardReader | None, rfid: Mapping[str, Any], timeout_s: float, report: Report
) -> StepResult:
    if reader is None:
        return StepResult("card", Outcome.SKIP, "no reader configured ([rfid] type)")
    fix = _READER_FIXES.get(str(rfid.get("type", "")), "check the reader's wiring and [rfid]")
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[StepResult] = loop.create_future()

    def settle(result: StepResult) -> None:
        if not outcome.done():
            outcome.set_result(result)

    def on_card(uid: str) -> None:
        settle(StepResult("card", Outcome.PASS, f"UID {uid}"))

    def on_event(event: DriverEvent) -> None:
        if event.fault is FaultKind.READER_FAILURE:
            settle(StepResult("card", Outcome.FAIL, f"reader failure: {event.detail}", fix))

    report.note(f"hold a card to the reader (waiting up to {timeout_s:g} s) ...")
    task = asyncio.create_task(reader.run(on_card, on_event), name="check-card")
    try:
        waiters: set[asyncio.Future[Any]] = {task, outcome}
        done, _ = await asyncio.wait(
            waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if outcome.done():
            return outcome.result()
        if task in done:
            error = task.exception()
            return StepResult("card", Outcome.FAIL, f"the reader stopped: {error}", fix)
        return StepResult("card", Outcome.FAIL, f"no card within {timeout_s:g} s", fix)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the whole test -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waits:
    """How long check-hw waits for a person (s): the tests shorten every one of them."""

    card_s: float = CARD_TIMEOUT_S
    click_hold_s: float = CLICK_HOLD_S
    tester_s: float = TESTER_TIMEOUT_S  # 0: skip the EV tester steps without asking
    led_hold_s: float = LED_HOLD_S


async def check_hardware(
    hardware: Hardware, config: Config, out: TextIO, waits: Waits = Waits()
) -> list[StepResult]:
    """Run every step on ``hardware`` (built from ``config``), printing as it goes."""
    report = Report(out)
    for c in hardware.connectors:
        report.heading(f"connector {c.id}")
        report.add(await check_meter(c))
        async with CpWatch(c.pilot) as cp:
            report.add(await check_cp(c, cp))
            if c.pilot.sensor.window is not None:
                report.add(await check_window(c.pilot.sensor.window, cp, "cp-window"))
            report.add(await check_contactor(c, cp, waits.click_hold_s, report))
            state_a = cp.latest is not None and cp.latest.state is CpState.A
        if state_a:
            report.add(await check_pwm(c))
        else:
            report.add(StepResult("pwm", Outcome.SKIP, "needs state A (see the cp step)"))
        report.add(await check_rcm(c))
        if c.thermometer is not None:
            report.add(await check_temperature(c))
        if waits.tester_s > 0:
            await check_with_tester(c, report, waits.tester_s)
    report.heading("status LED")
    report.add(await check_led(hardware.led, report, waits.led_hold_s))
    report.heading("reader")
    report.add(await check_card(hardware.reader, config.rfid, waits.card_s, report))
    failed = report.failed
    total = len(report.results)
    if failed:
        names = ", ".join(r.step for r in failed)
        report.heading(f"result: {len(failed)} of {total} steps FAILED ({names})")
    else:
        report.heading(f"result: no step failed ({total} steps)")
    return report.results


def with_sim_reader_type(config: Config) -> Config:
    """The configuration as the simulated charger runs it: its reader is a PN532 on a UART
    unless ``[rfid] type`` names another (check-hw's hints depend on the reader type)."""
    return dataclasses.replace(config, rfid={"type": "pn532_uart", **config.rfid})


class HardwareUnavailable(Exception):
    """The drivers could not be built (pins held by the service, no I2C bus, ...)."""


@contextlib.asynccontextmanager
async def open_hardware(
    config: Config, out: TextIO, *, sim: bool = False, sim_control: str | None = None
) -> AsyncIterator[tuple[Hardware, Config]]:
    """The charger's drivers (or the simulated charger's) for check-hw, released on exit.

    On ``sim`` with ``sim_control`` (HOST:PORT), the simulation also listens for ``picharge
    sim`` commands there, so a person (or a test) can plug in a tester and tap cards while
    check-hw waits for them. Raises :class:`HardwareUnavailable`, or ConfigError for a bad
    driver key.
    """
    with tempfile.TemporaryDirectory(prefix="picharge-check-hw-") as tmp:
        simulation: Any = None
        try:
            if sim:
                from controller.sim_root import start_simulation

                simulation, hardware, config = await start_simulation(
                    config,
                    Path(tmp),
                    connectors=len(config.connectors),
                    speed=1.0,
                    on_event=log_event,
                )
            else:
                hardware = build_hardware(config, HardwareSeams(), log_event)
        except ConfigurationError as exc:
            raise ConfigError(exc.key, exc.problem) from exc
        except Exception as exc:  # gpiozero's BadPinFactory/GPIOPinInUse, lgpio.error, OSError
            raise HardwareUnavailable(repr(exc)) from exc
        control: Any = None
        try:
            if sim:
                config = with_sim_reader_type(config)
                if sim_control is not None:
                    control = await _start_control(simulation, sim_control, out)
            yield hardware, config
        finally:
            if control is not None:
                await control.stop()
            await hardware.close()
            if simulation is not None:
                await simulation.stop()


async def _start_control(simulation: Any, address: str, out: TextIO) -> Any:
    from controller.sim_client import parse_host_port
    from controller.sim_root import ControlServer

    control = ControlServer(simulation.handle)
    host, port = parse_host_port(address)
    try:
        host, port = await control.start(host, port)
    except OSError as exc:
        print(f"simulation control not started on {address}: {exc}", file=out, flush=True)
        return None
    print(f"simulation control on {host}:{port} (picharge sim plug|unplug|tap UID)", file=out)
    return control


def _unavailable(exc: HardwareUnavailable, out: TextIO) -> int:
    print(
        f"picharge check-hw: cannot set up the hardware: {exc}\n"
        "Is the picharge service running? Stop it first: sudo systemctl stop picharge",
        file=out,
    )
    return 1


async def run_check_hw(
    config: Config,
    out: TextIO,
    *,
    sim: bool = False,
    sim_control: str | None = None,
    waits: Waits = Waits(),
) -> int:
    """Build the hardware (or the simulated charger), check it, release it; the exit code."""
    try:
        async with open_hardware(config, out, sim=sim, sim_control=sim_control) as (
            hardware,
            config,
        ):
            results = await check_hardware(hardware, config, out, waits)
    except HardwareUnavailable as exc:
        return _unavailable(exc, out)
    return 1 if any(r.outcome is Outcome.FAIL for r in results) else 0


def main(args: argparse.Namespace) -> int:
    """``picharge check-hw``; ConfigError propagates to the CLI (exit code 2)."""
    path = args.config if args.config is not None else (None if args.sim else DEFAULT_CONFIG_PATH)
    config = load_config(path)
    sim = args.sim or config.backend == "sim"
    control = args.sim_control if sim else None
    if args.calibrate:
        from controller.check_hw_calibrate import run_calibration

        if path is None:
            raise ConfigError("--config", "--calibrate writes the calibration into a file: name it")
        coroutine = run_calibration(config, path, sys.stdout, sim=sim)
    else:
        print(
            f"picharge check-hw: {len(config.connectors)} connector(s)"
            + (" on simulated hardware" if sim else "")
            + "; the contactor is only switched with no EV connected",
            flush=True,
        )
        waits = Waits(
            card_s=args.card_timeout, tester_s=args.tester_timeout, led_hold_s=args.led_hold
        )
        coroutine = run_check_hw(config, sys.stdout, sim=sim, sim_control=control, waits=waits)
    return asyncio.run(on_named_loop(coroutine))
