"""The charge point as one object: storage, hardware, supervisor and CSMS link, composed.

``picharge run`` and ``picharge demo`` both build a :class:`ChargePointApp`; tests do too.
Composition happens here and only here: with ``sim`` set, the hardware comes from
:mod:`controller.sim_root`; with an OCPP URL, the link is the adapter
:mod:`controller.csms.registry` holds for the configured OCPP version; without one, the
charger runs standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import run_marker
from controller.availability import AvailabilityStore, load_inoperative
from controller.card_store import CardStore
from controller.config import Config, ConfigError
from controller.connector_types import ConnectorSettings, StopReason
from controller.csms import registry as csms_registry
from controller.csms.adapter import AdapterContext, CsmsAdapter
from controller.domain import ResetKind
from controller.energy.setup import LocalEnergy, build_local_energy
from controller.hardware import Hardware, build_hardware, log_event
from controller.logging_setup import (
    LOGS_DIR,
    add_log_file,
    remove_log_file,
    under_systemd,
)
from controller.outbox import Outbox
from controller.recovery import Durability, StateProblem, open_state, start_durability
from controller.service import (
    METER_STALL_S,
    SUPERVISOR_STALL_S,
    Heartbeats,
    ServiceNotifier,
    run_status,
    run_watchdog,
    status_text,
)
from controller.sim_client import parse_host_port
from controller.standalone import StandaloneLink
from controller.state_dir import make_private
from controller.storage import Storage, StorageError
from controller.supervisor import Supervisor
from controller.user_limits import UserLimits
from drivers.errors import ConfigurationError
from drivers.seams import HardwareSeams

log = logging.getLogger(__name__)

#: The longest a thread that wants the GIL waits while another runs Python (CPython's
#: default is 5 ms). The safety threads (CP sampler, GPIO edges, loop watchdog) need it for
#: a few microseconds after each conversion or edge; with the loop busy (a CSMS's burst of
#: frames) each of those could wait the whole interval, and C -> B needs about three
#: conversions. 0.25 ms took a flood's C -> B from 5.5 to 4.1 ms p99 (1 ms before;
#: docs/benchmarks.md, "The GIL switch interval at 0.25 ms").
GIL_SWITCH_INTERVAL_S = 0.00025

SHUTDOWN_FLUSH_S = 3.0  # how long a stop waits for the last transaction messages to go out


@dataclass(frozen=True)
class RunOptions:
    sim: bool = False
    sim_connectors: int = 1
    sim_cable: str = "socket"  # the simulated connectors: "socket" (with a lock) or "tethered"
    sim_speed: float = 1.0
    sim_house: str | None = None  # a built-in day (sunny, cloudy, winter) or a CSV file
    sim_house_start_s: float = 0.0  # the simulated time of day the house starts at
    sim_control: str | None = None  # HOST:PORT for `picharge sim`, None = no endpoint
    sim_control_allow_remote: bool = False  # listen beyond loopback (anyone there may drive it)
    ocpp_keys: Path | None = None
    #: HOST:PORT of the local web page and API (port 0: any free one), None = no page.
    #: ``picharge run`` passes ``--web`` or ``[web] listen``; tests leave it off.
    web: str | None = None
    #: With ``sim``: the firmware install step is simulated (controller.firmware_sim); False
    #: installs for real with pip, as the installer's own end-to-end tests want.
    sim_firmware: bool = True


class ChargePointApp:
    """Start with :meth:`start`, run with :meth:`run`, always finish with :meth:`close`."""

    def __init__(self, config: Config, options: RunOptions) -> None:
        self.config = config
        self.options = options
        self.storage: Storage | None = None
        self.hardware: Hardware | None = None
        self.supervisor: Supervisor | None = None
        self.adapter: CsmsAdapter | None = None
        self.sim: Any = None
        self.control_address: tuple[str, int] | None = None
        self._control: Any = None
        self.state_problem: StateProblem | None = None
        #: How the previous run ended (controller.run_marker), known once started.
        self.last_run = run_marker.LastRun.FIRST
        self.durability: Durability | None = None
        self.energy: LocalEnergy | None = None
        self.notifier = ServiceNotifier()
        self.heartbeats = Heartbeats()
        self._log_file: logging.Handler | None = None
        self.mqtt: Any = None  # controller.mqtt.bridge.MqttBridge with [mqtt] url set
        self.web: Any = None  # controller.web.server.WebServer, imported only when enabled
        self._storage_broken = False  # `picharge sim fault storage` (see _sim_storage_fault)

    async def start(self) -> None:
        config = self.config
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        csms_registry.require(config.ocpp_version)  # before anything opens: exit 2 at once
        await self._check_control_address()
        try:  # the service user's alone, whatever the umask (controller.state_dir)
            await asyncio.to_thread(make_private, config.state_dir)
        except OSError as exc:  # open_state reports an unusable state directory
            log.error("state directory %s: %s", config.state_dir, exc)
        # A corrupt database is moved aside, an unusable one replaced by memory (and
        # InternalError): see controller.recovery.
        self.storage, self.state_problem = await open_state(config.state_dir)
        self.last_run = await run_marker.begin(self.storage)  # before anything reads it
        if not under_systemd():  # under systemd the journal is the log (GetDiagnostics)
            try:
                self._log_file = add_log_file(config.state_dir / LOGS_DIR)
            except OSError as exc:  # an unusable state dir: run (Faulted), log to stderr only
                log.error("no log file in %s: %s", config.state_dir / LOGS_DIR, exc)
        try:
            if self.options.sim:
                from controller.sim_root import start_simulation

                self.sim, self.hardware, config = await start_simulation(
                    config,
                    config.state_dir,
                    connectors=self.options.sim_connectors,
                    cable=self.options.sim_cable,
                    speed=self.options.sim_speed,
                    house_day=self.options.sim_house,
                    house_start_s=self.options.sim_house_start_s,
                    on_event=log_event,
                )
                self.config = config
            else:
                self.hardware = build_hardware(config, HardwareSeams(), log_event)
        except ConfigurationError as exc:
            raise ConfigError(exc.key, exc.problem) from exc
        settings = {
            c.id: ConnectorSettings(
                max_current_a=c.max_current_a,
                free_charging_id=config.free_charging_id,
                cable_rating_required="tethered_cable_a" not in c.drivers,
                lock_required="lock_pin" in c.drivers,
            )
            for c in config.connectors
        }
        self.supervisor = Supervisor(
            self.hardware, settings, inoperative=await load_inoperative(self.storage)
        )
        self.supervisor.availability_store = AvailabilityStore(self.storage)
        self.supervisor.beat = self.heartbeats.beat
        if config.ocpp_url:
            await self._start_csms()
        else:
            if self.options.ocpp_keys is not None:
                log.warning("--ocpp-keys ignored: no CSMS configured (standalone mode)")
            self.supervisor.link = StandaloneLink(config.local_cards, CardStore(self.storage))
            log.info("standalone mode: no CSMS; %d card(s) allowed", len(config.local_cards))
        # Local energy management (issue 16): the grid meter and the main fuse.
        try:
            self.energy = build_local_energy(
                config, self.supervisor, self.supervisor.events, log_event, self.hardware
            )
        except ConfigurationError as exc:
            raise ConfigError(exc.key, exc.problem) from exc
        if self.energy is not None and self.energy.modes is not None:
            await self.energy.modes.restore(self.storage)  # the user's last choice of mode
        # The user's current limits (page, MQTT) hold across restarts.
        user_limits = UserLimits(self.storage, self.supervisor)
        await user_limits.restore()
        self.supervisor.events.subscribe("user-limits", user_limits.on_event)
        # Journal, power-loss recovery (interrupted transactions closed) and the watch.
        self.durability = await start_durability(
            self.storage,
            self.state_problem,
            self.supervisor,
            state_dir=config.state_dir,
            resync_link=None if self.adapter is None else self.adapter.resync,
            protocol=self._protocol,
            end_messages=csms_registry.END_MESSAGES,
        )
        await self._note_other_versions()
        if config.mqtt is not None:
            # Imported only when configured: aiomqtt and paho cost memory a charger
            # without MQTT need not pay (docs/benchmarks.md).
            from controller.mqtt.bridge import MqttBridge

            energy = self.energy
            self.mqtt = MqttBridge.from_config(
                config,
                self.supervisor,
                None if energy is None else energy.modes,
                grid=None if energy is None else energy.pushed("mqtt"),
            )
        if self.sim is not None and self.options.sim_control is not None:
            from controller.sim_root import ControlServer

            self._control = ControlServer(self._sim_request)
            self.control_address = await self._control.start(
                *parse_host_port(self.options.sim_control),
                allow_remote=self.options.sim_control_allow_remote,
            )
            log.info("simulation control on %s:%d", *self.control_address)
        if self.options.web:
            self._build_web(self.options.web)
        # What start-up built (modules, drivers, the machine: ~60,000 objects) lives as long
        # as the process. Left to the cyclic collector, every full collection walks all of it
        # holding the GIL (about 15-30 ms here, longer on a Pi), and the CP sampler waits
        # that long to drop a coil (docs/benchmarks.md, "Safety reaction under stress").
        # Frozen, it is never walked again; close() gives it back.
        gc.collect()
        gc.freeze()

    @property
    def _protocol(self) -> str | None:
        """The OCPP version this run speaks (None: standalone, no CSMS)."""
        return self.config.ocpp_version if self.config.ocpp_url else None

    async def _note_other_versions(self) -> None:
        """Transaction messages another OCPP version queued wait untouched for that version
        (controller.outbox): say so once at start, and show the count in the snapshot."""
        assert self.storage is not None and self.supervisor is not None
        try:
            waiting = await Outbox(self.storage, protocol=self._protocol or "").waiting_elsewhere()
        except StorageError as exc:
            log.error("outbox unreadable: messages of other OCPP versions not counted: %s", exc)
            return
        self.supervisor.outbox_other_versions = waiting
        for version, count in waiting.items():
            log.warning(
                "%d transaction message(s) queued under OCPP %s wait in the outbox: they are "
                "sent when this charger runs OCPP %s again; to bill them by hand, "
                "`picharge outbox --state-dir %s --export FILE`",
                count,
                version,
                version,
                self.config.state_dir,
            )

    def _build_web(self, listen: str) -> None:
        """The page is an edge: imported only when enabled (its library costs memory)."""
        from controller.web.server import WebServer

        assert self.supervisor is not None and self.storage is not None
        link = self.supervisor.link
        self.web = WebServer(
            self.supervisor,
            listen=listen,
            state_dir=self.config.state_dir,
            db_path=self.storage.path,
            public_status=self.config.web_public_status,
            id_tag=self.config.web_id_tag,
            configured_cards={
                card: self.config.card_names.get(card.upper(), "")
                for card in self.config.local_cards
            },
            store=CardStore(self.storage) if isinstance(link, StandaloneLink) else None,
            energy=None if self.energy is None else self.energy.modes,
            # The grid feed when its readings come from outside (``source = "push"``): the
            # page's API then takes them.
            grid=None if self.energy is None else self.energy.pushed("push"),
        )

    async def _check_control_address(self) -> None:
        """The simulation's control endpoint stays on loopback unless explicitly allowed:
        refused (exit 2) before anything starts."""
        if not self.options.sim or self.options.sim_control is None:
            return
        if self.options.sim_control_allow_remote:
            log.warning(
                "simulation control on %s: reachable beyond loopback", self.options.sim_control
            )
            return
        from controller.sim_root import RemoteControlRefused, loopback_only

        host, _ = parse_host_port(self.options.sim_control)
        try:
            await loopback_only(host)
        except RemoteControlRefused as exc:
            raise ConfigError("--sim-control", str(exc)) from None

    async def _start_csms(self) -> None:
        assert self.storage is not None and self.supervisor is not None
        installer = None
        if self.sim is not None and self.options.sim_firmware:  # checks run, install simulated
            from controller.firmware_install import FIRMWARE_DIR
            from controller.firmware_sim import SimulatedInstaller

            sim = self.sim
            installer = SimulatedInstaller(
                self.config.state_dir / FIRMWARE_DIR, failing=lambda: bool(sim.firmware_fault)
            )
        context = AdapterContext(
            config=self.config,
            storage=self.storage,
            control=self.supervisor,
            keys_preset=self.options.ocpp_keys,
            firmware_installer=installer,
        )
        adapter = await csms_registry.create(self.config.ocpp_version, context)
        self.adapter = adapter
        self.supervisor.link = adapter
        self.supervisor.link_state = lambda: str(adapter.state)

    async def run(self, stop: asyncio.Event) -> ResetKind | None:
        """Run until ``stop`` is set or the CSMS asks for a reset; returns that reset."""
        assert self.supervisor is not None
        supervisor = self.supervisor
        tasks = [asyncio.create_task(supervisor.run(), name="supervisor")]
        if self.adapter is not None:
            tasks.append(asyncio.create_task(self.adapter.run(), name="ocpp"))
        if self.durability is not None:
            tasks.append(asyncio.create_task(self.durability.run(), name="durability"))
        if self.mqtt is not None:  # an edge: it restarts itself after any failure
            tasks.append(asyncio.create_task(self.mqtt.run(), name="mqtt"))
        if self.web is not None:  # never ends on its own: it restarts itself after a failure
            tasks.append(asyncio.create_task(self.web.run(), name="web"))
        if self.energy is not None:
            tasks.extend(self.energy.start())
        self.heartbeats.expect("supervisor", SUPERVISOR_STALL_S)
        for connector_id in supervisor.connector_ids:
            self.heartbeats.expect(f"meter-{connector_id}", METER_STALL_S)
        tasks.append(
            asyncio.create_task(
                run_watchdog(self.notifier, self.heartbeats.healthy), name="watchdog"
            )
        )
        tasks.append(
            asyncio.create_task(run_status(self.notifier, self.status_line), name="status")
        )
        self.notifier.ready(self.status_line())
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                self.notifier.stopping()
                await supervisor.shutdown(StopReason.REBOOT)
            await self._flush()
        finally:
            supervisor.hardware.open_all_contactors()
            for task in [*tasks, stopper]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        assert self.storage is not None
        await run_marker.end(self.storage)  # a stop or a reset: ended on purpose
        return supervisor.restart_requested

    def status_line(self) -> str:
        """What ``systemctl status`` shows: the link, then each connector."""
        assert self.supervisor is not None
        return status_text(self.supervisor.snapshot())

    async def _flush(self) -> None:
        """Let the link send what the shutdown produced (StopTransaction), briefly."""
        if self.adapter is not None and not await self.adapter.flush(SHUTDOWN_FLUSH_S):
            log.warning("transaction messages still unsent at shutdown")

    async def _sim_request(self, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.sim.handle(request)
        if request["action"] == "fault" and request.get("fault") in ("storage", "clear"):
            await self._sim_storage_fault(request["fault"] == "storage")
        if request["action"] == "status":
            # The simulated hardware's view (what the car, contactor and meter physically
            # do) completed with the controller's snapshot; where both name a key
            # (cp_state, contactor_closed, offered_current_a) the hardware's stays.
            assert self.supervisor is not None
            snapshot = self.supervisor.snapshot()
            for entry in answer["connectors"]:
                entry.update(
                    (key, value)
                    for key, value in snapshot.connector(entry["id"]).to_json().items()
                    if key not in entry
                )
            answer["csms_link"] = snapshot.csms_link
            answer["outbox_other_versions"] = dict(snapshot.outbox_other_versions)
        return answer

    async def _sim_storage_fault(self, broken: bool) -> None:
        """``sim fault storage``: the state database refuses every write (SQLite's
        ``query_only``, which fails writes as a read-only file would) until ``sim fault
        clear``; the durability watch faults every connector (InternalError) and, probing
        every 10 s, clears it once writes work again. The simulator owns no database, so the
        controller's side plays this one."""
        if self.storage is None or broken == self._storage_broken:
            return
        self._storage_broken = broken
        pragma = f"PRAGMA query_only = {int(broken)}"
        await self.storage.run(lambda conn: conn.execute(pragma))
        log.warning("simulated storage fault %s", "injected" if broken else "cleared")
        if broken:  # an idle charger writes nothing: write once now, as the next write would
            with contextlib.suppress(StorageError):  # noticed by the durability watch
                await self.storage.save_setting("sim", "storage-fault", "injected")

    async def close(self) -> None:
        """Release everything, contactors open first; safe to call after a failed start."""
        gc.unfreeze()  # start()'s objects may be collected again (tests start many apps)
        if self.hardware is not None:
            self.hardware.open_all_contactors()
            await self.hardware.close()
        if self._control is not None:
            await self._control.stop()
        if self.web is not None:
            await self.web.close()
        if self.sim is not None:
            await self.sim.stop()
        if self.storage is not None:
            await self.storage.close()
        if self._log_file is not None:
            remove_log_file(self._log_file)
            self._log_file = None


@contextlib.asynccontextmanager
async def running(app: ChargePointApp, stop_timeout_s: float = 10.0) -> AsyncIterator[None]:
    """``app`` started and running until the block ends, then stopped (its last messages
    given ``stop_timeout_s`` to go out) and closed, also when the start failed: for the
    benches and tests that hold a charger in their own process. ``picharge run`` has its
    own loop (controller.runner: resets restart it)."""
    stop = asyncio.Event()
    try:
        await app.start()
        task = asyncio.create_task(app.run(stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, stop_timeout_s)
    finally:
        await app.close()
