"""The `picharge` command line: run, sim, demo, check-hw.

Exit codes are a contract (see ../shared/design.md): 0 success, 2 bad usage or
configuration (the message names the key or flag), 1 a failure while running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.config import DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, ConfigError
from controller.logging_setup import configure_logging
from controller.sim_client import (
    DEFAULT_CONTROL,
    MAX_SIM_CONNECTORS,
    SimControlError,
    parse_host_port,
    send,
)
from controller.state_dir import use_private_umask
from drivers.threads import on_named_loop

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: The faults `picharge sim fault` can inject (hw_sim.charger.FAULTS; not imported from
#: there: the sim client must not load the simulator).
FAULTS = (
    "rcd",
    "rcd-selftest",
    "weld",
    "close-fail",
    "meter",
    "meter-garbage",
    "cp",
    "diode",
    "overtemp",
    "lock",
    "undervoltage",
    "overvoltage",
    "storage",
    "firmware",
    "phase-weld",
    "phase-close-fail",
    "clear",
)


def _three_powers(text: str) -> list[float]:
    values = [float(part) for part in text.split(",")]
    if len(values) != 3 or any(v < 0 for v in values):
        raise ValueError(text)
    return values


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _connector_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_SIM_CONNECTORS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_SIM_CONNECTORS}, got {text}")
    return value


def _connector_id(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a connector id from 1, got {text}")
    return value


def _time_of_day(value: str) -> float:
    """``HH:MM`` as seconds since midnight."""
    hours, sep, minutes = value.partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        raise argparse.ArgumentTypeError(f"expected HH:MM, got {value!r}")
    if int(hours) > 23 or int(minutes) > 59:
        raise argparse.ArgumentTypeError(f"no such time of day {value!r}")
    return float(int(hours) * 3600 + int(minutes) * 60)


def _host_port(text: str) -> str:
    try:
        parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _listen(text: str) -> str:
    if not text:
        return text
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f'expected HOST:PORT or "", got {text!r}')
    return text


def _web_password(args: argparse.Namespace) -> int:
    """Hash a new password into the state directory (``deploy/install.sh`` pipes one in)."""
    import getpass

    from controller.config import load_config
    from controller.web import passwords

    if args.state_dir is not None:
        state_dir = args.state_dir
    else:
        state_dir = load_config(args.config or DEFAULT_CONFIG_PATH).state_dir
    if sys.stdin.isatty():
        password = getpass.getpass("new web password: ")
        if getpass.getpass("again: ") != password:
            print("picharge web-password: the two entries differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        path = passwords.save(state_dir, password)
    except ValueError as exc:
        print(f"picharge web-password: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"picharge web-password: cannot write in {state_dir}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"web password saved in {path}")
    return EXIT_OK


def _sim_options(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """``--control`` and ``--connector``, accepted before and after the action.

    The ``sim`` parser holds the defaults; each action's parser takes the same options with
    ``SUPPRESS`` defaults, so an option given before the action is not overwritten by the
    action parser's default when it is not repeated after it.
    """
    parser.add_argument(
        "--control",
        type=_host_port,
        default=DEFAULT_CONTROL if default else argparse.SUPPRESS,
        help=f"HOST:PORT of the running simulation (default {DEFAULT_CONTROL})",
    )
    parser.add_argument(
        "--connector",
        type=_connector_id,
        default=1 if default else argparse.SUPPRESS,
        help="connector the action is for (default 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="picharge", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the charge point controller")
    run.add_argument(
        "--config", type=Path, help=f"TOML configuration (default {DEFAULT_CONFIG_PATH})"
    )
    run.add_argument("--sim", action="store_true", help="use simulated hardware (hw_sim)")
    run.add_argument("--csms", help="CSMS websocket URL; the charge point id is appended")
    run.add_argument("--id", dest="chargepoint_id", help="charge point id")
    run.add_argument("--ocpp", choices=("1.6", "2.0.1"), help="OCPP version")
    run.add_argument("--state-dir", type=Path, help="where the SQLite state lives")
    run.add_argument("--sim-control", type=_host_port, default=DEFAULT_CONTROL)
    run.add_argument(
        "--sim-house",
        metavar="FILE|sunny|cloudy|winter",
        help="the simulated house's day of load and PV: a CSV (time,load_w,pv_w) or built in",
    )
    run.add_argument(
        "--sim-house-start",
        type=_time_of_day,
        default=0.0,
        metavar="HH:MM",
        help="the time of day the simulated house starts at (default 00:00)",
    )
    run.add_argument(
        "--sim-control-allow-remote",
        action="store_true",
        help="let --sim-control listen beyond loopback (whoever reaches it drives the charger)",
    )
    run.add_argument("--sim-speed", type=_positive_float, default=1.0)
    run.add_argument("--sim-connectors", type=_connector_count, default=1)
    run.add_argument(
        "--sim-cable",
        choices=("socket", "tethered"),
        default="socket",
        help="the simulated connectors: a Type 2 socket with a lock (default) or a fixed cable",
    )
    run.add_argument("--ocpp-keys", type=Path, help="TOML table of OCPP keys preset at first boot")
    run.add_argument(
        "--web",
        type=_listen,
        help='HOST:PORT of the web page and API (overrides [web] listen; "" turns it off)',
    )

    sim = commands.add_parser("sim", help="drive a running --sim controller")
    _sim_options(sim, default=True)
    actions = sim.add_subparsers(dest="action", required=True)
    for name, text in (
        ("plug", "plug the car in (state B)"),
        ("unplug", "unplug the car (state A)"),
        ("charge", "the car asks for energy (state C)"),
        ("pause", "the car stops asking (state B)"),
        ("status", "print the simulation's state as JSON"),
        ("power-fail", "the UPS HAT warns the supply failed (`sim fault clear` restores it)"),
    ):
        _sim_options(actions.add_parser(name, help=text), default=False)
    tap = actions.add_parser("tap", help="present a card to the reader")
    tap.add_argument("uid", help="card UID in hex (PN532: 4, 7 or 10 bytes; RDM6300: 5)")
    _sim_options(tap, default=False)
    fault = actions.add_parser("fault", help="inject or clear a hardware fault")
    fault.add_argument("fault", choices=FAULTS)
    _sim_options(fault, default=False)
    house = actions.add_parser("house", help="the simulated house behind the grid meter")
    house.add_argument("--load", type=float, help="the house's own load (W)")
    house.add_argument("--pv", type=float, help="what the PV produces (W)")
    house.add_argument(
        "--phase-load",
        type=_three_powers,
        help="loads on single phases on top of --load, W on L1,L2,L3 (e.g. 0,3000,3000)",
    )
    house.add_argument(
        "--meter-fault",
        choices=("offline", "garbage", "none"),
        help="make the grid meter silent or garbled, or well again",
    )
    _sim_options(house, default=False)

    demo = commands.add_parser("demo", help="a full charging session on simulated hardware")
    demo.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6", help="OCPP version")

    password = commands.add_parser(
        "web-password",
        help="set the web page's password (read from the terminal, or one line of stdin)",
    )
    password.add_argument(
        "--config", type=Path, help=f"TOML configuration (default {DEFAULT_CONFIG_PATH})"
    )
    password.add_argument("--state-dir", type=Path, help="where the password file goes")

    outbox = commands.add_parser(
        "outbox",
        help="list the transaction messages not yet delivered (read-only; safe while running)",
    )
    outbox.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the SQLite state lives"
    )
    outbox.add_argument(
        "--export",
        type=Path,
        metavar="FILE",
        help="write them as JSON lines to FILE ('-': stdout) for billing by hand",
    )

    check_hw = commands.add_parser(
        "check-hw",
        help="wiring self-test: meter, CP, contactor, RCM, card (stop the service first)",
    )
    check_hw.add_argument(
        "--config", type=Path, help=f"TOML configuration (default {DEFAULT_CONFIG_PATH})"
    )
    check_hw.add_argument(
        "--card-timeout",
        type=_positive_float,
        default=20.0,
        help="seconds to wait for a card (default 20)",
    )
    check_hw.add_argument(
        "--tester-timeout",
        type=_non_negative_float,
        default=60.0,
        help="seconds to wait for an EV tester for the PP and diode steps (default 60; 0 skips)",
    )
    check_hw.add_argument(
        "--led-hold",
        type=_non_negative_float,
        default=3.0,
        help="seconds each LED pattern is shown (default 3)",
    )
    check_hw.add_argument(
        "--calibrate",
        action="store_true",
        help="measure the CP levels (+12 V, -12 V) with nothing plugged in and write "
        "cp_adc_gain/cp_adc_offset_v into the --config file",
    )
    check_hw.add_argument(
        "--sim",
        action="store_true",
        help="check the simulated charger (hw_sim) instead of the Pi's pins, to try check-hw",
    )
    check_hw.add_argument(
        "--sim-control",
        type=_host_port,
        default=DEFAULT_CONTROL,
        help=f"with --sim: where `picharge sim` plugs the tester and taps cards "
        f"(default {DEFAULT_CONTROL})",
    )
    return parser


def _sim_command(args: argparse.Namespace) -> int:
    request: dict[str, object] = {"action": args.action, "connector": args.connector}
    if args.action == "tap":
        request["uid"] = args.uid
    elif args.action == "fault":
        request["fault"] = args.fault
    elif args.action == "house":
        for key, value in (
            ("load_w", args.load),
            ("pv_w", args.pv),
            ("phase_load_w", args.phase_load),
            ("meter_fault", args.meter_fault),
        ):
            if value is not None:
                request[key] = value
    try:
        answer = send(args.control, request)
    except SimControlError as exc:
        print(f"picharge sim: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    answer.pop("ok", None)
    if args.action in ("status", "house"):
        print(json.dumps(answer, indent=2))
    return EXIT_OK


def _restart(argv: Sequence[str] | None) -> None:
    """A CSMS Reset: start the controller again in a fresh process with the same arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.getLogger(__name__).warning("reset requested by the CSMS: restarting")
    from controller.service import ServiceNotifier

    ServiceNotifier().before_restart()  # systemd: stretch the watchdog over the restart
    os.execv(sys.executable, [sys.executable, "-m", "controller.cli", *args])


