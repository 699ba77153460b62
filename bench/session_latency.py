"""Card tap to contactor close, and RemoteStopTransaction to contactor open, end to end.

Runs the real controller (``picharge run --sim``: drivers, supervisor, state machine, OCPP
1.6J adapter) on simulated hardware against the loopback CSMS, in real time, with the card
in the authorization cache (``LocalPreAuthorize = true``: a warm-up session put it there),
and times:

- **tap -> close, EV already in C**: the car is plugged in and asks for energy before any
  is offered (S2 closed in x1: state C1 of IEC 61851-1, "EV ready, EVSE not ready"); it is
  waiting for the card. From the card entering the simulated PN532's field to the contactor
  coil pin going high: the reader's polling, the cache decision, StartTransaction queued,
  the PWM offer and the contactor driver. Split into the reader's part (tap -> the
  supervisor hears the card) and the controller's (card -> coil);
- **tap -> close, EV goes to C when offered current**: the common car, in B until the PWM
  offers current; then the CP sampler must see C for ``debounce_slow_samples`` samples
  before the contactor may close. Reported for comparison (no target: that wait is the
  charger's deliberate check that the car really asks for energy);
- **RemoteStopTransaction -> contactor open**, and **-> StopTransaction at the CSMS**
  (received on loopback, a fraction of a millisecond after it was sent).

    .venv/bin/python bench/session_latency.py [--sessions 30] [--b-to-c-sessions 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time

from benchlib import CARD, CP_ID, EagerEv, Rig, controller_rig, figure
from ocpp.v16 import call

from controller.app import ChargePointApp
from hw_sim.ev import SimEV

TAP_TARGET_MS = 50.0
STOP_TARGET_MS = 20.0


class Timings:
    def __init__(self) -> None:
        self.tap_to_close: list[float] = []
        self.tap_to_card: list[float] = []
        self.card_to_close: list[float] = []
        self.stop_to_open: list[float] = []
        self.stop_to_message: list[float] = []
        self.cards: list[float] = []  # when the supervisor heard each card

    def hook(self, app: ChargePointApp) -> None:
        """Stamp the moment the supervisor hears a card (before it feeds the machine)."""
        supervisor = app.supervisor
        assert supervisor is not None
        heard = supervisor._card

        def card(uid: str) -> None:
            self.cards.append(time.monotonic())
            heard(uid)

        supervisor._card = card  # type: ignore[method-assign]


async def session(rig: Rig, timings: Timings, *, record: bool) -> None:
    """One session: plug in, tap, charge, RemoteStopTransaction, unplug."""
    mark = rig.mark()
    await rig.act("plug")
    await rig.status("Preparing", after=mark)
    await asyncio.sleep(0.3 + random.uniform(0.0, 0.3))  # the car waits; a random phase
    mark = rig.mark()
    cards = len(timings.cards)
    tapped = time.monotonic()
    await rig.act("tap", uid=CARD)
    closed = await rig.coil.wait(True, since=tapped)
    await rig.csms.wait_for("StartTransaction", after=mark)
    if record:
        timings.tap_to_close.append(closed - tapped)
        heard = timings.cards[cards]
        timings.tap_to_card.append(heard - tapped)
        timings.card_to_close.append(closed - heard)
    tx = next(reversed(rig.csms.transactions.values()))
    await asyncio.sleep(0.3 + random.uniform(0.0, 0.05))
    mark = rig.mark()
    asked = time.monotonic()
    await rig.csms.call(CP_ID, call.RemoteStopTransaction(transaction_id=tx.transaction_id))
    opened = await rig.coil.wait(False, since=asked)
    await rig.csms.wait_for("StopTransaction", after=mark)
    stop_message = next(r for r in rig.csms.received[mark:] if r.action == "StopTransaction")
    if record:
        timings.stop_to_open.append(opened - asked)
        timings.stop_to_message.append(stop_message.monotonic_s - asked)
    mark = rig.mark()
    await rig.act("unplug")
    await rig.status("Available", after=mark)


async def run_sessions(ev: type[SimEV], sessions: int) -> Timings:
    timings = Timings()
    async with controller_rig(ev=ev, before_run=timings.hook) as rig:
        await session(rig, timings, record=False)  # the CSMS accepts the card: now cached
        for _ in range(sessions):
            await session(rig, timings, record=True)
    return timings


async def measure(sessions: int, b_to_c_sessions: int) -> None:
    eager = await run_sessions(EagerEv, sessions)
    print(
        figure(
            "card tap -> contactor closed (EV already in C)",
            eager.tap_to_close,
            target_ms=TAP_TARGET_MS,
        )
    )
    print(figure("  of which tap -> card at the supervisor", eager.tap_to_card))
    print(figure("  of which card -> contactor closed", eager.card_to_close))
    if b_to_c_sessions:
        common = await run_sessions(SimEV, b_to_c_sessions)
        print(figure("card tap -> contactor closed (EV B -> C on PWM)", common.tap_to_close))
        eager.stop_to_open += common.stop_to_open
        eager.stop_to_message += common.stop_to_message
    print(
        figure(
            "RemoteStopTransaction -> contactor open", eager.stop_to_open, target_ms=STOP_TARGET_MS
        )
    )
    print(
        figure(
            "RemoteStopTransaction -> StopTransaction at CSMS",
            eager.stop_to_message,
            target_ms=STOP_TARGET_MS,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="EV-in-C sessions (30)")
    parser.add_argument(
        "--b-to-c-sessions", type=int, default=10, help="sessions with a B -> C car (10; 0 = skip)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(measure(args.sessions, args.b_to_c_sessions))


if __name__ == "__main__":
    main()
