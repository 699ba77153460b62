"""StatusNotification in 2.0.1: the neutral connector status as ConnectorStatusEnumType.

2.0.1 reports a connector's availability, not the session's phase (that moved into
TransactionEvent's chargingState): every status of an occupied connector (Preparing,
Charging, SuspendedEV/EVSE, Finishing) is ``Occupied``. Each connector of this charger is
EVSE ``n`` with its one connector 1.
"""

from __future__ import annotations

import datetime as dt

from ocpp.v201 import call
from ocpp.v201.enums import ConnectorStatusEnumType

from controller.connector_types import ConnectorStatus
from controller.csms.wire import iso_utc

_STATUS = {
    ConnectorStatus.AVAILABLE: ConnectorStatusEnumType.available,
    ConnectorStatus.PREPARING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.CHARGING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.SUSPENDED_EV: ConnectorStatusEnumType.occupied,
    ConnectorStatus.SUSPENDED_EVSE: ConnectorStatusEnumType.occupied,
    ConnectorStatus.FINISHING: ConnectorStatusEnumType.occupied,
    ConnectorStatus.RESERVED: ConnectorStatusEnumType.reserved,
    ConnectorStatus.UNAVAILABLE: ConnectorStatusEnumType.unavailable,
    ConnectorStatus.FAULTED: ConnectorStatusEnumType.faulted,
}


def connector_status(status: ConnectorStatus) -> ConnectorStatusEnumType:
    return _STATUS[status]


def status_request(
    connector_id: int, status: ConnectorStatus, at: dt.datetime
) -> call.StatusNotification:
    """The StatusNotification of our connector ``connector_id`` (EVSE ``connector_id``,
    connector 1)."""
    return call.StatusNotification(
        timestamp=iso_utc(at),
        connector_status=connector_status(status),
        evse_id=connector_id,
        connector_id=1,
    )
