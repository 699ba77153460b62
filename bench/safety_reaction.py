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

    .venv/bin/python bench/safety_reaction.py [--cb 100] [--rcd 25] [--short 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from benchlib import CARD, Rig, controller_rig, figure

TARGET_MS = 5.0


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
            await rig.coil.settle(True, timeout_s=5.0)
    if not rig.coil.energized:
        raise TimeoutError("the car did not get back to charging")


async def trial(rig: Rig, change: Callable[[], None], undo: Callable[[], None]) -> float:
    """One hazard: random phase, inject, time the coil, undo, charge again."""
    await charging(rig)
    # A random phase of the sampler, in steady charging: for the first ~40 ms after the PWM
    # (re)starts, AIN1 is read on every sample for the diode verdict (module docstring).
    await asyncio.sleep(0.2 + random.uniform(0.0, 0.02))
    started = await rig.inject(change)
    opened = await rig.coil.wait(False, since=started, timeout_s=2.0)
    await rig.inject(undo)
    return opened - started


async def measure(cb: int, rcd: int, short: int) -> None:
    async with controller_rig() as rig:
        await rig.act("plug")
        await rig.status("Preparing")
        await rig.act("tap", uid=CARD)
        await charging(rig)
        sim = rig.sim.connector(1)
        results: dict[str, list[float]] = {"cb": [], "rcd": [], "short": []}

        def cp_short(on: bool) -> None:
            sim.cp_short = on

        for _ in range(cb):
            results["cb"].append(await trial(rig, sim.ev.pause, sim.ev.charge))
        for _ in range(rcd):
            results["rcd"].append(await trial(rig, sim.rcm.trip, sim.rcm.clear))
        for _ in range(short):
            results["short"].append(
                await trial(rig, lambda: cp_short(True), lambda: cp_short(False))
            )
    print(figure("EV C -> B -> contactor coil low", results["cb"], target_ms=TARGET_MS))
    print(figure("RCD trip -> contactor coil low", results["rcd"], target_ms=TARGET_MS))
    print(figure("CP short (E) -> contactor coil low", results["short"], target_ms=TARGET_MS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cb", type=int, default=100, help="C -> B trials (default 100)")
    parser.add_argument("--rcd", type=int, default=25, help="RCD trips (default 25)")
    parser.add_argument("--short", type=int, default=25, help="CP shorts (default 25)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(measure(args.cb, args.rcd, args.short))


if __name__ == "__main__":
    main()
