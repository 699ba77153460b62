"""The OCPP 2.0.1 adapter: :class:`Ocpp201Adapter` implements :class:`~controller.domain.
CsmsLink` and :class:`~controller.csms.adapter.CsmsAdapter`.

This is the first slice of issue 14: the link (:class:`~.link_loop.LinkLoop`: connect,
BootNotification, Heartbeat, reconnect, security profiles), the device model
(:mod:`.device_model`, GetVariables/SetVariables) and StatusNotification per EVSE. It
has no transactions yet (TransactionEvent through the durable queue is the next step), so
it refuses every id presented: a session the CSMS would never hear of must not start
(picharge loses no session). Loop thread only; the CsmsLink notifications return at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from ocpp.v201 import call

from controller.connector_types import ConnectorStatus
from controller.csms.key_timers import KeyTimers
from controller.csms.link import LinkState, LinkTiming, endpoint_url
from controller.csms.security import LinkSecurity
from controller.csms.tasks import TaskSet
from controller.domain import (
    AuthResult,
    AuthStatus,
    ChargePointControl,
    MeterSample,
    Transaction,
    utc_now,
)
from controller.ocpp201.charge_point import Ocpp201ChargePoint
from controller.ocpp201.device_model import DeviceModel
from controller.ocpp201.link_loop import LinkLoop
from controller.ocpp201.status import status_request
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES
from drivers.errors import FaultKind

log = logging.getLogger(__name__)


class Ocpp201Adapter:
    """The charging station's OCPP 2.0.1 link to its CSMS (a :class:`CsmsLink`).

    ``boot_request`` is the BootNotification this run sends (its reason decided by the
    factory); ``security`` gives the link its security profile (None: no credentials).
    """

    def __init__(
        self,
        *,
        url: str,
        chargepoint_id: str,
        boot_request: call.BootNotification,
        control: ChargePointControl,
        model: DeviceModel,
        clock: Callable[[], dt.datetime] = utc_now,
        timing: LinkTiming | None = None,
        security: LinkSecurity | None = None,
    ) -> None:
        self.chargepoint_id = chargepoint_id
        self.timing = timing or LinkTiming()
        self._control = control
        self._clock = clock
        self._tasks = TaskSet()
        self._caller: SessionCaller[Ocpp201ChargePoint] = SessionCaller()
        self._link = LinkLoop(
            url=endpoint_url(url, chargepoint_id),
            chargepoint_id=chargepoint_id,
            timing=self.timing,
            security=security,
            boot_request=boot_request,
            model=model,
            timers=KeyTimers(model, self.timing.interval_scale),
            caller=self._caller,
            spawn=self._tasks.spawn,
            serve=self._serve_registered,
        )

    @property
    def url(self) -> str:
        return self._link.url

    @property
    def state(self) -> LinkState:
        return self._link.state

    async def resync(self) -> None:
        """Nothing is queued durably by this slice (no transactions yet)."""

    async def flush(self, timeout_s: float) -> bool:
        """Nothing is queued by this slice: always empty."""
        return True

    async def run(self) -> None:
        """Talk to the CSMS until cancelled, reconnecting forever."""
        try:
            await self._link.run()
        finally:
            self._link.set_state(LinkState.STOPPED)
            await self._tasks.cancel_all()

    async def _serve_registered(self, cp: Ocpp201ChargePoint) -> None:
        """While ``cp`` is registered: every connector's status (G01), then heartbeats."""
        for connector_id in self._control.connector_ids:
            await self._send_status(cp, connector_id, self._control.view(connector_id).status)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._link.heartbeat(cp), name="ocpp201-heartbeat")

    async def _send_status(
        self, cp: Ocpp201ChargePoint, connector_id: int, status: ConnectorStatus
    ) -> None:
        try:
            await call_checked(cp, status_request(connector_id, status, self._clock()))
        except CALL_FAILURES as exc:
            log.warning("StatusNotification of EVSE %d failed: %s", connector_id, describe(exc))

    # --- what the supervisor reports ----------------------------------------------------

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Send now when registered; offline it is dropped (the reconnect sends the latest)."""
        cp = self._caller.cp
        if cp is not None and self._caller.registered:
            self._tasks.spawn(
                self._send_status(cp, connector_id, status), f"ocpp201-status-{connector_id}"
            )

    def transaction_started(self, tx: Transaction) -> None:
        # Unreachable while authorize() refuses every id; logged loudly should that change.
        log.error("transaction %s started, but OCPP 2.0.1 does not report it yet", tx.local_id)

    def transaction_stopped(self, tx: Transaction) -> None:
        log.error("transaction %s stopped, but OCPP 2.0.1 does not report it yet", tx.local_id)

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """Meter values go with TransactionEvent, which this slice does not send yet."""

    async def authorize(self, id_tag: str) -> AuthResult:
        """Invalid: without TransactionEvent the CSMS would never hear of the session."""
        log.warning(
            "id %s refused: OCPP 2.0.1 transactions are not implemented yet, and a session "
            "the CSMS cannot hear of must not start",
            id_tag,
        )
        return AuthResult(AuthStatus.INVALID)
