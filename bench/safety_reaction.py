"""Safety reaction: a hazard on the simulated hardware to the contactor coil pin going low.

The whole controller (``picharge run --sim``: drivers, supervisor, connector state machine,
OCPP 1.6J adapter) charges a simulated car against the loopback CSMS, in real time. Then,
many times each, from a thread of its own (hardware does not wait for the event loop):

- **EV C -> B**: the car opens S2 (stops asking for energy). The CP sampler must see B
  twice on the ADS1115 and the supervisor must open the contactor;
- **RCD trip**: the residual current monitor's fault output goes active (a GPIO edge);
- **CP short**: the CP line is pulled to PE (0 V, state E).

Each time is from the moment the input changed to the moment the MockFactory coil pin went
low (:meth:`hw_sim.pins.SimContactorPins.add_coil_listener` stamps it on the thread that
moved the pin). The contactor's own opening time (6-30 ms for an LC1E, hardware reference
5.2) comes on top; IEC 61851-1 allows 100 ms for both together. Between trials the car
charges again (the CP change is undone, the fault cleared) and a random pause puts the next
change at a random phase of the CP sampler, at least 0.2 s after the contactor closed. (In
the first ~40 ms after the PWM starts the diode is judged on every sample, two conversions
each, so a change there can take one conversion, about 1.5 ms, longer.)

Two more sets of rows repeat the hazards under stress (issue 12 §2):

- **CSMS flood**: the loopback CSMS sends 10,000 GetConfiguration CALLs without waiting for
  the answers; the hazard comes 0.3 s into the flood, from a timer thread (the loop is busy).
  The CSMS runs in a process of its own (:mod:`csms_process`), as a real one runs on another
  host: the controller's process pays for the frames it reads and answers, not for building
  and sending them. Once the coil is low the CSMS process stops the flood and drops the
  link with what it still holds (the charger reads a flood at its frame bucket's rate,
  controller/ocppj/throttle.py) and the charger reconnects before the next trial. Each row
  also prints how many of the CALLs the charger answered;
- **CPU-bound neighbour**: a process spinning ``while True: pass`` runs beside the
  controller for the whole set.

- **The home edges busy** (``--edges``, issue 15): the local web page with a client polling
  the status API every 0.2 s and a live WebSocket open, and the MQTT bridge publishing to a
  mosquitto started here on loopback (Debian's package), while the hazards come.

- **A CP window comparator** (``--window``, issue 12): the connector gets ``cp_window_pin``
  (drivers/cp_window.py), so EV C -> B and the CP short drop the coil on the comparator's
  GPIO edge instead of after the ADS1115's conversions; every row as above.

    .venv/bin/python bench/safety_reaction.py [--cb 100] [--rcd 25] [--short 25]
        [--stress 10] [--flood-calls 10000] [--edges] [--window]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchlib import CARD, CP_ID, Rig, controller_rig, figure
from csms_process import CsmsProcess, FloodReport
from sampler_trace import SamplerTrace

TARGET_MS = 5.0
#: ``--window``: the comparator's GPIO, one the simulated connector 1 leaves free.
WINDOW_PIN = 5
#: When the hazard comes after the flood started, as in the review that found the problem.
FLOOD_LEAD_S = 0.3
#: Set by ``--trace``: where each CP hazard's time went.
TRACE: SamplerTrace | None = None


def traced(change: Callable[[], None]) -> Callable[[], None]:
    """``change``, and the trace told the moment it happened (when tracing)."""

    def go() -> None:
        stamp = time.monotonic()
        change()
        if TRACE is not None:
            TRACE.begin(stamp)

    return go


def file_trace(row: str, coil_low: float) -> None:
    if TRACE is not None:
        TRACE.end(row, coil_low)


async def charging(rig: Rig) -> None:
    """Until the contactor is closed again; taps the card again if the transaction ended."""
    for _ in range(2):
        if rig.coil.energized:
            return
        supervisor = rig.app.supervisor
        assert supervisor is not None
        if supervisor.view(1).transaction is None:
            await asyncio.sleep(0.7)  # the card must have left the field to count again
            await rig.act("tap", uid=CARD)
        with contextlib.suppress(TimeoutError):
            await rig.coil.settle(True, timeout_s=15.0)
    if not rig.coil.energized:
        raise TimeoutError("the car did not get back to charging")


async def first_close(rig: Rig) -> None:
    """The first tap's close. Not :func:`charging`: while that tap's transaction is still
    starting it would tap again, and the same card a second time stops the session, so the
    coil would drop again before the first hazard (seen under load)."""
    await rig.coil.settle(True, timeout_s=15.0)


async def heard(rig: Rig) -> None:
    """Until the connector machine has heard of the hazard (it no longer wants the contactor
    closed). With a window comparator the coil drops before the ADS1115 has seen the change:
    undone sooner, the hazard is a glitch the sampler never confirms (a cp_mismatch fault)."""
    supervisor = rig.app.supervisor
    assert supervisor is not None
    machine = supervisor.connectors[1].machine
    deadline = time.monotonic() + 30.0
    while machine.contactor_closed:
        if time.monotonic() > deadline:
            raise TimeoutError("the connector machine did not hear of the hazard")
        await asyncio.sleep(0.005)


async def trial(
    rig: Rig, change: Callable[[], None], undo: Callable[[], None], row: str = ""
) -> float:
    """One hazard: random phase, inject, time the coil, undo, charge again."""
    await charging(rig)
    # A random phase of the sampler, in steady charging: for the first ~40 ms after the PWM
    # (re)starts, AIN1 is read on every sample for the diode verdict (module docstring).
    await asyncio.sleep(0.2 + random.uniform(0.0, 0.02))
    started = await rig.inject(traced(change))
    opened = await rig.coil.wait(False, since=started, timeout_s=2.0)
    file_trace(row, opened)
    await heard(rig)
    await rig.inject(undo)
    return opened - started


async def flood_trial(
    rig: Rig,
    change: Callable[[], None],
    undo: Callable[[], None],
    calls: int,
    row: str = "",
    reports: list[tuple[float, FloodReport]] | None = None,
) -> float:
    """One hazard ``FLOOD_LEAD_S`` after the CSMS process was told to send ``calls`` CALLs,
    from a timer thread; the flood's report and the hazard's stamp go to ``reports``.

    Once the coil is low the flood is ended (:meth:`CsmsProcess.end_flood`): the charger
    reads a flood at its frame bucket's rate (controller/ocppj/throttle.py), so waiting for
    all ``calls`` answers would take minutes; the CSMS process drops the link with what it
    still holds, and the next trial waits for the charger to reconnect. The link may also
    drop on its own during a flood (a keepalive missed): the hazard's time still stands (it
    does not depend on the link), and the report says so.
    """
    csms = rig.csms
    assert isinstance(csms, CsmsProcess), "the flood rows need the CSMS in its own process"
    await csms.wait_connected(CP_ID, timeout_s=60.0)
    await charging(rig)
    await asyncio.sleep(0.2 + random.uniform(0.0, 0.02))
    stamps: list[float] = []

    def fire() -> None:
        stamps.append(time.monotonic())
        traced(change)()

    timer = threading.Timer(FLOOD_LEAD_S, fire)
    flooding = asyncio.create_task(csms.flood(CP_ID, calls))
    timer.start()
    try:
        while not stamps:  # noqa: ASYNC110 - the timer thread fires independently
            await asyncio.sleep(0.005)
        opened = await rig.coil.wait(False, since=stamps[0], timeout_s=30.0)
        file_trace(row, opened)
        await csms.end_flood()
        report = await flooding
    finally:
        timer.join()
        if not flooding.done():
            flooding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flooding
    if report.dropped is not None:
        print(f"  (the link dropped during a flood: {report.dropped}; timing kept)", flush=True)
    if reports is not None:
        reports.append((stamps[0], report))
    await heard(rig)
    await rig.inject(undo)
    return opened - stamps[0]


def flood_summary(reports: list[tuple[float, FloodReport]]) -> str:
    """What the CSMS process saw of a row's floods: did they reach the charger, and did each
    hazard come while the charger was still answering."""
    sent = sum(r.sent for _, r in reports)
    answered = sum(r.answered for _, r in reports)
    errors = sum(r.errors for _, r in reports)
    fewest = min(r.answered for _, r in reports)
    leads = [hazard - r.first_sent_s for hazard, r in reports]
    ended = sum(r.ended for _, r in reports)
    sending = [r.last_sent_s - r.first_sent_s for _, r in reports]
    answering = [r.last_answer_s - r.first_sent_s for _, r in reports if r.last_answer_s]
    inside = sum(r.last_answer_s is not None and hazard < r.last_answer_s for hazard, r in reports)
    return (
        f"  CSMS process: {len(reports)} floods, {answered} of {sent} CALLs answered "
        f"(fewest in one flood {fewest}; {errors} busy CALLERRORs; {ended} ended with "
        f"CALLs unanswered, the link dropped); sent in "
        f"{min(sending):.2f}-{max(sending):.2f} s, answered in "
        f"{min(answering, default=0):.2f}-{max(answering, default=0):.2f} s; the hazard "
        f"{min(leads):.3f}-{max(leads):.3f} s after the first CALL, before the last answer "
        f"in {inside} of {len(reports)}"
    )


Hazard = tuple[str, Callable[[], None], Callable[[], None]]


def hazards(rig: Rig) -> list[Hazard]:
    sim = rig.sim.connector(1)

    def cp_short(on: bool) -> None:
        sim.cp_short = on

    return [
        ("EV C -> B", sim.ev.pause, sim.ev.charge),
        ("RCD trip", sim.rcm.trip, sim.rcm.clear),
        ("CP short (E)", lambda: cp_short(True), lambda: cp_short(False)),
    ]


async def measure(
    counts: dict[str, int], stress: int, flood_calls: int, config: dict[str, Any]
) -> None:
    csms = CsmsProcess(authorized_tags={CARD: "Accepted"})
    async with controller_rig(config=config, csms=csms) as rig:
        await rig.act("plug")
        await rig.status("Preparing")
        await rig.act("tap", uid=CARD)
        await first_close(rig)
        for name, change, undo in hazards(rig):
            times = [await trial(rig, change, undo, name) for _ in range(counts[name])]
            show(name, times)
        for name, change, undo in hazards(rig):
            row = f"{name}, {flood_calls} CALL flood"
            reports: list[tuple[float, FloodReport]] = []
            times = [
                await flood_trial(rig, change, undo, flood_calls, row, reports)
                for _ in range(stress)
            ]
            show(row, times)
            if reports:
                print(flood_summary(reports), flush=True)
        hog = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
        try:
            for name, change, undo in hazards(rig):
                row = f"{name}, CPU-bound process beside"
                times = [await trial(rig, change, undo, row) for _ in range(stress)]
                show(row, times)
        finally:
            hog.kill()
            await hog.wait()


def show(name: str, times: list[float]) -> None:
    """Print a row as soon as it is measured (a later row may fail on a loaded machine)."""
    print(figure(f"{name} -> coil low", times, target_ms=TARGET_MS), flush=True)
    trace = TRACE.report().get(name) if TRACE is not None else None
    if trace is not None:
        print(trace, flush=True)


@contextlib.contextmanager
def mosquitto() -> Iterator[str]:
    """A throwaway broker on a free loopback port; yields its ``mqtt://`` URL."""
    with tempfile.TemporaryDirectory(prefix="picharge-bench-mqtt-") as tmp:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        conf = Path(tmp) / "mosquitto.conf"
        lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:  # until it listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            broker.terminate()
            broker.wait()


