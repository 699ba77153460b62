"""`picharge check-hw` on the simulated charger: it passes on good wiring and names each fault.

The drivers are the real ones, built by ``build_hardware`` against ``hw_sim`` through
``start_simulation``; each failure is injected into the simulated hardware (a welded
contactor, a silent meter, a tripped or untestable RCM, a shorted CP, a missing ADC, a car
plugged in, a dead reader), and the card is tapped on the simulated reader while check-hw
waits for it.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from controller.check_hw import (
    CpWatch,
    Outcome,
    StepResult,
    Waits,
    check_contactor,
    check_hardware,
    run_check_hw,
    with_sim_reader_type,
)
from controller.check_hw_calibrate import calibrate
from controller.config import Config, parse_config
from controller.config_edit import ConfigEditError, set_array_table_keys
from controller.hardware import Hardware
from controller.sim_root import SimCharger
from drivers.pilot_levels import DEFAULT_CP_GAIN, DEFAULT_CP_OFFSET_V, FrontEndCalibration
from tests.support.sim_hardware import simulated_hardware
from tests.support.wait import until

# A silent meter must fail fast in tests: one retry of 0.2 s requests.
FAST_METER = {"timeout_s": 0.2, "retries": 1, "backoff_s": 0.05}
CLICK_HOLD_S = 0.05


@asynccontextmanager
async def simulated(
    state_dir: Path, doc: Mapping[str, Any] | None = None
) -> AsyncIterator[tuple[SimCharger, Hardware, Config]]:
    config = parse_config({"meter": FAST_METER, **(doc or {})})
    async with simulated_hardware(config, state_dir, connectors=len(config.connectors)) as (
        sim,
        hardware,
        config,
    ):
        yield sim, hardware, with_sim_reader_type(config)


async def _tap_when_asked(sim: SimCharger, out: io.StringIO, uid: str) -> None:
    """A person reading the screen: taps the card once check-hw asks for it."""
    await until(lambda: "hold a card" in out.getvalue(), what="check-hw to ask for a card")
    sim.tap(uid)


async def run_checks(
    sim: SimCharger,
    hardware: Hardware,
    config: Config,
    *,
    tap: str | None = "04A1B2C3",
    card_timeout_s: float = 3.0,
    tester_s: float = 0.0,
) -> tuple[dict[str, StepResult], str]:
    out = io.StringIO()
    tapper = asyncio.create_task(_tap_when_asked(sim, out, tap)) if tap else None
    waits = Waits(
        card_s=card_timeout_s, click_hold_s=CLICK_HOLD_S, tester_s=tester_s, led_hold_s=0.01
    )
    try:
        results = await check_hardware(hardware, config, out, waits)
    finally:
        if tapper is not None:
            tapper.cancel()
    return {r.step: r for r in results}, out.getvalue()


def outcomes(results: dict[str, StepResult]) -> dict[str, Outcome]:
    return {step: r.outcome for step, r in results.items()}


ALL_PASS = {
    "meter": Outcome.PASS,
    "cp": Outcome.PASS,
    "contactor": Outcome.PASS,
    "pwm": Outcome.PASS,
    "rcm": Outcome.PASS,
    "temperature": Outcome.PASS,
    "led": Outcome.LOOK,  # only a person can see the LED
    "card": Outcome.PASS,
}


async def test_good_wiring_passes_every_step_and_prints_the_values(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.connector(1).meter.add_energy_wh(1234.0)
        results, text = await run_checks(sim, hardware, config)
    assert outcomes(results) == ALL_PASS
    assert "1.234 kWh" in results["meter"].detail
    assert results["cp"].detail == "+12.0 V with the PWM off: state A (no EV connected)"
    assert results["card"].detail == "UID 04A1B2C3"
    assert "result: no step failed (8 steps)" in text
    assert "FAIL" not in text


async def test_the_pwm_step_measures_both_swings_against_the_reference_levels(
    tmp_path: Path,
) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        results, _ = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.05)
        assert hardware.connector(1).pilot.generator.duty_pct == 0.0  # left in state F
    assert results["pwm"].outcome is Outcome.PASS
    assert results["pwm"].detail == (
        "10 % PWM: positive swing +12.0 V, negative swing -12.0 V (reference +12.0 / -12.0 V)"
    )


async def test_a_negative_swing_off_minus_12_v_fails_the_pwm_step(tmp_path: Path) -> None:
    """A board whose AIN1 divider is not the reference's (a wrong resistor): -14 V."""
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.calibration = FrontEndCalibration(low_offset_v=-13.0)
        results, _ = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.05)
    pwm = results["pwm"]
    assert pwm.outcome is Outcome.FAIL
    assert "negative swing -14.0 V" in pwm.detail
    assert "-12 V output of the DC/DC" in pwm.fix and "--calibrate" in pwm.fix


