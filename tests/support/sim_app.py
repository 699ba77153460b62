"""The whole controller on simulated hardware, in the test's own event loop.

:func:`controller` runs what ``picharge run --sim`` runs (a :class:`ChargePointApp` with the
supervisor, connector state machines, the OCPP 1.6 adapter and the drivers on ``hw_sim``)
against a loopback CSMS, and hands the test an :class:`AppRig` to play the car and the card
reader (``act``), read the simulated hardware (``hw``) and wait for what the CSMS receives
(``status``). Tests that need the real process (signals, exit codes, SIGKILL) start
``python -m controller.cli`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.local_csms import LocalCsms
from drivers.base import CpState
from tests.support.csms import ACCEPTED_TAG
from tests.support.wait import until

CP_ID = "cp-e2e"
#: OCPP keys of the end-to-end tests: fast heartbeat and meter values, no pings to answer.
FAST_KEYS: Mapping[str, Any] = {
    "HeartbeatInterval": 2,
    "MeterValueSampleInterval": 1,
    "ClockAlignedDataInterval": 0,
    "ConnectionTimeOut": 30,
    "WebSocketPingInterval": 0,
}


#: The same for OCPP 2.0.1: device-model variables, a table per component.
FAST_VARIABLES_201: Mapping[str, Any] = {
    "OCPPCommCtrlr": {"HeartbeatInterval": 2, "WebSocketPingInterval": 0},
}


class AppRig:
    """The running controller as a test drives it: the car and the reader through the
    simulator's control channel, the hardware's state, and the CSMS's record."""

    def __init__(
        self, app: ChargePointApp, csms: LocalCsms, task: asyncio.Task[Any], cp_id: str
    ) -> None:
        self.app = app
        self.csms = csms
        #: ``app.run``: a test may await its result (a reset's kind) or crash it.
        self.task = task
        self.cp_id = cp_id

    async def act(self, action: str, *, connector: int = 1, **extra: Any) -> None:
        """What ``picharge sim ACTION`` does: plug, charge, tap (``uid=``), fault, ..."""
        await self.app.sim.handle({"action": action, "connector": connector, **extra})

    def hw(self, key: str, connector: int = 1) -> Any:
        """One key of ``picharge sim status`` for ``connector`` (contactor_closed, ...)."""
        return self.app.sim.status()["connectors"][connector - 1][key]

    def mark(self) -> int:
        """Where the CSMS's record ends now: pass as ``after`` to wait for what follows."""
        return len(self.csms.received)

    def sent(self, action: str, after: int = 0) -> list[dict[str, Any]]:
        """The payloads of every ``action`` the CSMS received from ``after`` on."""
        return [r.payload for r in self.csms.received[after:] if r.action == action]

    async def status(
        self,
        status: str,
        after: int = 0,
        *,
        connector: int = 1,
        timeout_s: float = 10.0,
        **match: Any,
    ) -> dict[str, Any]:
        """The first StatusNotification from ``after`` on of ``connector`` in ``status``,
        with every ``match`` field equal (``errorCode="GroundFailure"``). Under 2.0.1 the
        connector is the EVSE (``evseId``) and the status its ``connectorStatus``."""
        return await self.csms.wait_for(
            "StatusNotification",
            lambda p: (
                p.get("evseId", p["connectorId"]) == connector
                and p.get("connectorStatus", p.get("status")) == status
                and all(p.get(k) == v for k, v in match.items())
            ),
            after=after,
            timeout_s=timeout_s,
        )

    async def plugged(self, connector: int = 1) -> None:
        """Plug a car in at ``connector`` and wait until the charger has seen it (its control
        pilot reads B): a connector whose status does not change (Reserved) says nothing."""
        await self.act("plug", connector=connector)
        supervisor = self.app.supervisor
        assert supervisor is not None
        machine = supervisor.connectors[connector].machine
        await until(lambda: machine.cp_state is CpState.B, what=f"a car at {connector} seen")

    async def charging(self) -> dict[str, Any]:
        """Plug in, tap the accepted card, and wait until the car draws its current; the
        StartTransaction payload."""
        await self.act("plug")
        await self.status("Preparing")
        await self.act("tap", uid=ACCEPTED_TAG)
        start = await self.csms.wait_for("StartTransaction")
        await self.status("Charging")
        await until(lambda: self.hw("ev_current_a") > 15.0)
        return start

    async def cp_call(self, payload: Any, **kwargs: Any) -> Any:
        """A call from the CSMS to this charge point."""
        return await self.csms.call(self.cp_id, payload, **kwargs)


