"""CALLERRORs in 1.6 spelling: frames checked as :mod:`controller.ocppj.frames` says, with
1.6's ``FormationViolation`` (the library names a few errors in OCPP 2.0.1 spelling).

:func:`check_frame` answers a frame that is no well-formed OCPP-J message with
FormationViolation (under the frame's own id when one can be recovered, also for a frame
nested too deeply or sent as binary).

:func:`number_problem` catches what the library cannot judge: it validates the 1.6 decimals
(charging profiles) with ``Decimal`` arithmetic, which raises instead of answering on
``NaN``, ``Infinity`` (which Python's ``json`` lets through, though JSON has neither) and on a
number as large as 1e308. Such a CALL gets FormationViolation (not a JSON number) or
PropertyConstraintViolation (beyond any OCPP quantity), unless a schema violation the CSMS
should hear about first (a wrong type, a missing field) is found without that arithmetic.

:func:`call_error_for` turns the library's exceptions for well-formed CALLs into the 1.6 codes:

- an action 1.6 knows without a handler: NotImplemented; an unknown action: NotSupported;
- a schema violation: as :func:`controller.ocppj.frames.schema_error_code` maps it (a
  missing field ProtocolError, a wrong type TypeConstraintViolation, a value out of range
  PropertyConstraintViolation, anything else FormationViolation);
- anything else is our own answer failing validation: InternalError.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    InternalError,
    NotImplementedError,
    NotSupportedError,
    OCPPError,
    PropertyConstraintViolationError,
)
from ocpp.messages import Call, CallError, CallResult

from controller.ocppj import frames
from controller.ocppj.frames import CALL_FAILURES, FrameProblem

log = logging.getLogger(__name__)

#: The registry's name of this version (and the protocol of its outbox rows).
VERSION = "1.6"

#: Actions whose schemas hold decimals (the library validates them with Decimal floats).
_DECIMAL_ACTIONS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})
#: The largest magnitude a number in a frame may have. No OCPP 1.6 quantity (Wh, W, A, s,
#: ids) comes near it, beyond it a float no longer holds whole numbers exactly (2**53 is about
#: 9e15), and the library's Decimal validation of 1.6 decimals fails on far larger ones.
MAX_NUMBER = 1e15

__all__ = ["CALL_FAILURES", "FrameProblem", "call_error_for", "check_frame", "number_problem"]


def check_frame(raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
    """Parse one websocket frame into a message, or say which CALLERROR it deserves."""
    return frames.check_frame(raw, FormationViolationError)


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
        problem = frames.schema_violation(call, VERSION, _DECIMAL_ACTIONS)
    except (ArithmeticError, TypeError, ValueError):  # Decimal arithmetic on that number
        problem = None
    if problem is not None and problem.validator in ("type", "required", "maxLength", "enum"):
        return frames.code_for(problem, FormationViolationError)
    if not math.isfinite(bad):
        return FormationViolationError(details={"cause": f"{bad} is not a JSON number"})
    return PropertyConstraintViolationError(
        details={"cause": f"{bad:g} is beyond any OCPP value (at most {MAX_NUMBER:g})"}
    )


def call_error_for(call: Call, error: OCPPError) -> OCPPError:
    """The 1.6 error to answer ``call`` with, given what the library raised for it."""
    if isinstance(error, NotImplementedError | NotSupportedError):
        return error
    problem = frames.schema_error_code(
        call,
        version=VERSION,
        format_error=FormationViolationError,
        decimal_actions=_DECIMAL_ACTIONS,
    )
    if problem is not None:
        return problem
    if isinstance(error, FormatViolationError):
        return FormationViolationError(description=error.description, details=error.details)
    # The request was valid: our own answer failed validation. That is our bug, not theirs.
    log.error("answer to %s %s was invalid: %r", call.action, call.unique_id, error)
    return InternalError(details={"cause": "the charge point could not form a valid answer"})
