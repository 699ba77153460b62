"""StatusNotification: every connector's status, and connector 0's, as the CSMS should see it.

While registered, each change is queued and sent in order (:meth:`StatusReporter.send_changes`);
offline a change is dropped, because each accepted BootNotification sends every connector as
it is then (:meth:`StatusReporter.open`). Connector 0 (the charge point as a whole) is what
the supervisor reported for it, else derived from the connectors (:func:`charge_point_status`),
and is sent only when it changes. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ocpp.v16 import call

from controller.connector_types import ConnectorStatus
from controller.csms.wire import iso_utc
from controller.domain import ChargePointControl, Transaction
from controller.ocpp16.errors import CALL_FAILURES
from controller.ocpp16.status import charge_point_status, error_code, wire_status
from controller.ocppj.caller import call_checked, describe
from drivers.errors import FaultKind

if TYPE_CHECKING:
    from controller.ocpp16.charge_point import OcppChargePoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _StatusItem:
    connector_id: int
    status: ConnectorStatus
    fault: FaultKind | None
    at: dt.datetime


class StatusReporter:
    """``running(connector_id)`` is the connector's running transaction, if any;
    ``connector_idle(connector_id)`` hears a connector become Available without one."""

    def __init__(
        self,
        control: ChargePointControl,
        clock: Callable[[], dt.datetime],
        running: Callable[[int], Transaction | None],
        connector_idle: Callable[[int], None],
    ) -> None:
        self._control = control
        self._clock = clock
        self._running = running
        self._connector_idle = connector_idle
        self._statuses: asyncio.Queue[_StatusItem] | None = None
        self._zero_reported: ConnectorStatus | None = None
        self._zero_sent: ConnectorStatus | None = None

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Send now when registered; offline it is dropped (the reconnect sends the latest)."""
        if connector_id == 0:
            self._zero_reported = status
        elif status is ConnectorStatus.AVAILABLE and self._running(connector_id) is None:
            self._connector_idle(connector_id)  # a remote start that never began
        items = [_StatusItem(connector_id, status, fault, self._clock())]
        if connector_id != 0 and self._zero_reported is None:
            zero = self._derived_zero()
            if zero is not self._zero_sent:
                items.append(_StatusItem(0, zero, None, items[0].at))
        if self._statuses is None:
            log.debug("offline: status %s of connector %d not sent", status, connector_id)
            return
        for item in items:
            if item.connector_id == 0:
                self._zero_sent = item.status
            self._statuses.put_nowait(item)

    async def open(self, cp: OcppChargePoint) -> None:
        """Registered on ``cp``: from now on changes are queued; send every connector as it
        is now first (what changes meanwhile follows from the queue)."""
        self._statuses = asyncio.Queue()
        for item in self._sweep():
            await self._send(cp, item)

    async def send_changes(self, cp: OcppChargePoint) -> None:
        """Send each queued change in order, until cancelled."""
        statuses = self._statuses
        assert statuses is not None, "open() first"
        while True:
            await self._send(cp, await statuses.get())

    def close(self) -> None:
        """The connection ended: changes are dropped until the next :meth:`open`."""
        self._statuses = None

    def _derived_zero(self) -> ConnectorStatus:
        ids = self._control.connector_ids
        return charge_point_status(self._control.view(c).status for c in ids)

    def _sweep(self) -> list[_StatusItem]:
        """Connector 0 and every connector as they are now (after each Boot accepted)."""
        now = self._clock()
        views = [self._control.view(c) for c in self._control.connector_ids]
        zero = self._zero_reported or charge_point_status(v.status for v in views)
        self._zero_sent = zero
        return [_StatusItem(0, zero, None, now)] + [
            _StatusItem(v.connector_id, v.status, v.fault, now) for v in views
        ]

    async def _send(self, cp: OcppChargePoint, item: _StatusItem) -> None:
        request = call.StatusNotification(
            connector_id=item.connector_id,
            error_code=error_code(item.fault),
            status=wire_status(item.status),
            timestamp=iso_utc(item.at),
            info=item.fault.value if item.fault else None,
        )
        try:
            await call_checked(cp, request)
        except CALL_FAILURES as exc:
            log.warning(
                "StatusNotification %s of connector %d failed: %s",
                item.status,
                item.connector_id,
                describe(exc),
            )