async def browse(url: str) -> None:
    """A phone on the status page: the status API every 0.2 s and the live stream open."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(url + "/api/v1/live") as live:

        async def drain() -> None:
            async for _ in live:
                pass

        reader = asyncio.create_task(drain())
        try:
            while True:
                async with http.get(url + "/api/v1/status") as response:
                    await response.read()
                await asyncio.sleep(0.2)
        finally:
            reader.cancel()


async def measure_edges(counts: dict[str, int], config: dict[str, Any]) -> None:
    """The quiet rows again, with the web page and MQTT in use."""
    with mosquitto() as broker:
        config = {**config, "mqtt": {"url": broker}, "web": {"public_status": True}}
        async with controller_rig(config=config, web="127.0.0.1:0") as rig:
            assert rig.app.web is not None and rig.app.mqtt is not None
            await until_listening(rig)
            phone = asyncio.create_task(browse(rig.app.web.url.rstrip("/")))
            try:
                await rig.act("plug")
                await rig.status("Preparing")
                await rig.act("tap", uid=CARD)
                await first_close(rig)
                for name, change, undo in hazards(rig):
                    row = f"{name}, page and MQTT in use"
                    times = [await trial(rig, change, undo, row) for _ in range(counts[name])]
                    show(row, times)
            finally:
                phone.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await phone


async def until_listening(rig: Rig) -> None:
    deadline = time.monotonic() + 10
    while rig.app.web.address is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the web page did not start listening")
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cb", type=int, default=100, help="C -> B trials (default 100)")
    parser.add_argument("--rcd", type=int, default=25, help="RCD trips (default 25)")
    parser.add_argument("--short", type=int, default=25, help="CP shorts (default 25)")
    parser.add_argument(
        "--stress", type=int, default=10, help="trials per hazard under each stress (10)"
    )
    parser.add_argument(
        "--flood-calls", type=int, default=10_000, help="CALLs per flood (default 10000)"
    )
    parser.add_argument(
        "--edges",
        action="store_true",
        help="instead: the hazards with the web page and MQTT in use (needs mosquitto)",
    )
    parser.add_argument(
        "--realtime-priority",
        type=int,
        help="the CP sampler's SCHED_FIFO priority (default: the configuration's; 0: normal "
        "scheduling, as before issue 12's real-time work; needs root or RLIMIT_RTPRIO)",
    )
    parser.add_argument(
        "--trace", action="store_true", help="also print where each CP hazard's time went"
    )
    parser.add_argument(
        "--window",
        action="store_true",
        help=f"with a CP window comparator on GPIO{WINDOW_PIN} (cp_window_pin, issue 12)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    if args.trace:
        global TRACE
        TRACE = SamplerTrace()
        TRACE.install()
    counts = {"EV C -> B": args.cb, "RCD trip": args.rcd, "CP short (E)": args.short}
    config: dict[str, Any] = {}
    connector: dict[str, Any] = {}
    if args.realtime_priority is not None:
        connector["sampler_realtime_priority"] = args.realtime_priority
    if args.window:
        connector["cp_window_pin"] = WINDOW_PIN
    if connector:
        config["connector"] = [connector]
    if args.edges:
        asyncio.run(measure_edges(counts, config))
    else:
        asyncio.run(measure(counts, args.stress, args.flood_calls, config))
    if TRACE is not None:
        print(TRACE.collections())


if __name__ == "__main__":
    main()
