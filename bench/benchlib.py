"""What the bench scripts share: figures, the controller rig, timing the contactor coil, CPU.

Every latency here is a difference of :func:`time.monotonic` stamps (the clock the loopback
CSMS stamps its frames with, and one clock for all processes on Linux). The controller runs
exactly as ``picharge run --sim`` builds it (:class:`controller.app.ChargePointApp` with
``sim=True``), against :class:`controller.local_csms.LocalCsms` on loopback, in the same
process or in a child process of its own (:mod:`csms_process`).

Run the scripts with the venv's Python from the repository root (``make bench``); this module
is imported by them as ``benchlib`` (the script's own directory is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from csms_process import CsmsProcess

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.local_csms import LocalCsms
from hw_sim.ev import EvSpec, SimEV

CARD = "04A1B2C3"
CP_ID = "bench"
#: OCPP keys for the latency benches: the card decides from the cache (no Authorize round
#: trip once the CSMS has accepted it), periodic messages as a real CSMS would set them.
LATENCY_KEYS: Mapping[str, object] = {
    "AuthorizationCacheEnabled": True,
    "LocalPreAuthorize": True,
    "HeartbeatInterval": 300,
    "MeterValueSampleInterval": 60,
    "ClockAlignedDataInterval": 0,
}


def percentile(values: list[float], pct: float) -> float:
    """The value below which ``pct`` % of ``values`` lie (nearest rank on the sorted list)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))]


def figure(name: str, values_s: list[float], *, target_ms: float | None = None) -> str:
    """One line: n, median, p99 and max in ms, and whether p99 meets ``target_ms``."""
    if not values_s:
        return f"{name:48s} no samples"
    p99 = percentile(values_s, 99) * 1000
    line = (
        f"{name:48s} n={len(values_s):4d}  median {statistics.median(values_s) * 1000:7.2f} ms"
        f"  p99 {p99:7.2f} ms  max {max(values_s) * 1000:7.2f} ms"
    )
    if target_ms is not None:
        verdict = "met" if p99 <= target_ms else "MISSED"
        line += f"  (target p99 <= {target_ms:g} ms: {verdict})"
    return line


def write_keys(path: Path, keys: Mapping[str, object]) -> Path:
    """An ``--ocpp-keys`` TOML file with ``keys``."""
    lines = [f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in keys.items()]
    path.write_text("".join(lines))
    return path


class CoilWatch:
    """Every change of the simulated contactor's coil, stamped where it happens.

    The listener runs on the thread that moved the pin (the loop thread, as the contactor
    driver is called there) and stamps :func:`time.monotonic` before anything else.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changes: list[tuple[bool, float]] = []
        self._lock = threading.Lock()
        self._changed = asyncio.Event()

    def on_coil(self, energized: bool) -> None:
        stamp = time.monotonic()
        with self._lock:
            self._changes.append((energized, stamp))
        self._loop.call_soon_threadsafe(self._changed.set)

    async def wait(self, energized: bool, *, since: float, timeout_s: float = 10.0) -> float:
        """The stamp of the first change to ``energized`` at or after ``since``."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._changed.clear()
                with self._lock:
                    for level, stamp in self._changes:
                        if level is energized and stamp >= since:
                            return stamp
                await self._changed.wait()

    async def settle(self, energized: bool, *, timeout_s: float = 10.0) -> None:
        """Until the coil's last change left it ``energized``."""
        async with asyncio.timeout(timeout_s):
            while self.energized is not energized:
                self._changed.clear()
                await self._changed.wait()

    @property
    def energized(self) -> bool:
        with self._lock:
            return self._changes[-1][0] if self._changes else False


class EagerEv(SimEV):
    """A car that closes S2 as soon as it wants energy, before any current is offered.

    IEC 61851-1 calls this C1 (x1 with S2 closed): "EV ready, EVSE not ready". Plugged in
    and waiting for the card, it already shows state C; the charger closes the contactor
    once the PWM offers current and the car's diode was checked. This is the "EV already in
    C" of the tap benchmark.
    """

    def __init__(self, spec: EvSpec | None = None) -> None:
        super().__init__(dataclasses.replace(spec or EvSpec(), closes_s2_early=True))