async def test_a_pwm_that_does_not_run_fails_naming_the_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No dtoverlay=pwm (or the wrong channel): the pin, and so the CP, stays at +12 V. The
    negative detector then rests near +5 V, which only a PWM that never ran gives."""
    async with simulated(tmp_path) as (sim, hardware, config):
        monkeypatch.setattr(sim.pwm, "output_pct", lambda channel: 100.0)
        results, _ = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.05)
    pwm = results["pwm"]
    assert results["cp"].outcome is Outcome.PASS  # with the PWM off nothing shows it
    assert pwm.outcome is Outcome.FAIL
    assert "positive swing +12.0 V, negative swing +5.1 V" in pwm.detail
    assert pwm.fix.startswith("no negative swing: the PWM does not run")
    assert "pwm_channel = 2" in pwm.fix


async def _plug_tester_when_asked(sim: SimCharger, out: io.StringIO) -> None:
    """A person with an EV tester: plugs it in once check-hw asks for it."""
    await until(lambda: "plug in the EV tester" in out.getvalue(), what="the tester prompt")
    sim.connector(1).ev.plug()


async def run_with_tester(
    sim: SimCharger, hardware: Hardware, config: Config, *, tester_s: float = 5.0
) -> tuple[dict[str, StepResult], str, list[bool]]:
    coil: list[bool] = []
    sim.connector(1).contactor.add_coil_listener(coil.append)
    out = io.StringIO()
    person = asyncio.create_task(_plug_tester_when_asked(sim, out))
    waits = Waits(card_s=0.05, click_hold_s=CLICK_HOLD_S, tester_s=tester_s, led_hold_s=0.0)
    try:
        results = await check_hardware(hardware, config, out, waits)
    finally:
        person.cancel()
    return {r.step: r for r in results}, out.getvalue(), coil


async def test_an_ev_tester_gives_the_cable_rating_and_its_diode_passes(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        results, text, coil = await run_with_tester(sim, hardware, config)
    assert results["pp"].outcome is Outcome.PASS
    assert results["pp"].detail == "PP-PE 220 Ohm: a 32 A cable"
    assert results["diode"].outcome is Outcome.PASS
    assert results["diode"].detail.startswith(
        "the EV's diode blocks: positive swing +6.0 V (state C)"
    )
    assert "negative swing -12.0 V" in results["diode"].detail
    assert coil.count(True) == 1  # the contactor step's click only, before the tester came
    assert text.index("contactor   PASS") < text.index("plug in the EV tester")
    assert "unplug the EV tester" in text


async def test_a_tester_without_its_diode_fails_the_diode_step(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "diode")
        results, _, coil = await run_with_tester(sim, hardware, config)
    diode = results["diode"]
    assert diode.outcome is Outcome.FAIL
    assert diode.detail.startswith("NO DIODE: the negative swing is not held at -12 V")
    assert "never gets mains" in diode.fix
    assert coil.count(True) == 1


async def test_without_a_tester_pp_and_the_diode_are_skipped_not_passed(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (_sim, hardware, config):
        out = io.StringIO()
        waits = Waits(card_s=0.05, click_hold_s=CLICK_HOLD_S, tester_s=0.3, led_hold_s=0.0)
        results = {r.step: r for r in await check_hardware(hardware, config, out, waits)}
    for step in ("pp", "diode"):
        assert results[step].outcome is Outcome.SKIP
        assert results[step].detail == "no EV tester plugged in within 0.3 s"


async def test_the_led_shows_every_pattern_on_its_pin_and_asks_a_person(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        pin = sim.factory.pin(24)
        before = len(pin.states)
        out = io.StringIO()
        waits = Waits(card_s=0.05, click_hold_s=CLICK_HOLD_S, tester_s=0.0, led_hold_s=0.2)
        results = {r.step: r for r in await check_hardware(hardware, config, out, waits)}
        shown = [s.state for s in pin.states[before:]]
        assert pin.state is False  # off again
    assert results["led"].outcome is Outcome.LOOK
    assert "did the LED follow them?" in results["led"].detail
    assert True in shown and False in shown  # the GPIO was driven (the blinks' timing is
    # gpiozero's own, tested in tests/test_led.py)
    for meaning in ("steady on", "slow blink", "fast blink", "double flash"):
        assert f"LED now: {meaning}" in out.getvalue()


async def test_the_contactor_step_says_what_to_power_for_a_230_v_coil(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        _, text = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.05)
    explained = text[: text.index("contactor   PASS")]
    assert "A 230 V coil pulls in only with mains on its control circuit" in explained
    assert "mirror (NC) feedback contact on GPIO27 must say 'main contacts open'" in explained


async def test_a_welded_contactor_fails_and_says_do_not_charge(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "weld")
        results, text = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.1)
        assert hardware.connector(1).contactor.welded
    contactor = results["contactor"]
    assert contactor.outcome is Outcome.FAIL
    assert "still closed" in contactor.detail
    assert "WELDED" in contactor.fix and "do not charge" in contactor.fix
    assert "feedback GPIO27" in contactor.detail
    assert "2 of 8 steps FAILED (contactor, card)" in text


async def test_a_silent_meter_fails_with_the_rs485_hints(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "meter")
        results, _ = await run_checks(sim, hardware, config)
    meter = results["meter"]
    assert meter.outcome is Outcome.FAIL
    assert "no reply" in meter.detail
    assert "RS485 A/B" in meter.fix and "unit_id" in meter.fix
    assert outcomes(results) == {**ALL_PASS, "meter": Outcome.FAIL}


async def test_a_meter_talking_garbage_points_at_the_line_settings(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "meter-garbage")
        results, _ = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.1)
    assert results["meter"].outcome is Outcome.FAIL
    assert "implausible value" in results["meter"].detail  # the simulated garbage is NaN
    assert "[meter] model" in results["meter"].fix


async def test_a_tripped_rcm_fails_before_any_test_pulse(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "rcd")
        results, _ = await run_checks(sim, hardware, config)
        test_pin_used = sim.connector(1).rcm.test_pin.states[1:]
    rcm = results["rcm"]
    assert rcm.outcome is Outcome.FAIL
    assert rcm.detail == "the fault output is active before any test (fault GPIO22, TEST GPIO23)"
    assert "residual current" in rcm.fix
    assert not [s for s in test_pin_used if s.state]  # TEST was never raised


async def test_a_broken_rcm_self_test_fails_with_the_test_wiring_hint(tmp_path: Path) -> None:
    doc = {"connector": [{"rcm_selftest_timeout_s": 0.2}]}
    async with simulated(tmp_path, doc) as (sim, hardware, config):
        sim.connector(1).rcm.set_selftest_broken(True)
        results, _ = await run_checks(sim, hardware, config)
    rcm = results["rcm"]
    assert rcm.outcome is Outcome.FAIL
    assert rcm.detail.startswith(
        "self-test failed: rcm: fault output did not go active within 200 ms"
    )
    assert "TEST input" in rcm.fix
    assert outcomes(results) == {**ALL_PASS, "rcm": Outcome.FAIL}


async def test_a_car_plugged_in_means_the_contactor_is_not_touched(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        await sim.handle({"action": "plug"})
        energized: list[bool] = []
        sim.connector(1).contactor.add_coil_listener(energized.append)
        results, _ = await run_checks(sim, hardware, config)
    assert results["cp"].outcome is Outcome.PASS
    assert results["cp"].detail == "+9.0 V with the PWM off: state B (an EV is connected)"
    contactor = results["contactor"]
    assert contactor.outcome is Outcome.FAIL
    assert contactor.detail == ("refused to switch: the CP says an EV is connected (state B)")
    assert contactor.fix == "unplug the car and run check-hw again"
    assert True not in energized
    assert results["pwm"].outcome is Outcome.SKIP  # the PWM step needs nothing plugged in


async def test_a_shorted_cp_is_named_state_e_and_the_contactor_stays_off(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.inject(1, "cp")
        energized: list[bool] = []
        sim.connector(1).contactor.add_coil_listener(energized.append)
        results, _ = await run_checks(sim, hardware, config)
    assert results["cp"].outcome is Outcome.FAIL
    assert "state E" in results["cp"].detail
    assert "shorted to PE" in results["cp"].fix
    assert results["contactor"].outcome is Outcome.FAIL
    assert "refused" in results["contactor"].detail
    assert True not in energized


async def test_a_missing_cp_adc_is_reported_with_the_i2c_wiring(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        sim.bus.detach(0x48)
        results, _ = await run_checks(sim, hardware, config, tester_s=5.0)
    cp = results["cp"]
    assert cp.outcome is Outcome.FAIL
    assert cp.detail.startswith("CP unreadable: ")
    assert "ADS1115 at 0x48" in cp.fix and "SDA (GPIO2, pin 3)" in cp.fix
    assert results["contactor"].outcome is Outcome.FAIL
    for step in ("pp", "diode"):  # not waited out: the tester could not be seen anyway
        assert results[step].outcome is Outcome.SKIP
        assert results[step].detail.startswith("the CP is unreadable (")


@pytest.mark.timing  # the coil drop is bounded in wall-clock time: run alone
async def test_the_contactor_opens_at_once_when_a_car_arrives_during_the_click(
    tmp_path: Path,
) -> None:
    async with simulated(tmp_path) as (sim, hardware, _config):
        loop = asyncio.get_running_loop()
        coil: list[tuple[bool, float]] = []
        plugged_at: list[float] = []

        def on_coil(energized: bool) -> None:  # the driver's thread
            coil.append((energized, loop.time()))
            if energized:
                loop.call_soon_threadsafe(plug)

        def plug() -> None:
            plugged_at.append(loop.time())
            sim.connector(1).ev.plug()

        sim.connector(1).contactor.add_coil_listener(on_coil)
        c = hardware.connector(1)
        async with CpWatch(c.pilot) as cp:
            await cp.settle(2.0)
            started = loop.time()
            result = await check_contactor(c, cp, hold_s=2.0)
            elapsed = loop.time() - started
    assert result.outcome is Outcome.FAIL
    assert "left state A (now B)" in result.detail
    dropped_at = next(t for energized, t in coil if not energized)
    assert dropped_at - plugged_at[0] < 0.2  # far inside the 2 s hold
    assert elapsed < 1.5  # and the step did not sit out the hold either


async def test_no_card_within_the_timeout_fails_with_the_reader_hints(tmp_path: Path) -> None:
    async with simulated(tmp_path) as (sim, hardware, config):
        results, text = await run_checks(sim, hardware, config, tap=None, card_timeout_s=0.3)
    card = results["card"]
    assert card.outcome is Outcome.FAIL
    assert card.detail == "no card within 0.3 s"
    assert "HSU" in card.fix  # the simulated reader is a PN532 on the UART
    assert "hold a card to the reader (waiting up to 0.3 s)" in text


async def test_a_dead_reader_fails_without_waiting_out_the_timeout(tmp_path: Path) -> None:
    rfid = {"type": "pn532_i2c", "response_timeout_s": 0.05, "failure_threshold": 1}
    async with simulated(tmp_path, {"rfid": rfid}) as (sim, hardware, config):
        sim.bus.detach(0x24)
        loop = asyncio.get_running_loop()
        started = loop.time()
        results, _ = await run_checks(sim, hardware, config, tap=None, card_timeout_s=10.0)
        assert loop.time() - started < 5.0
    card = results["card"]
    assert card.outcome is Outcome.FAIL
    assert card.detail.startswith("reader failure: ")
    assert "0x24" in card.fix


async def test_a_contactor_without_feedback_is_clicked_but_not_claimed_checked(
    tmp_path: Path,
) -> None:
    doc = {"connector": [{"feedback_type": "none"}]}
    async with simulated(tmp_path, doc) as (sim, hardware, config):
        results, text = await run_checks(sim, hardware, config)
    assert results["contactor"].outcome is Outcome.SKIP
    assert "no feedback contact" in results["contactor"].detail
    assert "result: no step failed" in text


async def test_run_check_hw_exit_codes_on_the_simulation(tmp_path: Path) -> None:
    out = io.StringIO()
    config = parse_config({"meter": FAST_METER})
    waits = Waits(card_s=0.1, click_hold_s=0.01, tester_s=0.0, led_hold_s=0.0)
    code = await run_check_hw(config, out, sim=True, waits=waits)
    assert code == 1  # nobody tapped a card
    assert "card        FAIL  no card within 0.1 s" in out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def picharge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_check_hw_command_line_runs_on_the_simulation(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[meter]\ntimeout_s = 0.2\nretries = 0\n")
    result = picharge(
        "check-hw",
        "--sim",
        "--config",
        str(config),
        "--card-timeout",
        "0.2",
        *("--tester-timeout", "0", "--led-hold", "0", "--sim-control", f"127.0.0.1:{free_port()}"),
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("picharge check-hw: 1 connector(s) on simulated hardware")
    for step in ("meter", "cp", "contactor", "pwm", "rcm", "temperature"):
        assert any(line.split()[:2] == [step, "PASS"] for line in lines), result.stdout
    assert "result: 1 of 8 steps FAILED (card)" in result.stdout


def test_every_step_passes_on_the_simulation_with_a_person_at_the_sim_control(
    tmp_path: Path,
) -> None:
    """The real CLI end to end: a person plugs the tester, unplugs it and taps a card with
    `picharge sim` in a second terminal, each when check-hw asks."""
    config = tmp_path / "config.toml"
    config.write_text("[meter]\ntimeout_s = 0.2\nretries = 0\n")
    control = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "controller.cli", "check-hw", "--sim", "--config"]
    args = ("--tester-timeout", "20", "--card-timeout", "20", "--led-hold", "0")
    errors = (tmp_path / "stderr").open("w")
    check = subprocess.Popen(
        [*command, str(config), *args, "--sim-control", control],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    person = {"plug in the EV tester": ["plug"], "unplug the EV tester": ["unplug"]}
    person["hold a card"] = ["tap", "04A1B2C3"]
    lines: list[str] = []
    try:
        assert check.stdout is not None
        for line in check.stdout:
            lines.append(line)
            for prompt, action in person.items():
                if prompt in line:
                    assert picharge("sim", *action, "--control", control).returncode == 0
        code = check.wait(timeout=30)
    finally:
        check.kill()
        check.wait()
        errors.close()
    text = "".join(lines)
    assert code == 0, text + (tmp_path / "stderr").read_text()
    for step in ("meter", "cp", "contactor", "pwm", "rcm", "temperature", "pp", "diode", "card"):
        assert any(line.split()[:2] == [step, "PASS"] for line in lines), text
    assert "result: no step failed (10 steps)" in text


@pytest.mark.parametrize(
    ("content", "sim", "message"),
    [
        ("[[connector]]\nmax_current_a = 100\n", False, "connector.1.max_current_a"),
        (None, False, "--config: cannot read"),
        # Driver keys are validated as the drivers are built: on the simulation here.
        ("[[connector]]\nfeedback_pin = 'GPIO27'\n", True, "connector.1.feedback_pin"),
        ("[meter]\nbaudrate = 'fast'\n", True, "meter.baudrate"),
        ("[[connector]]\nadc_address = 0x50\n", True, "connector.1.adc_address"),
    ],
)
def test_a_bad_configuration_exits_2_naming_the_key(
    tmp_path: Path, content: str | None, sim: bool, message: str
) -> None:
    config = tmp_path / "config.toml"
    if content is not None:
        config.write_text(content)
    result = picharge("check-hw", "--config", str(config), *(["--sim"] if sim else []))
    assert result.returncode == 2
    assert message in result.stderr
    assert "PASS" not in result.stdout


def test_a_machine_without_a_gpio_library_is_named_not_mistaken_for_a_busy_service(
    tmp_path: Path,
) -> None:
    # A pin factory that cannot load is what a Pi without lgpio (or any other machine) gives;
    # it also guarantees that this test never touches real pins, whatever machine runs it.
    # Restarting or stopping the service cannot help: a configuration error (exit 2) naming
    # hardware.backend and what is missing, not the hint for GPIO lines held by the service.
    config = tmp_path / "config.toml"
    config.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "check-hw", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "no-such-factory"},
    )
    assert result.returncode == 2, result.stderr
    assert "hardware.backend" in result.stderr and "no usable GPIO library" in result.stderr
    assert "Traceback" not in result.stderr
    assert "systemctl stop" not in result.stdout
    assert "PASS" not in result.stdout


# --- check-hw --calibrate -----------------------------------------------------------------

HAND_WRITTEN = """# my wallbox
[meter]
timeout_s = 0.2   # fast
retries = 0

