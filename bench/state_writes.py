"""SD-card wear: bytes the controller writes into its state directory, per hour.

A Pi's SD card dies from writes. Everything the controller keeps (transactions, the outbox,
settings, security events, the authorization cache) is one SQLite database in WAL mode,
written only by the storage thread (``storage_0``, :mod:`controller.storage`). The bytes it
hands to ``write``/``pwrite`` are that thread's ``wchar`` in ``/proc/self/task/TID/io``:
the WAL frames, the checkpoints into the database file, the journal headers, whatever the
filesystem (tmpfs counts too, unlike ``write_bytes``). The simulator's own files (its
meter register) are written by ``sim-*`` threads and so are not counted. The log file a
controller started outside systemd keeps in ``logs/`` is reported apart (its growth):
under systemd the log is the journal and that file does not exist.

The controller runs as ``picharge run --sim`` builds it, in real time, against the loopback
CSMS in this process. Windows:

- **idle**: no car; heartbeats every 300 s;
- **charging**: a car draws 16 A on three phases (11 kW); MeterValues every 60 s;
- **refused**: the CSMS refuses our credentials (HTTP 401) at every attempt; the link
  retries with its backoff cut to ~1 s so that a short window sees many attempts, and the
  figure per hour is bytes per attempt x attempts per hour at the deployed backoff cap
  (one a minute, ``LinkTiming.backoff_max_s``).

    .venv/bin/python bench/state_writes.py [--window-s 120]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from benchlib import CARD, CP_ID, write_keys

from controller.app import ChargePointApp, RunOptions
from controller.app import running as running_app
from controller.config import parse_config
from controller.csms.link import LinkTiming
from controller.local_csms import LocalCsms

KEYS = {"HeartbeatInterval": 300, "MeterValueSampleInterval": 60, "ClockAlignedDataInterval": 0}
TARGETS_KB_H = {"idle": 100, "charging": 1000, "refused": 200}


def storage_wchar() -> int:
    """Bytes the storage thread passed to write calls so far."""
    for thread in threading.enumerate():
        if thread.name.startswith("storage") and thread.native_id is not None:
            io = Path(f"/proc/self/task/{thread.native_id}/io").read_text()
            fields = dict(line.split(": ") for line in io.splitlines())
            return int(fields["wchar"])
    raise RuntimeError("no storage thread")


def log_bytes(state_dir: Path) -> int:
    return sum(p.stat().st_size for p in (state_dir / "logs").glob("*") if p.is_file())


@asynccontextmanager
async def running(csms: LocalCsms, tmp: Path) -> AsyncIterator[ChargePointApp]:
    url = await csms.start()
    config = parse_config({"chargepoint": {"id": CP_ID}, "ocpp": {"url": url}})
    app = ChargePointApp(
        dataclasses.replace(config, state_dir=tmp / "state"),
        RunOptions(sim=True, sim_speed=1.0, ocpp_keys=write_keys(tmp / "keys.toml", KEYS)),
    )
    async with running_app(app, stop_timeout_s=15):
        yield app
        await csms.stop()


async def window(app: ChargePointApp, state_dir: Path, seconds: float) -> tuple[int, int]:
    """(storage bytes, log bytes) written during ``seconds``."""
    wchar, logs = storage_wchar(), log_bytes(state_dir)
    await asyncio.sleep(seconds)
    return storage_wchar() - wchar, log_bytes(state_dir) - logs


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.1)


async def idle_and_charging(window_s: float) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="picharge-bench-") as name:
        tmp = Path(name)
        csms = LocalCsms(authorized_tags={CARD: "Accepted"}, heartbeat_interval_s=300)
        async with running(csms, tmp) as app:
            await csms.wait_for("StatusNotification", lambda p: p["status"] == "Available")
            await asyncio.sleep(5)  # start-up writes (boot, keys) are not idle
            storage, logs = await window(app, tmp / "state", window_s)
            out["idle"] = (storage * 3600 / window_s, logs * 3600 / window_s)
            await app.sim.handle({"action": "plug", "connector": 1})
            await app.sim.handle({"action": "charge", "connector": 1})
            await app.sim.handle({"action": "tap", "connector": 1, "uid": CARD})
            await csms.wait_for("StartTransaction")
            await wait_for(lambda: app.sim.status()["connectors"][0]["coil_energized"])
            await asyncio.sleep(5)
            storage, logs = await window(app, tmp / "state", window_s)
            out["charging"] = (storage * 3600 / window_s, logs * 3600 / window_s)
    return out


async def refused(window_s: float) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="picharge-bench-") as name:
        tmp = Path(name)
        csms = LocalCsms(basic_auth={CP_ID: "not-what-we-send"})

        async with running(csms, tmp) as app:
            adapter = app.adapter
            assert adapter is not None
            adapter.timing = dataclasses.replace(  # type: ignore[attr-defined]
                adapter.timing,  # type: ignore[attr-defined]
                backoff_initial_s=0.5,
                backoff_max_s=1.0,
            )
            await wait_for(lambda: len(csms.connection_attempts) >= 3)
            attempts = len(csms.connection_attempts)
            storage, logs = await window(app, tmp / "state", window_s)
            attempts = len(csms.connection_attempts) - attempts
    per_hour = 3600 / LinkTiming().backoff_max_s
    return storage / attempts * per_hour, logs / attempts * per_hour, attempts


def row(name: str, storage_b_h: float, logs_b_h: float) -> str:
    target = TARGETS_KB_H[name]
    kb = storage_b_h / 1000
    verdict = "met" if kb < target else "MISSED"
    return (
        f"{name:9s} state database {kb:9.1f} kB/h (target < {target} kB/h: {verdict}); "
        f"log file outside systemd {logs_b_h / 1000:8.1f} kB/h"
    )


async def measure(window_s: float) -> None:
    figures = await idle_and_charging(window_s)
    storage, logs, attempts = await refused(window_s)
    print(row("idle", *figures["idle"]))
    print(row("charging", *figures["charging"]))
    print(row("refused", storage, logs) + f"  ({attempts} attempts measured, 60/h)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=120.0, help="each window (120 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(measure(args.window_s))


if __name__ == "__main__":
    main()