@dataclasses.dataclass
class Rig:
    """The running controller, its CSMS and handles on the simulated hardware."""

    app: ChargePointApp
    #: In this process, or (:class:`CsmsProcess`) in a child process of its own.
    csms: LocalCsms | CsmsProcess
    coil: CoilWatch
    injector: ThreadPoolExecutor

    @property
    def sim(self) -> Any:
        return self.app.sim

    async def act(self, action: str, **extra: object) -> None:
        """A `picharge sim` action (plug, charge, pause, tap, fault...) on connector 1."""
        await self.app.sim.handle({"action": action, "connector": 1, **extra})

    async def inject(self, change: Callable[[], None]) -> float:
        """Make a hardware change on another thread, as hardware changes independently of the
        loop; returns the stamp taken right before the change."""

        def stamped() -> float:
            stamp = time.monotonic()
            change()
            return stamp

        return await asyncio.get_running_loop().run_in_executor(self.injector, stamped)

    async def status(self, status: str, *, after: int = 0, timeout_s: float = 10.0) -> None:
        await self.csms.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == 1 and p["status"] == status,
            after=after,
            timeout_s=timeout_s,
        )

    def mark(self) -> int:
        return len(self.csms.received)


@contextlib.asynccontextmanager
async def controller_rig(
    keys: Mapping[str, object] = LATENCY_KEYS,
    *,
    ev: type[SimEV] | None = None,
    tags: Mapping[str, str] | None = None,
    before_run: Callable[[ChargePointApp], None] | None = None,
    config: Mapping[str, Mapping[str, object]] | None = None,
    web: str | None = None,
    csms: LocalCsms | CsmsProcess | None = None,
) -> AsyncIterator[Rig]:
    """The controller on simulated hardware (real time), in this process and loop, against
    a loopback CSMS; connector 1 is Available when this yields. ``ev``: the kind of car
    on connector 1; ``before_run`` sees the started app before it runs (to hook into it);
    ``config`` adds configuration sections (``[mqtt]``, ``[web]``), ``web`` HOST:PORT runs the
    local page. ``csms``: the CSMS to start and stop (default: a :class:`LocalCsms` in this
    process authorizing ``tags``, or the bench card)."""
    if csms is None:
        csms = LocalCsms(authorized_tags=dict(tags or {CARD: "Accepted"}))
    url = await csms.start()
    injector = ThreadPoolExecutor(1, thread_name_prefix="bench-injector")
    try:
        with tempfile.TemporaryDirectory(prefix="picharge-bench-") as tmp:
            parsed = parse_config(
                {"chargepoint": {"id": CP_ID}, "ocpp": {"url": url}, **(config or {})}
            )
            app = ChargePointApp(
                dataclasses.replace(parsed, state_dir=Path(tmp) / "state"),
                RunOptions(
                    sim=True,
                    sim_speed=1.0,
                    ocpp_keys=write_keys(Path(tmp) / "k", keys),
                    web=web,
                ),
            )
            stop = asyncio.Event()
            try:
                await app.start()
                if ev is not None:
                    sim_connector = app.sim.connector(1)
                    sim_connector.ev = ev(sim_connector.ev.spec)
                if before_run is not None:
                    before_run(app)
                coil = CoilWatch(asyncio.get_running_loop())
                app.sim.connector(1).contactor.add_coil_listener(coil.on_coil)
                runner = asyncio.create_task(app.run(stop))
                rig = Rig(app, csms, coil, injector)
                try:
                    await rig.status("Available")
                    yield rig
                finally:
                    stop.set()
                    await asyncio.wait_for(runner, 15)
            finally:
                await app.close()
    finally:
        injector.shutdown()
        await csms.stop()
