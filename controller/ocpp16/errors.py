"""CALLERRORs: checking raw frames from the CSMS, and mapping failures to 1.6 error codes.

The ocpp library drops a frame it cannot parse without answering, and names a few errors in
OCPP 2.0.1 spelling. :func:`check_frame` inspects every frame before the library sees it:
anything that is not a well-formed OCPP-J message gets a CALLERROR here (FormationViolation,
with the frame's unique id when one can be recovered, else ``"-1"``), so the CSMS always
hears back and nothing reaches the charge point. That includes a frame nested deeper than
the parser's recursion limit and a binary frame (OCPP-J is text; a readable one is refused
under its own id).

:func:`number_problem` catches what the library cannot judge: it validates the 1.6 decimals
(charging profiles) with ``Decimal`` arithmetic, which raises instead of answering on
``NaN``, ``Infinity`` (which Python's ``json`` lets through, though JSON has neither) and on a
number as large as 1e308. Such a CALL gets FormationViolation (not a JSON number) or
PropertyConstraintViolation (beyond any OCPP quantity), unless a schema violation the CSMS
should hear about first (a wrong type, a missing field) is found without that arithmetic.

:func:`call_error_for` turns the library's exceptions for well-formed CALLs into the 1.6 codes:

- an action 1.6 knows without a handler: NotImplemented; an unknown action: NotSupported;
- a missing required field: ProtocolError ("payload for action is incomplete");
- a field of the wrong JSON type or too long: TypeConstraintViolation;
- a value outside its enumeration or range: PropertyConstraintViolation;
- an unknown field or another structural problem: FormationViolation.
"""

from __future__ import annotations

import decimal
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    InternalError,
    NotImplementedError,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
    UnknownCallErrorCodeError,
)
from ocpp.messages import Call, CallError, CallResult, MessageType, get_validator

log = logging.getLogger(__name__)

#: The unique id for a CALLERROR about a frame whose own id cannot be recovered.
UNKNOWN_ID = "-1"
#: OCPP-J: "the message ID ... maximum length of 36 characters".
MAX_UNIQUE_ID = 36
#: Actions whose schemas hold decimals (the library validates them with Decimal floats).
_DECIMAL_ACTIONS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})
_ARITY = {MessageType.Call: 4, MessageType.CallResult: 3, MessageType.CallError: 5}
#: The largest magnitude a number in a frame may have. No OCPP 1.6 quantity (Wh, W, A, s,
#: ids) comes near it, beyond it a float no longer holds whole numbers exactly (2**53 is about
#: 9e15), and the library's Decimal validation of 1.6 decimals fails on far larger ones.
MAX_NUMBER = 1e15
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


@dataclass(frozen=True, slots=True)
class FrameProblem:
    """A frame that gets a CALLERROR instead of being routed."""

    unique_id: str
    error: OCPPError

    def to_json(self) -> str:
        return CallError(
            self.unique_id, self.error.code, self.error.description, self.error.details
        ).to_json()


def _formation(unique_id: str, cause: str) -> FrameProblem:
    return FrameProblem(unique_id, FormationViolationError(details={"cause": cause}))


def _head_id(text: str) -> str:
    """The unique id at the start of a frame that cannot be parsed whole, else ``"-1"``."""
    match = _FRAME_HEAD.match(text)
    return match.group(1) if match else UNKNOWN_ID