R = TypeVar("R", bound=AppRig)


def _toml(value: Any) -> str:
    """As written (a string value must be quoted by the caller), booleans lowercase."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def write_keys(path: Path, keys: Mapping[str, Any]) -> Path:
    """An ``--ocpp-keys`` preset file at ``path`` (TOML, booleans lowercase); a value that
    is a mapping is a table (2.0.1: ``{"OCPPCommCtrlr": {"HeartbeatInterval": 2}}``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = [f"{k} = {_toml(v)}\n" for k, v in keys.items() if not isinstance(v, Mapping)]
    for table, values in keys.items():
        if isinstance(values, Mapping):
            flat.append(f"[{table}]\n")
            flat.extend(f"{k} = {_toml(v)}\n" for k, v in values.items())
    path.write_text("".join(flat))
    return path


@contextlib.asynccontextmanager
async def controller(
    csms: LocalCsms,
    workdir: Path,
    keys: Mapping[str, Any] | None = None,
    *,
    base_keys: Mapping[str, Any] = FAST_KEYS,
    connectors: int = 1,
    speed: float = 30.0,
    cp_id: str = CP_ID,
    ocpp: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
    before_run: Callable[[ChargePointApp], Awaitable[None]] | None = None,
    ready_status: str | None = "Available",
    wait_ready: bool = True,
    crash: bool = False,
    rig_type: type[R] = AppRig,  # type: ignore[assignment]
    web: str | None = None,
    sim_firmware: bool = True,
) -> AsyncIterator[R]:
    """The controller on simulated hardware (EV time x ``speed``) against ``csms``.

    ``keys`` override ``base_keys`` (written to ``workdir/keys.toml`` as the preset);
    ``ocpp`` adds keys to the ``[ocpp]`` section and ``config`` other sections; the state
    lives in ``state_dir`` (default ``workdir/state``). ``before_run`` sees the started app
    before it runs. Unless ``wait_ready`` is false, the rig is handed over once connector 1
    reported ``ready_status`` (None: any status) after boot. ``crash`` ends the run task by
    cancelling it (no shutdown, no StopTransaction) instead of asking it to stop.
    ``rig_type`` may add a test file's own helpers; ``web`` HOST:PORT runs the web page.
    ``sim_firmware=False`` installs firmware for real (pip) instead of simulating the install
    step as ``--sim`` does."""
    version = (ocpp or {}).get("version", "1.6")
    if version == "2.0.1" and base_keys is FAST_KEYS:
        base_keys = FAST_VARIABLES_201
    key_file = write_keys(workdir / "keys.toml", {**base_keys, **(keys or {})})
    doc: dict[str, Any] = {
        "chargepoint": {"id": cp_id},
        "ocpp": {"url": csms.url, **(ocpp or {})},
        **(config or {}),
    }
    app = ChargePointApp(
        dataclasses.replace(parse_config(doc), state_dir=state_dir or workdir / "state"),
        RunOptions(
            sim=True,
            web=web,
            sim_speed=speed,
            ocpp_keys=key_file,
            sim_connectors=connectors,
            sim_firmware=sim_firmware,
        ),
    )
    stop = asyncio.Event()
    mark = len(csms.received)
    await app.start()
    try:
        if before_run is not None:
            await before_run(app)
        task = asyncio.create_task(app.run(stop))
        try:
            rig = rig_type(app, csms, task, cp_id)
            if wait_ready:
                await csms.wait_for(
                    "StatusNotification",
                    lambda p: (
                        p.get("connectorId", p.get("evseId")) == 1
                        and ready_status in (None, p.get("status", p.get("connectorStatus")))
                    ),
                    after=mark,
                )
            yield rig
        finally:
            if crash:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            else:
                stop.set()
                await asyncio.wait_for(task, 10)
    finally:
        await app.close()