[[connector]]
# the garage socket
max_current_a = 16
phases = 1
cp_adc_gain = 9.5  # guessed

[rfid]
type = "pn532_uart"
"""


def _connector_keys(path: Path) -> dict[str, Any]:
    return dict(tomllib.loads(path.read_text())["connector"][0])


def test_calibrate_writes_gain_and_offset_keeping_the_rest_of_the_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(HAND_WRITTEN)
    result = picharge("check-hw", "--sim", "--config", str(config), "--calibrate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"wrote cp_adc_gain and cp_adc_offset_v into {config}" in result.stdout
    text = config.read_text()
    for line in ("# my wallbox", "timeout_s = 0.2   # fast", "# the garage socket", "[rfid]"):
        assert line in text
    keys = _connector_keys(config)
    assert keys["cp_adc_gain"] == pytest.approx(DEFAULT_CP_GAIN, abs=0.01)
    assert keys["cp_adc_offset_v"] == pytest.approx(DEFAULT_CP_OFFSET_V, abs=0.02)
    assert (keys["max_current_a"], keys["phases"]) == (16, 1)


async def test_calibrate_measures_the_board_not_the_configuration(tmp_path: Path) -> None:
    """A board whose dividers differ from the reference (9.4 / -15.4): that is what lands."""
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    board = FrontEndCalibration(
        high_gain=9.4, high_offset_v=-15.4, low_gain=9.4, low_offset_v=-15.4
    )
    async with simulated(tmp_path / "sim") as (sim, hardware, config):
        sim.calibration = board
        assert await calibrate(hardware, config, path, io.StringIO()) == 0
    keys = _connector_keys(path)
    assert keys["cp_adc_gain"] == pytest.approx(9.4, abs=0.01)
    assert keys["cp_adc_offset_v"] == pytest.approx(-15.4, abs=0.02)


@pytest.mark.parametrize("fault", ["plugged", "cp"])
async def test_calibrate_refuses_implausible_levels_and_writes_nothing(
    tmp_path: Path, fault: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    out = io.StringIO()
    async with simulated(tmp_path / "sim") as (sim, hardware, config):
        if fault == "plugged":
            sim.connector(1).ev.plug()  # a car reads 9 V where +12 V is expected
        else:
            sim.inject(1, "cp")
        assert await calibrate(hardware, config, path, out) == 1
    assert "REFUSED, nothing written" in out.getvalue()
    why = "from the reference board's" if fault == "plugged" else "does not read above"
    assert why in out.getvalue()
    assert path.read_text() == HAND_WRITTEN


def test_calibration_edits_add_a_connector_table_when_there_is_none() -> None:
    text = "# only a meter\n[meter]\nmodel = 'sdm630'\n"
    edited = set_array_table_keys(text, "connector", 0, {"cp_adc_gain": 9.2}, "measured")
    assert edited.startswith(text)
    assert tomllib.loads(edited)["connector"] == [{"cp_adc_gain": 9.2}]
    with pytest.raises(ConfigEditError):
        set_array_table_keys(text, "connector", 1, {"cp_adc_gain": 9.2})
    inline = "connector = [{ max_current_a = 16 }]\n"
    with pytest.raises(ConfigEditError):  # not line by line: refused, never half-edited
        set_array_table_keys(inline, "connector", 0, {"cp_adc_gain": 9.2})


# --- the CP window comparator (issue 12, drivers/cp_window.py) -------------------------------

WINDOW = {"connector": [{"cp_window_pin": 5}]}


async def test_a_window_comparator_is_active_in_a_and_inactive_with_a_car_in_c(
    tmp_path: Path,
) -> None:
    async with simulated(tmp_path, WINDOW) as (sim, hardware, config):
        results, text, _ = await run_with_tester(sim, hardware, config)
    assert results["cp-window"].outcome is Outcome.PASS
    assert results["cp-window"].detail == "GPIO5 active in state A"
    assert results["cp-window-ev"].outcome is Outcome.PASS
    assert results["cp-window-ev"].detail == "GPIO5 inactive in state C"
    assert text.index("cp-window-ev") > text.index("plug in the EV tester")


async def test_a_comparator_that_does_not_fire_in_a_fails_with_the_threshold_hints(
    tmp_path: Path,
) -> None:
    async with simulated(tmp_path, WINDOW) as (sim, hardware, config):
        window = sim.connector(1).window
        assert window is not None
        window.pin.drive(True)  # the joined outputs stay released: the line reads inactive
        results, _ = await run_checks(sim, hardware, config)
    step = results["cp-window"]
    assert step.outcome is Outcome.FAIL
    assert step.detail.startswith("GPIO5 inactive in state A")
    assert "thresholds (7.5 V and 1.5 V" in step.fix
    assert results["contactor"].outcome is Outcome.PASS  # check-hw clicks it unguarded
