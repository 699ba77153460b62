"""The charge point side of an OCPP 1.6J connection: the ocpp library's ChargePoint with our
handlers for what the CSMS asks (the mixins of :mod:`controller.ocpp16.handlers`).

Each ``@on`` handler maps a request onto :class:`~controller.domain.ChargePointControl` (or
the configuration and authorization cache) and returns at once: none awaits an outgoing
call, which would stall the library's receive loop (its issue #130). Work that must follow
the answer (a reset) runs from ``@after`` in a task of our own, whose errors are logged.

Frames and CALLs are served as :mod:`controller.ocppj.serving` says (the same for every
version): each frame checked first, CALLs one at a time with a backlog of
:data:`CALL_BACKLOG` (beyond it a busy CALLERROR), answers only to calls of ours. This
class gives it the 1.6 frame check and error codes, answers NotSupported for a CALL of a
feature profile switched off by the operator (SupportedFeatureProfiles), and refuses a CALL
holding a number the library cannot judge before it reaches the library
(:func:`~controller.ocpp16.errors.number_problem`). One instance per websocket connection;
loop thread only.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.messages import Call, CallError, CallResult
from ocpp.v16 import ChargePoint

from controller.ocpp16.errors import call_error_for, check_frame, number_problem
from controller.ocpp16.handlers.certificates import CertificateHandlers
from controller.ocpp16.handlers.core import CoreHandlers
from controller.ocpp16.handlers.diagnostics import DiagnosticsHandlers
from controller.ocpp16.handlers.extended_trigger import ExtendedTriggerHandlers
from controller.ocpp16.handlers.firmware import FirmwareHandlers
from controller.ocpp16.handlers.get_log import GetLogHandlers
from controller.ocpp16.handlers.local_list import LocalListHandlers
from controller.ocpp16.handlers.reservations import ReservationHandlers
from controller.ocpp16.handlers.smart_charging import SmartChargingHandlers
from controller.ocpp16.handlers.triggers import TriggerHandlers
from controller.ocpp16.keys import profile_of_action
from controller.ocppj.frames import FrameProblem
from controller.ocppj.serving import CALL_BACKLOG, CallServing

if TYPE_CHECKING:
    from controller.ocpp16.services import Services

__all__ = ["CALL_BACKLOG", "OcppChargePoint"]


class OcppChargePoint(
    CoreHandlers,
    CertificateHandlers,
    DiagnosticsHandlers,
    ExtendedTriggerHandlers,
    FirmwareHandlers,
    GetLogHandlers,
    LocalListHandlers,
    ReservationHandlers,
    SmartChargingHandlers,
    TriggerHandlers,
    CallServing,
    ChargePoint,
):
    def __init__(
        self, chargepoint_id: str, connection: Any, services: Services, response_timeout: float
    ) -> None:
        super().__init__(chargepoint_id, connection, response_timeout=response_timeout)
        self._s = services
        #: Set by the link loop once this connection's BootNotification is Accepted (or the
        #: charge point registered earlier in this run); until then the boot is Pending or
        #: unanswered, and RemoteStart/RemoteStopTransaction are refused (1.6 §4.2).
        self.registered = False
        self.init_serving("ocpp16")

    def check_frame(self, raw: str | bytes) -> Call | CallResult | CallError | FrameProblem:
        return check_frame(raw)

    def call_error_for(self, call: Call, error: OCPPError) -> OCPPError:
        return call_error_for(call, error)

    def precheck(self, call: Call) -> OCPPError | None:
        """A call of a profile the operator switched off (SupportedFeatureProfiles) is
        NotSupported; a number the library cannot judge is refused (number_problem)."""
        profile = profile_of_action(call.action)
        if profile is not None and profile not in self._s.config.table.ctx.profiles:
            return NotSupportedError(
                description=f"{call.action}: the {profile} profile is not supported"
            )
        return number_problem(call)

    def spawn_serving(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._s.spawn(coro, name)
