"""Card tap to contactor close, and RemoteStopTransaction to contactor open, end to end.

Runs the real controller (supervisor, state machine, OCPP 1.6J adapter, drivers) on
simulated hardware against the bundled loopback CSMS, with the car already plugged in and
asking for energy. Times:

- tap: from the card entering the simulated PN532's field to the contactor coil pin going
  high (includes the reader's poll interval, Authorize at the CSMS or the authorization
  cache, StartTransaction being queued, the PWM and the contactor driver);
- remote stop: from the CSMS sending RemoteStopTransaction to the coil pin going low, and
  to the CSMS receiving StopTransaction.

    .venv/bin/python bench/session_latency.py [--sessions 30]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import statistics
import tempfile
import time
from pathlib import Path

from ocpp.v16 import call

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.local_csms import LocalCsms

CARD = "04A1B2C3"
CP_ID = "bench"


def _figures(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"{name:44s} n={len(values):3d}  median {statistics.median(values) * 1000:7.1f} ms"
        f"  p99 {p99 * 1000:7.1f} ms"
    )


async def measure(sessions: int) -> None:
    csms = LocalCsms(authorized_tags={CARD: "Accepted"})
    url = await csms.start()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.toml"
        keys.write_text("MeterValueSampleInterval = 0\nHeartbeatInterval = 300\n")
        config = parse_config({"chargepoint": {"id": CP_ID}, "ocpp": {"url": url}})
        app = ChargePointApp(
            dataclasses.replace(config, state_dir=Path(tmp) / "state"),
            RunOptions(sim=True, sim_speed=1.0, ocpp_keys=keys),
        )
        await app.start()
        stop = asyncio.Event()
        runner = asyncio.create_task(app.run(stop))
        loop = asyncio.get_running_loop()
        coil_changes: asyncio.Queue[tuple[bool, float]] = asyncio.Queue()

        def on_coil(energized: bool) -> None:  # called on the driver's thread
            stamp = time.monotonic()
            loop.call_soon_threadsafe(coil_changes.put_nowait, (energized, stamp))

        sim_connector = app.sim.connector(1)
        sim_connector.contactor.add_coil_listener(on_coil)

        async def coil(level: bool) -> float:
            while True:
                energized, stamp = await asyncio.wait_for(coil_changes.get(), 10)
                if energized is level:
                    return stamp

        tap_to_close: list[float] = []
        stop_to_open: list[float] = []
        stop_to_message: list[float] = []
        try:
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available")
            await app.sim.handle({"action": "plug"})
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Preparing")
            for _ in range(sessions):
                mark = len(csms.received)
                started = time.monotonic()
                await app.sim.handle({"action": "tap", "uid": CARD})
                tap_to_close.append(await coil(True) - started)
                await csms.wait_for("StartTransaction", after=mark)
                tx = next(reversed(csms.transactions.values()))
                await asyncio.sleep(0.6)  # let the card leave the field
                mark = len(csms.received)
                started = time.monotonic()
                await csms.call(CP_ID, call.RemoteStopTransaction(transaction_id=tx.transaction_id))
                stop_to_open.append(await coil(False) - started)
                await csms.wait_for("StopTransaction", after=mark)
                stop_to_message.append(csms.received[-1].monotonic_s - started)
                await asyncio.sleep(0.4)  # contactor settle time before the next session
        finally:
            stop.set()
            await asyncio.wait_for(runner, 10)
            await app.close()
            await csms.stop()
    print(_figures("card tap -> contactor closed", tap_to_close))
    print(_figures("RemoteStopTransaction -> contactor open", stop_to_open))
    print(_figures("RemoteStopTransaction -> StopTransaction at CSMS", stop_to_message))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(parser.parse_args().sessions))


if __name__ == "__main__":
    main()
