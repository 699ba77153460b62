"""The commands MQTT may give, parsed and checked before anything reaches the supervisor.

``<prefix>/connector/<n>/set/current_limit``: a current in A from 0 to the connector's
maximum (below 6 A the car is paused), or ``none`` / an empty payload to clear the user's
limit. ``<prefix>/connector/<n>/set/enabled``: ``ON`` / ``OFF`` (also ``true``/``false``,
``1``/``0``, any case). ``<prefix>/connector/<n>/set/mode``: a charging mode's name
(``fast``, ``solar``, ``min_solar``, ``schedule``). ``<prefix>/connector/<n>/set/<threshold>``
(``start_delay_s``, ..., ``off_peak``, ``departure``, ``energy_kwh``): the threshold's new
value, checked as the configuration's (:func:`controller.energy.thresholds.check`), or
``reset`` for the configured one. Anything else is a :class:`BadCommand`: the bridge logs
it and ignores it. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.energy.modes import Mode
from controller.energy.thresholds import KEYS as THRESHOLD_KEYS
from controller.energy.thresholds import TEXT_KEYS, Value, check
from drivers.errors import ConfigurationError

_CLEAR = ("", "none", "null", "clear")
_ON = ("on", "true", "1")
_OFF = ("off", "false", "0")
#: The payload that gives a threshold back to the configuration.
RESET = "reset"
#: A payload longer than this is not a command of ours (and is not echoed into the log).
MAX_PAYLOAD = 32


class BadCommand(ValueError):
    """A command payload that is not valid; the message says why (for the log)."""


@dataclass(frozen=True, slots=True)
class SetCurrentLimit:
    connector_id: int
    current_a: float | None  # None clears the user's limit


@dataclass(frozen=True, slots=True)
class SetEnabled:
    connector_id: int
    enabled: bool


@dataclass(frozen=True, slots=True)
class SetMode:
    connector_id: int
    mode: Mode


@dataclass(frozen=True, slots=True)
class SetThreshold:
    connector_id: int
    key: str
    value: Value | None  # None: back to the configured value


Command = SetCurrentLimit | SetEnabled | SetMode | SetThreshold


def slot(command: Command) -> tuple[str, int]:
    """What a newer command replaces: the same kind on the same connector (a threshold:
    the same threshold)."""
    kind = command.key if isinstance(command, SetThreshold) else type(command).__name__
    return kind, command.connector_id


def parse_command(
    connector_id: int, command: str, payload: bytes, connectors: dict[int, float]
) -> Command:
    """The command for ``payload`` on ``<prefix>/connector/<id>/set/<command>``;
    ``connectors`` maps each connector id to its maximum current. Raises BadCommand."""
    if connector_id not in connectors:
        raise BadCommand(f"no connector {connector_id}")
    if len(payload) > MAX_PAYLOAD:
        raise BadCommand(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    try:
        text = payload.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        raise BadCommand("payload is not ASCII text") from None
    if command == "enabled":
        if text in _ON:
            return SetEnabled(connector_id, True)
        if text in _OFF:
            return SetEnabled(connector_id, False)
        raise BadCommand(f"enabled must be ON or OFF, got {text!r}")
    if command == "mode":
        if text in set(Mode):
            return SetMode(connector_id, Mode(text))
        raise BadCommand(f"mode must be one of {', '.join(Mode)}, got {text!r}")
    if command in THRESHOLD_KEYS:
        return SetThreshold(connector_id, command, _threshold(command, text))
    if command == "current_limit":
        if text in _CLEAR:
            return SetCurrentLimit(connector_id, None)
        try:
            current_a = float(text)
        except ValueError:
            raise BadCommand(f"current_limit must be a number of A or none, got {text!r}") from None
        maximum = connectors[connector_id]
        if not math.isfinite(current_a) or not 0 <= current_a <= maximum:
            raise BadCommand(f"current_limit must be from 0 to {maximum:g} A, got {text!r}")
        return SetCurrentLimit(connector_id, current_a)
    raise BadCommand(f"unknown command {command!r}")


def _threshold(key: str, text: str) -> Value | None:
    if text == RESET:
        return None
    value: str | float = text
    if key not in TEXT_KEYS:
        try:
            value = float(text)
        except ValueError:
            raise BadCommand(f"{key} must be a number or {RESET}, got {text!r}") from None
    try:
        return check({key: value})[key]
    except ConfigurationError as exc:
        raise BadCommand(str(exc)) from None
