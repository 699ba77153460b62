"""CALLERRORs in 2.0.1 spelling (OCPP-J 2.0.1 §4.3: ``FormatViolation``, never 1.6's
``FormationViolation``).

:func:`check_frame` answers a frame that is no well-formed OCPP-J message with
FormatViolation (RpcFrameworkError would also fit; the library and most CSMSs expect
FormatViolation for an unparsable payload); :func:`call_error_for` maps the library's
exceptions for a well-formed CALL: an action without a handler NotImplemented, an unknown
one NotSupported, a schema violation as :func:`controller.ocppj.frames.schema_error_code`
maps it, and our own invalid answer InternalError.
"""

from __future__ import annotations

import logging

from ocpp.exceptions import (
    FormatViolationError,
    InternalError,
    NotImplementedError,
    NotSupportedError,
    OccurrenceConstraintViolationError,
    OCPPError,
)
from ocpp.messages import Call, CallError, CallResult
from ocpp.v201.enums import Action

from controller.ocppj import frames
from controller.ocppj.frames import FrameProblem

log = logging.getLogger(__name__)

VERSION = "2.0.1"
_ACTIONS = frozenset(action.value for action in Action)


def check_frame(raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
    """Parse one websocket frame into a message, or say which CALLERROR it deserves."""
    return frames.check_frame(raw, FormatViolationError)


def call_error_for(call: Call, error: OCPPError) -> OCPPError:
    """The 2.0.1 error to answer ``call`` with, given what the library raised for it."""
    if isinstance(error, NotImplementedError | NotSupportedError):
        details = {"cause": f"{call.action} is not served by this charging station"}
        if call.action in _ACTIONS:
            return NotSupportedError(details=details)
        return NotImplementedError(details={"cause": f"{call.action} is no OCPP 2.0.1 action"})
    problem = frames.schema_error_code(call, version=VERSION, format_error=FormatViolationError)
    if problem is not None:
        return problem
    if isinstance(error, FormatViolationError | OccurrenceConstraintViolationError):
        return error  # raised on purpose by a handler (a request past ItemsPerMessage)
    log.error("answer to %s %s was invalid: %r", call.action, call.unique_id, error)
    return InternalError(details={"cause": "the charging station could not form a valid answer"})
