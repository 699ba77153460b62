"""Every thread of a running charger has a name the operating system shows.

``top -H``, ``ps -L`` and ``/proc/PID/task/*/comm`` only see native thread names; a thread
without one shows its creator's name, so the CPU of the card reader, the CP sampler and the
simulated meter could not be told apart. The end-to-end test runs ``picharge run --sim`` as a
user does and reads what the OS sees.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.threads import (
    LOOP_THREAD,
    NATIVE_NAME_BYTES,
    THREAD_NAMES,
    NamedThread,
    name_current_thread,
    name_thread,
    named_executor,
)
from hw_sim.charger import sim_connector_section
from hw_sim.loop_thread import SIM_LOOP_THREAD, SimChargerOnThread
from hw_sim.meter_server import SimMeter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

PICHARGE = [sys.executable, "-m", "controller.cli"]
CARD = "04AABBCC"


def native_names(pid: int | str = "self") -> dict[int, str]:
    """Thread id -> the name the OS shows, for every thread of process ``pid``."""
    names = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[int(task.name)] = (task / "comm").read_text().rstrip("\n")
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return names


def native_name_of(thread: threading.Thread) -> str:
    return Path(f"/proc/self/task/{thread.native_id}/comm").read_text().rstrip("\n")


def is_ours(name: str) -> bool:
    """A name from the catalogue, an executor's ``<name>_<n>``, or ``sim-pwmchip<n>``."""
    return any(re.fullmatch(rf"{re.escape(known)}(_?\d+)?", name) for known in THREAD_NAMES)


# --- the helper --------------------------------------------------------------------------


def test_a_named_thread_carries_its_name_in_the_os() -> None:
    seen: list[str] = []
    thread = NamedThread(target=lambda: seen.append(native_name_of(thread)), name="cp-sampler")
    thread.start()
    thread.join()
    assert seen == ["cp-sampler"]


def test_a_long_name_is_cut_to_what_linux_keeps() -> None:
    seen: list[tuple[str, str]] = []

    def body() -> None:
        name_current_thread("a-rather-long-thread-name")
        seen.append((threading.current_thread().name, native_name_of(threading.current_thread())))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [("a-rather-long-thread-name", "a-rather-long-t")]
    assert len(seen[0][1]) == NATIVE_NAME_BYTES


def test_a_running_thread_a_library_started_can_be_named_from_outside() -> None:
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        name_thread(thread, "led-blink")
        assert (thread.name, native_name_of(thread)) == ("led-blink", "led-blink")
    finally:
        release.set()
        thread.join()


def test_executor_threads_are_numbered_under_their_name() -> None:
    with named_executor("storage", max_workers=1) as pool:
        thread = pool.submit(threading.current_thread).result()
        assert (thread.name, native_name_of(thread)) == ("storage_0", "storage_0")


def test_every_catalogued_name_fits_the_os_limit() -> None:
    too_long = [name for name in THREAD_NAMES if len(name.encode()) > NATIVE_NAME_BYTES]
    assert too_long == []


# --- the simulator's own loop --------------------------------------------------------------


async def test_simulated_physics_and_meter_server_run_on_the_simulators_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The controller's loop must not carry the simulated hardware (a Pi has none): the
    cars' physics and the meters' Modbus answers run on ``sim-ev-meter``."""
    served_on: set[str] = set()
    trace = SimMeter._trace_pdu

    def traced(meter: SimMeter, sending: bool, pdu: Any, *, tcp: bool) -> Any:
        served_on.add(threading.current_thread().name)
        return trace(meter, sending, pdu, tcp=tcp)

    monkeypatch.setattr(SimMeter, "_trace_pdu", traced)
    sim = SimChargerOnThread(tmp_path, [sim_connector_section(1, {})])
    stepped_on: set[str] = set()
    step = sim.step

    def step_and_note(wall_dt_s: float) -> None:
        stepped_on.add(threading.current_thread().name)
        step(wall_dt_s)

    sim.step = step_and_note  # type: ignore[method-assign]
    await sim.start()
    try:
        host, port = sim.connector(1).meter_endpoint.rsplit(":", 1)
        client = AsyncModbusTcpClient(host, port=int(port))
        await client.connect()
        try:
            reply = await client.read_input_registers(0, count=2, device_id=1)
        finally:
            client.close()
        assert not reply.isError()
        async with asyncio.timeout(2.0):
            while not stepped_on:  # noqa: ASYNC110 - the physics ticks every 50 ms
                await asyncio.sleep(0.01)
    finally:
        await sim.stop()
    assert served_on == {SIM_LOOP_THREAD}
    assert stepped_on == {SIM_LOOP_THREAD}


# --- the running charger -----------------------------------------------------------------


class Charger:
    """``picharge run --sim`` in a child process, driven with ``picharge sim``."""

    def __init__(self, state_dir: Path, control: str) -> None:
        config = state_dir / "config.toml"
        config.write_text(f'[authorization]\ncards = ["{CARD}"]\n')
        self.control = control
        run = ["run", "--sim", "--config", str(config), "--state-dir", str(state_dir)]
        self.process = subprocess.Popen(
            [*PICHARGE, *run, "--sim-speed", "60", "--sim-control", control],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sim(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PICHARGE, "sim", "--control", self.control, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    def wait_for_status(self, wanted: str, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while f'"ocpp_status": "{wanted}"' not in self.sim("status").stdout:
            assert self.process.poll() is None, self.process.communicate()[1]
            assert time.monotonic() < deadline, f"the charger never reached {wanted}"
            time.sleep(0.1)


@pytest.fixture
def charger(tmp_path: Path) -> Iterator[Charger]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = Charger(tmp_path, f"127.0.0.1:{port}")
    try:
        c.wait_for_status("Available")
        yield c
    finally:
        c.process.terminate()
        try:
            c.process.wait(timeout=10)
        finally:
            if c.process.poll() is None:
                c.process.kill()
            c.process.communicate()


def test_every_thread_of_a_charging_sim_run_has_a_name_of_its_own(charger: Charger) -> None:
    assert charger.sim("plug").returncode == 0
    assert charger.sim("tap", CARD).returncode == 0
    charger.wait_for_status("Charging")  # the LED blinks, the meter is read, the car draws
    names = native_names(charger.process.pid)

    assert names[charger.process.pid] == LOOP_THREAD  # the main thread runs the loop
    strangers = sorted(name for name in names.values() if not is_ours(name))
    assert strangers == [], f"threads without a name of ours: {strangers} (all: {names})"
    assert list(names.values()).count(LOOP_THREAD) == 1, "a thread took the loop's name"
    for expected in ("cp-sampler", "rfid-pn532", "sim-ev-meter", "storage_0", "led-blink"):
        assert expected in names.values(), f"no {expected} thread among {sorted(names.values())}"
