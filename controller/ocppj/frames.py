"""Raw OCPP-J frames from the CSMS checked before the library sees them, and the CALLERROR
a call that breaks its schema deserves; the same in every OCPP version.

The ocpp library drops a frame it cannot parse without answering. :func:`check_frame`
inspects every frame first: anything that is not a well-formed OCPP-J message gets a
CALLERROR (the version's format code, with the frame's unique id when one can be recovered,
else ``"-1"``), so the CSMS always hears back and nothing reaches the charge point. That
includes a frame nested deeper than the parser's recursion limit and a binary frame
(OCPP-J is text; a readable one is refused under its own id).
:func:`schema_error_code` maps a CALL's schema violation onto the RPC framework's codes:

- a missing required field: ProtocolError ("payload for action is incomplete");
- a field of the wrong JSON type or too long: TypeConstraintViolation;
- a value outside its enumeration or range: PropertyConstraintViolation;
- an unknown field or another structural problem: the version's format code.

The versions differ only in that code's spelling: 1.6 ``FormationViolation``
(``FormationViolationError``), 2.0.1 ``FormatViolation`` (``FormatViolationError``).
"""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import (
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
    UnknownCallErrorCodeError,
)
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator

#: The unique id for a CALLERROR about a frame whose own id cannot be recovered.
UNKNOWN_ID = "-1"
#: OCPP-J: "the message ID ... maximum length of 36 characters".
MAX_UNIQUE_ID = 36
_ARITY = {MessageType.Call: 4, MessageType.CallResult: 3, MessageType.CallError: 5}
#: The start of a frame whose whole cannot be parsed: ``[type, "unique id"``.
_FRAME_HEAD = re.compile(r'\s*\[\s*\d+\s*,\s*"([^"\\]{1,36})"')

#: What ``ChargePoint.call(..., suppress=False)`` raises for a call the CSMS did not serve.
#: (TypeError: a response that passed validation but not the library's dataclass.)
CALL_FAILURES: tuple[type[BaseException], ...] = (
    OCPPError,
    UnknownCallErrorCodeError,
    TimeoutError,
    TypeError,
)

FormatError = type[OCPPError]


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """A frame that gets a CALLERROR instead of being routed."""

    unique_id: str
    error: OCPPError

    def to_json(self) -> str:
        return CallError(
            self.unique_id, self.error.code, self.error.description, self.error.details
        ).to_json()


def _head_id(text: str) -> str:
    """The unique id at the start of a frame that cannot be parsed whole, else ``"-1"``."""
    match = _FRAME_HEAD.match(text)
    return match.group(1) if match else UNKNOWN_ID


def check_frame(
    raw: str | bytes, format_error: FormatError
) -> Call | CallResult | CallError | FrameProblem:
    """Parse one websocket frame into a message, or say which CALLERROR it deserves
    (``format_error``: the version's format-violation exception)."""

    def problem(unique_id: str, cause: str) -> FrameProblem:
        return FrameProblem(unique_id, format_error(details={"cause": cause}))

    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        readable = check_frame(text, format_error) if text else None
        unique_id = UNKNOWN_ID if readable is None else readable.unique_id
        return problem(unique_id, "OCPP-J frames are text frames, got a binary frame")
    try:
        frame = json.loads(raw)
    except RecursionError:
        return problem(_head_id(raw), "frame is nested too deeply")
    except ValueError:
        return problem(UNKNOWN_ID, "frame is not valid JSON")
    if not isinstance(frame, list) or not frame:
        return problem(UNKNOWN_ID, "frame is not a non-empty JSON array")
    raw_id = frame[1] if len(frame) > 1 else None
    unique_id = (
        raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_UNIQUE_ID else UNKNOWN_ID
    )
    type_id = frame[0]
    # an int (not a bool, not a float, never a list or object: those are unhashable)
    if isinstance(type_id, bool) or not isinstance(type_id, int) or type_id not in _ARITY:
        return problem(unique_id, f"unknown MessageTypeId {type_id!r}")
    if len(frame) != _ARITY[type_id]:
        return problem(
            unique_id, f"MessageTypeId {type_id} takes {_ARITY[type_id]} elements, got {len(frame)}"
        )
    if unique_id == UNKNOWN_ID:
        return problem(unique_id, "UniqueId must be a string of 1-36 characters")
    if type_id == MessageType.Call:
        action, payload = frame[2], frame[3]
        if not isinstance(action, str) or not isinstance(payload, dict):
            return problem(unique_id, "a CALL is [2, id, action string, payload object]")
        return Call(unique_id, action, payload)
    if type_id == MessageType.CallResult:
        if not isinstance(frame[2], dict):
            return problem(unique_id, "a CALLRESULT payload must be an object")
        return CallResult(unique_id, frame[2])
    code, description, details = frame[2], frame[3], frame[4]
    if not (isinstance(code, str) and isinstance(description, str) and isinstance(details, dict)):
        return problem(unique_id, "a CALLERROR is [4, id, code, description, details object]")
    return CallError(unique_id, code, description, details)


def schema_violation(call: Call, version: str, decimal_actions: frozenset[str]) -> Any:
    """The most relevant schema violation of ``call``'s payload (a jsonschema
    ``ValidationError``: the shallowest one), or None when the payload is valid."""
    uses_decimal = call.action in decimal_actions
    try:
        if uses_decimal:
            validator = get_validator(MessageType.Call, call.action, version, decimal.Decimal)
        else:
            validator = get_validator(MessageType.Call, call.action, version)
    except (OSError, ValueError, TypeError):
        return None  # no schema for this action: the library's own error stands
    payload: Any = call.payload
    if uses_decimal:
        # The library's own validation may already have put Decimals into the payload.
        text = json.dumps(payload, default=_decimal_as_float)
        payload = json.loads(text, parse_float=decimal.Decimal)
    errors = list(validator.iter_errors(payload))
    return min(errors, key=lambda e: len(e.absolute_path), default=None)


def _decimal_as_float(value: object) -> float:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def schema_error_code(
    call: Call,
    *,
    version: str,
    format_error: FormatError,
    decimal_actions: frozenset[str] = frozenset(),
) -> OCPPError | None:
    """The CALLERROR for ``call``'s schema violation in ``version``'s schemas, or None when
    its payload is valid (or the version has no schema for the action). The library
    validates ``decimal_actions`` with Decimal floats, and so must this check."""
    error = schema_violation(call, version, decimal_actions)
    if error is None:
        return None
    return code_for(error, format_error)


def code_for(error: Any, format_error: FormatError) -> OCPPError:
    """The CALLERROR of a schema violation (a jsonschema ``ValidationError``)."""
    details = {"cause": error.message, "path": "/".join(str(p) for p in error.absolute_path)}
    match error.validator:
        case "required":
            return ProtocolError(details=details)
        case "type" | "maxLength":
            return TypeConstraintViolationError(details=details)
        case "enum" | "minimum" | "maximum" | "minLength" | "pattern" | "multipleOf":
            return PropertyConstraintViolationError(details=details)
        case _:
            return format_error(details=details)
