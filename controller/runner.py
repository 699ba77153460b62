"""``picharge run``: build the charge point from configuration and flags, run until stopped.

SIGTERM and SIGINT stop every running transaction (reason Reboot: the controller is going
down), open every contactor and exit 0. A CSMS Reset ends the run too; the CLI then starts
the controller again in a fresh process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
from typing import Any

from controller.app import ChargePointApp, RunOptions
from controller.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    check_chargepoint_id,
    load_config,
)
from controller.domain import ResetKind

log = logging.getLogger(__name__)


def effective_config(args: argparse.Namespace) -> Config:
    """The configuration file (none needed with --sim) with the command line's overrides."""
    path = args.config if args.config is not None else (None if args.sim else DEFAULT_CONFIG_PATH)
    config = load_config(path)
    changes: dict[str, Any] = {}
    if args.chargepoint_id is not None:
        changes["chargepoint_id"] = check_chargepoint_id(args.chargepoint_id, "--id")
    if args.csms:
        changes["ocpp_url"] = args.csms
    if args.ocpp:
        changes["ocpp_version"] = args.ocpp
    if args.state_dir is not None:
        changes["state_dir"] = args.state_dir
    if args.csms and not args.csms.startswith(("ws://", "wss://")):
        raise ConfigError("--csms", f"must start with ws:// or wss://, got {args.csms!r}")
    return dataclasses.replace(config, **changes)


async def _announce(app: ChargePointApp) -> None:
    """Tell whoever started the controller where its page is (the URL, once listening)."""
    await app.web.started.wait()
    print(f"picharge: web page on {app.web.url}", flush=True)
    if not app.web.logins.password_set():
        state_dir = app.config.state_dir
        print(
            f"picharge: to log in, set a password: picharge web-password --state-dir {state_dir}",
            flush=True,
        )


#: What only the installation decides (the breaker, the cable, the supply): on real hardware
#: these must be written in every ``[[connector]]``, never taken from the parser's defaults
#: (32 A on three phases would overload a 16 A single-phase circuit).
SITE_KEYS = ("max_current_a", "phases")


def require_site_ratings(config: Config) -> None:
    """Raise :class:`ConfigError` when a connector leaves a :data:`SITE_KEYS` key unset."""
    raw = config.raw.get("connector", [{}])
    tables = raw if isinstance(raw, list) else [{}]
    for index, table in enumerate(tables, start=1):
        for key in SITE_KEYS:
            if not isinstance(table, dict) or key not in table:
                raise ConfigError(
                    f"connector.{index}.{key}",
                    "must be set on real hardware: the circuit breaker, the cable and the "
                    "supply decide it (there is no safe default)",
                )


async def run_controller(args: argparse.Namespace) -> tuple[int, ResetKind | None]:
    """Run; returns (exit code, the reset the CSMS asked for, if any).

    The simulated charger runs with ``--sim`` or ``[hardware] backend = "sim"``.
    """
    config = effective_config(args)
    sim = args.sim or config.backend == "sim"
    if not sim:
        require_site_ratings(config)
    options = RunOptions(
        sim=sim,
        sim_connectors=args.sim_connectors,
        sim_cable=args.sim_cable,
        sim_speed=args.sim_speed,
        sim_house=args.sim_house,
        sim_house_start_s=args.sim_house_start,
        sim_control=args.sim_control if sim else None,
        sim_control_allow_remote=args.sim_control_allow_remote,
        ocpp_keys=args.ocpp_keys,
    )
    web = config.web_listen if getattr(args, "web", None) is None else args.web
    options = dataclasses.replace(options, web=web or None)
    if sim and not config.raw.get("web"):
        # A simulation on loopback shows its status without a password, so a newcomer's
        # first `picharge run --sim` shows the session at once; acting still needs a login.
        config = dataclasses.replace(config, web_public_status=True)
    app = ChargePointApp(config, options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        if app.web is not None:
            asyncio.get_running_loop().create_task(_announce(app), name="web-url")
        reset = await app.run(stop)
    except OSError as exc:
        log.error("cannot run: %s", exc)
        return 1, None
    finally:
        await app.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0, reset
