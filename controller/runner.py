"""``picharge run``: compose the hardware (real or simulated) and run until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
from typing import Any

from controller.config import DEFAULT_CONFIG_PATH, Config, load_config
from controller.hardware import Hardware, build_hardware
from controller.monitor import HardwareMonitor, log_event
from controller.sim_client import parse_host_port
from drivers.errors import ConfigurationError
from drivers.seams import HardwareSeams

log = logging.getLogger(__name__)


def effective_config(args: argparse.Namespace) -> Config:
    """The configuration file (none needed with --sim) with the command line's overrides."""
    path = args.config if args.config is not None else (None if args.sim else DEFAULT_CONFIG_PATH)
    config = load_config(path)
    changes: dict[str, Any] = {}
    if args.chargepoint_id:
        changes["chargepoint_id"] = args.chargepoint_id
    if args.csms:
        changes["ocpp_url"] = args.csms
    if args.ocpp:
        changes["ocpp_version"] = args.ocpp
    if args.state_dir is not None:
        changes["state_dir"] = args.state_dir
    return dataclasses.replace(config, **changes)


async def run_controller(args: argparse.Namespace) -> int:
    config = effective_config(args)
    sim = control = None
    try:
        if args.sim:
            from controller.sim_root import ControlServer, start_simulation

            sim, hardware, config = await start_simulation(
                config,
                config.state_dir,
                connectors=args.sim_connectors,
                speed=args.sim_speed,
                on_event=log_event,
            )
        else:
            hardware = build_hardware(config, HardwareSeams(), log_event)
    except ConfigurationError as exc:
        from controller.config import ConfigError

        raise ConfigError(exc.key, exc.problem) from exc
    monitor = HardwareMonitor(hardware, log_event)
    try:
        if sim is not None:

            async def handle(request: dict[str, Any]) -> dict[str, Any]:
                answer = await sim.handle(request)
                if request["action"] == "status":
                    answer.update(monitor.status())
                return answer

            control = ControlServer(handle)
            host, port = await control.start(*parse_host_port(args.sim_control))
            log.info("simulation control on %s:%d (picharge sim --control ...)", host, port)
        await _run_until_signalled(monitor, hardware)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    finally:
        await hardware.close()
        if control is not None:
            await control.stop()
        if sim is not None:
            await sim.stop()
    return 0


async def _run_until_signalled(monitor: HardwareMonitor, hardware: Hardware) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(monitor.run(), name="hardware-monitor")
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hardware.open_all_contactors()
        for t in (task, waiter):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