def check_frame(raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
    """Parse one websocket frame into a message, or say which CALLERROR it deserves."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        readable = check_frame(text) if text else None
        unique_id = UNKNOWN_ID if readable is None else readable.unique_id
        return _formation(unique_id, "OCPP-J frames are text frames, got a binary frame")
    try:
        frame = json.loads(raw)
    except RecursionError:
        return _formation(_head_id(raw), "frame is nested too deeply")
    except ValueError:
        return _formation(UNKNOWN_ID, "frame is not valid JSON")
    if not isinstance(frame, list) or not frame:
        return _formation(UNKNOWN_ID, "frame is not a non-empty JSON array")
    raw_id = frame[1] if len(frame) > 1 else None
    unique_id = (
        raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_UNIQUE_ID else UNKNOWN_ID
    )
    type_id = frame[0]
    # an int (not a bool, not a float, never a list or object: those are unhashable)
    if isinstance(type_id, bool) or not isinstance(type_id, int) or type_id not in _ARITY:
        return _formation(unique_id, f"unknown MessageTypeId {type_id!r}")
    if len(frame) != _ARITY[type_id]:
        return _formation(
            unique_id, f"MessageTypeId {type_id} takes {_ARITY[type_id]} elements, got {len(frame)}"
        )
    if unique_id == UNKNOWN_ID:
        return _formation(unique_id, "UniqueId must be a string of 1-36 characters")
    if type_id == MessageType.Call:
        action, payload = frame[2], frame[3]
        if not isinstance(action, str) or not isinstance(payload, dict):
            return _formation(unique_id, "a CALL is [2, id, action string, payload object]")
        return Call(unique_id, action, payload)
    if type_id == MessageType.CallResult:
        if not isinstance(frame[2], dict):
            return _formation(unique_id, "a CALLRESULT payload must be an object")
        return CallResult(unique_id, frame[2])
    code, description, details = frame[2], frame[3], frame[4]
    if not (isinstance(code, str) and isinstance(description, str) and isinstance(details, dict)):
        return _formation(unique_id, "a CALLERROR is [4, id, code, description, details object]")
    return CallError(unique_id, code, description, details)


def _bad_number(value: Any) -> float | None:
    """The first float in ``value`` (a parsed payload) that is not finite or beyond
    :data:`MAX_NUMBER`; iterative, so a deep payload cannot exhaust the stack."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not (math.isfinite(item) and abs(item) <= MAX_NUMBER):
            return item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def number_problem(call: Call) -> OCPPError | None:
    """The CALLERROR for a CALL holding a number no OCPP field can take, else None."""
    if call.action not in _DECIMAL_ACTIONS:
        return None  # validated with floats: a type check answers, nothing raises
    bad = _bad_number(call.payload)
    if bad is None:
        return None
    try:
        problem = _schema_error(call)
    except (ArithmeticError, TypeError, ValueError):  # Decimal arithmetic on that number
        problem = None
    if problem is not None and problem.validator in ("type", "required", "maxLength", "enum"):
        return _code_for(problem)
    if not math.isfinite(bad):
        return FormationViolationError(details={"cause": f"{bad} is not a JSON number"})
    return PropertyConstraintViolationError(
        details={"cause": f"{bad:g} is beyond any OCPP value (at most {MAX_NUMBER:g})"}
    )


def _schema_error(call: Call) -> Any:
    """The most relevant schema violation of ``call``'s payload (a jsonschema
    ``ValidationError``: the shallowest one), or None when the payload is valid."""
    try:
        if call.action in _DECIMAL_ACTIONS:
            validator = get_validator(MessageType.Call, call.action, "1.6", decimal.Decimal)
        else:
            validator = get_validator(MessageType.Call, call.action, "1.6")
    except (OSError, ValueError, TypeError):
        return None  # no schema for this action: the library's own error stands
    payload: Any = call.payload
    if call.action in _DECIMAL_ACTIONS:
        # The library's own validation may already have put Decimals into the payload.
        text = json.dumps(payload, default=_decimal_as_float)
        payload = json.loads(text, parse_float=decimal.Decimal)
    errors = list(validator.iter_errors(payload))
    return min(errors, key=lambda e: len(e.absolute_path), default=None)


def _decimal_as_float(value: object) -> float:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _code_for(error: Any) -> OCPPError:
    details = {"cause": error.message, "path": "/".join(str(p) for p in error.absolute_path)}
    match error.validator:
        case "required":
            return ProtocolError(details=details)
        case "type" | "maxLength":
            return TypeConstraintViolationError(details=details)
        case "enum" | "minimum" | "maximum" | "minLength" | "pattern" | "multipleOf":
            return PropertyConstraintViolationError(details=details)
        case _:
            return FormationViolationError(details=details)


def call_error_for(call: Call, error: OCPPError) -> OCPPError:
    """The 1.6 error to answer ``call`` with, given what the library raised for it."""
    if isinstance(error, NotImplementedError | NotSupportedError):
        return error
    problem = _schema_error(call)
    if problem is not None:
        return _code_for(problem)
    if isinstance(error, FormatViolationError):
        return FormationViolationError(description=error.description, details=error.details)
    # The request was valid: our own answer failed validation. That is our bug, not theirs.
    log.error("answer to %s %s was invalid: %r", call.action, call.unique_id, error)
    return InternalError(details={"cause": "the charge point could not form a valid answer"})
