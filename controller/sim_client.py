"""The client side of `picharge sim`: one JSON request line to a running `--sim` controller.

Kept free of hw_sim imports on purpose: the control endpoint is a wire protocol, so the
CLI (and any test pipeline) can drive a simulation running in another process.
"""

from __future__ import annotations

import json
import socket
from typing import Any

DEFAULT_CONTROL = "127.0.0.1:8181"
#: Connectors a `--sim` run can have: the simulated Pi header has pins for four (see
#: hw_sim.charger.SIM_CONNECTOR_DEFAULTS, which a test keeps equal to this). Here so the CLI
#: checks ``--sim-connectors`` without importing the simulation.
MAX_SIM_CONNECTORS = 4


class SimControlError(Exception):
    """The simulation could not be reached or refused the request."""


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def send(control: str, request: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Send one request and return the answer; raises :class:`SimControlError`."""
    host, port = parse_host_port(control)
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(json.dumps(request).encode() + b"\n")
            with sock.makefile("rb") as stream:
                line = stream.readline()
    except OSError as exc:
        raise SimControlError(
            f"cannot reach a running simulation at {control}: {exc} "
            "(start one with `picharge run --sim`)"
        ) from exc
    if not line:
        raise SimControlError(f"the simulation at {control} closed the connection")
    answer: dict[str, Any] = json.loads(line)
    if not answer.get("ok"):
        raise SimControlError(str(answer.get("error", "request refused")))
    return answer