def _outbox_command(args: argparse.Namespace) -> int:
    """``picharge outbox``: every message still in the outbox, with the OCPP version that
    queued it (one a line), or ``--export``: as JSON lines. Reads only (controller.outbox)."""
    import sqlite3

    from controller.outbox import export_rows

    try:
        rows = export_rows(args.state_dir)
    except sqlite3.Error as exc:
        print(f"picharge: cannot read the outbox of {args.state_dir}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    lines = [json.dumps(row, separators=(",", ":")) + "\n" for row in rows]
    if args.export is not None:
        if str(args.export) == "-":
            sys.stdout.writelines(lines)
            return EXIT_OK
        args.export.write_text("".join(lines))
        print(f"{len(rows)} message(s) written to {args.export}")
        return EXIT_OK
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["protocol"]] = counts.get(row["protocol"], 0) + 1
        body = row["body"] if isinstance(row["body"], dict) else {}
        print(
            f"{row['seq']:>8} OCPP {row['protocol']:<5} {row['kind']:<17} "
            f"transaction {row['transaction']} {body.get('timestamp', '')}"
        )
    summary = ", ".join(f"{n} under OCPP {v}" for v, n in sorted(counts.items())) or "empty"
    print(f"outbox: {summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, quiet=args.command in ("demo", "check-hw"))
    if args.command == "sim":
        return _sim_command(args)
    try:
        if args.command == "run":
            from controller.runner import run_controller

            use_private_umask()  # the state directory's files: the service user's alone
            code, reset = asyncio.run(on_named_loop(run_controller(args)))
            if reset is not None:
                _restart(argv)
            return code
        if args.command == "outbox":
            return _outbox_command(args)
        if args.command == "web-password":
            return _web_password(args)
        if args.command == "check-hw":
            from controller.check_hw import main as check_hw

            return check_hw(args)
        from controller.demo import run_demo

        return asyncio.run(on_named_loop(run_demo(version=args.ocpp)))
    except ConfigError as exc:  # one line, whatever the file held
        print(f"picharge: configuration error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
