"""StatusNotification content: OCPP 1.6 error codes for our faults, and connector 0's status.

Connector 0 stands for the charge point as a whole; 1.6 allows it only Available,
Unavailable or Faulted. The supervisor reports connectors 1..n; connector 0 is derived here
(Unavailable when every connector is, otherwise Available) unless the supervisor reports
connector 0 itself, which then wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus

from controller.connector_types import ConnectorStatus
from drivers.errors import FaultKind

ERROR_CODES: dict[FaultKind, ChargePointErrorCode] = {
    FaultKind.RCD_TRIP: ChargePointErrorCode.ground_failure,
    FaultKind.RCD_SELFTEST: ChargePointErrorCode.ground_failure,
    FaultKind.CONTACTOR_WELDED: ChargePointErrorCode.power_switch_failure,
    FaultKind.CONTACTOR_FAILED_CLOSE: ChargePointErrorCode.power_switch_failure,
    FaultKind.METER_OFFLINE: ChargePointErrorCode.power_meter_failure,
    FaultKind.READER_FAILURE: ChargePointErrorCode.reader_failure,
    FaultKind.CP_ERROR: ChargePointErrorCode.ev_communication_error,
    FaultKind.DIODE_FAULT: ChargePointErrorCode.ev_communication_error,
    # The Mode 3 signal read two ways that disagree: a CP fault, as the others above
    FaultKind.CP_MISMATCH: ChargePointErrorCode.ev_communication_error,
    FaultKind.OVERTEMPERATURE: ChargePointErrorCode.high_temperature,
    FaultKind.LOCK_FAILURE: ChargePointErrorCode.connector_lock_failure,
    FaultKind.INTERNAL_ERROR: ChargePointErrorCode.internal_error,
    FaultKind.UNDER_VOLTAGE: ChargePointErrorCode.under_voltage,
    FaultKind.OVER_VOLTAGE: ChargePointErrorCode.over_voltage,
    # 1.6 has no code for it; the StatusNotification's info names it (power_fail)
    FaultKind.POWER_FAIL: ChargePointErrorCode.other_error,
}


def error_code(fault: FaultKind | None) -> ChargePointErrorCode:
    """The 1.6 errorCode for ``fault``; NoError without one."""
    if fault is None:
        return ChargePointErrorCode.no_error
    return ERROR_CODES.get(fault, ChargePointErrorCode.other_error)


def charge_point_status(statuses: Iterable[ConnectorStatus]) -> ConnectorStatus:
    """Connector 0's status from the connectors' statuses."""
    seen = list(statuses)
    if seen and all(status is ConnectorStatus.UNAVAILABLE for status in seen):
        return ConnectorStatus.UNAVAILABLE
    return ConnectorStatus.AVAILABLE


def wire_status(status: ConnectorStatus) -> ChargePointStatus:
    """Our status in 1.6 spelling (the names match one to one)."""
    return ChargePointStatus(status.value)
