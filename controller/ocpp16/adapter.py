"""The OCPP 1.6J adapter: :class:`Ocpp16Adapter` implements :class:`~controller.domain.CsmsLink`
and :class:`~controller.csms.adapter.CsmsAdapter`.

It composes parts that each do one job:

- :class:`~controller.ocppj.link_loop.LinkLoop` (in the 1.6 :mod:`.link_loop` dialect):
  connect, BootNotification, Heartbeat, reconnect;
- :class:`~.status_reporter.StatusReporter`: StatusNotification, connector 0 included;
- :class:`~.transaction_sender.TransactionSender`: Start/StopTransaction and transaction
  MeterValues through the durable queue;
- :class:`~.metering.Metering`: sampled and clock-aligned meter values;
- :func:`~.assembly.build_services`: the services the CSMS's requests are served from
  (:class:`~.charge_point.OcppChargePoint` and the mixins in :mod:`.handlers`);

and decides authorizations (the cache and local list, else the CSMS, else the offline
rules). Everything runs on the loop thread. The CsmsLink notification methods return at
once; :meth:`Ocpp16Adapter.run` does the sending until it is cancelled.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping

from ocpp.v16 import call

from controller.charging_schedule import ConnectorRating
from controller.connector_types import ConnectorStatus, ReservationEnd
from controller.csms.auth import Authorizer
from controller.csms.diagnostics import LogSource
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.key_timers import KeyTimers
from controller.csms.link import LinkTiming, endpoint_url
from controller.csms.queue import TransactionQueue
from controller.csms.security import LinkSecurity
from controller.csms.security_events import SecurityEvents
from controller.csms.tasks import TaskSet
from controller.domain import (
    AuthResult,
    AuthStatus,
    ChargePointControl,
    MeterSample,
    Transaction,
    utc_now,
)
from controller.firmware_install import Installer
from controller.ocpp16.assembly import build_services
from controller.ocpp16.auth import result_from_info
from controller.ocpp16.charge_point import OcppChargePoint
from controller.ocpp16.errors import VERSION
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.link_loop import dialect as link_dialect
from controller.ocpp16.metering import Metering
from controller.ocpp16.settings import SETTING_KEYS, AuthKeys, csms_settings
from controller.ocpp16.status_reporter import StatusReporter
from controller.ocpp16.transaction_sender import TransactionSender
from controller.ocppj.adapter import LinkedAdapter
from controller.ocppj.caller import SessionCaller
from controller.ocppj.link_loop import LinkLoop
from controller.outbox import Outbox
from controller.storage import Storage
from drivers.errors import FaultKind

log = logging.getLogger(__name__)

#: OCPP 1.6 IdToken: CiString20.
MAX_ID_TAG = 20


def security_event_request(event: Mapping[str, str]) -> call.SecurityEventNotification:
    """A recorded security event as the 1.6 security whitepaper's notification."""
    return call.SecurityEventNotification(
        type=event["type"], timestamp=event["timestamp"], tech_info=event.get("techInfo")
    )


class Ocpp16Adapter(LinkedAdapter[OcppChargePoint]):
    """The charge point's OCPP 1.6J link to its CSMS (a :class:`CsmsLink`).

    ``url`` is the CSMS base URL; ``chargepoint_id`` is appended as the last path segment.
    ``timing`` lets tests shrink every protocol timer (see :class:`LinkTiming`).
    ``connector_ratings`` (phases, maximum current) serve smart charging; a connector
    missing from it counts as three-phase 32 A. ``diagnostics_logs`` is where GetDiagnostics
    reads the log (default: the journal under systemd, else ``<state_dir>/logs``);
    ``firmware_installer`` installs UpdateFirmware's package (default: pip into
    ``<state_dir>/firmware/<version>``).
    ``security`` gives the link its security profile (credentials, TLS: see
    :mod:`.security`); None connects without credentials. ``firmware_policy`` is whom the
    operator trusts for firmware (default: nobody, so every update is refused).
    """

    def __init__(
        self,
        *,
        url: str,
        chargepoint_id: str,
        vendor: str,
        model: str,
        serial: str,
        firmware_version: str,
        control: ChargePointControl,
        config: OcppConfig,
        storage: Storage,
        clock: Callable[[], dt.datetime] = utc_now,
        timing: LinkTiming | None = None,
        connector_ratings: Mapping[int, ConnectorRating] | None = None,
        diagnostics_logs: LogSource | None = None,
        firmware_installer: Installer | None = None,
        security: LinkSecurity | None = None,
        firmware_policy: FirmwarePolicy | None = None,
    ) -> None:
        self.chargepoint_id = chargepoint_id
        timing = timing or LinkTiming()
        self._control = control
        self._config = config
        self._tasks = TaskSet()
        self._caller = SessionCaller()
        timers = KeyTimers(config, timing.interval_scale)
        self._security_events = SecurityEvents(storage, clock)
        if security is not None:
            security.report_to(self._security_events)
        boot_request = call.BootNotification(
            charge_point_model=model,
            charge_point_vendor=vendor,
            charge_point_serial_number=serial or None,
            # Deprecated in 1.6 for chargePointSerialNumber, but many central systems still
            # read only this one: the same serial in both.
            charge_box_serial_number=serial or None,
            firmware_version=firmware_version or None,
        )
        self._authorizer = Authorizer(AuthKeys(config), storage, clock)
        self._queue = TransactionQueue(store=Outbox(storage, protocol=VERSION))
        self._transactions = TransactionSender(
            queue=self._queue,
            authorizer=self._authorizer,
            control=control,
            config=config,
            clock=clock,
            spawn=self._tasks.spawn,
            interval_scale=timing.interval_scale,
        )
        self._metering = Metering(
            control=control,
            config=config,
            timers=timers,
            transactions=self._transactions,
            caller=self._caller,
            tasks=self._tasks,
            clock=clock,
        )
        self._services = build_services(
            chargepoint_id=chargepoint_id,
            control=control,
            config=config,
            storage=storage,
            clock=clock,
            timing=timing,
            send=self._caller.call,
            spawn=self._tasks.spawn,
            authorizer=self._authorizer,
            security_events=self._security_events,
            boot_request=boot_request,
            latest_sample=self._metering.latest,
            connector_ratings=connector_ratings,
            diagnostics_logs=diagnostics_logs,
            firmware_installer=firmware_installer,
            security=security,
            firmware_policy=firmware_policy or FirmwarePolicy(),
        )
        self._profiles = self._services.profiles
        self._statuses = StatusReporter(
            control, clock, self._transactions.running, self._profiles.connector_idle
        )
        self._link = LinkLoop(
            dialect=link_dialect(chargepoint_id, self._services),
            url=endpoint_url(url, chargepoint_id),
            timing=timing,
            security=security,
            boot_request=boot_request,
            settings=config,
            timers=timers,
            caller=self._caller,
            spawn=self._tasks.spawn,
            booted=self._services.firmware.booted,  # the running firmware works: trial ends
            serve=self._serve_registered,
        )
        if security is not None:  # installed roots and a signed client certificate
            security.use_certificates(self._services.certificates)
        config.on_change(self._config_changed)

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Talk to the CSMS until cancelled, reconnecting forever."""
        self._control.apply_settings(csms_settings(self._config))
        await self._services.reservations.restore()
        await self._security_events.restore()
        await self._services.certificates.load()  # before the first connection uses them
        await self._services.firmware.restore()  # a scheduled or installed update goes on
        await self._queue.restore()  # what the last run left unsent goes first
        await self._run_link(
            "ocpp16",
            {
                "ocpp16-clock-aligned": self._metering.run_clock_aligned(),
                "ocpp16-smart-charging": self._profiles.run(),
            },
        )

    async def _serve_registered(self, cp: OcppChargePoint) -> None:
        """While ``cp`` is registered: every status first, then changes, heartbeats, the
        transaction queue and the security events; until the connection ends."""
        try:
            await self._statuses.open(cp)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._statuses.send_changes(cp), name="ocpp16-status")
                self._serve_common(
                    group,
                    cp,
                    "ocpp16",
                    transactions=self._transactions.drain,
                    security_event=security_event_request,
                )
        finally:
            self._statuses.close()

    # --- what the supervisor reports ----------------------------------------------------------

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Send now when registered; offline it is dropped (the reconnect sends the latest)."""
        self._statuses.status_changed(connector_id, status, fault)

    def transaction_started(self, tx: Transaction) -> None:
        self._transactions.started(tx)
        self._metering.transaction_started(tx)
        self._profiles.transaction_started(tx)

    def transaction_stopped(self, tx: Transaction) -> None:
        self._metering.transaction_stopped(tx)  # the reading at the stop joins the data
        self._transactions.stopped(tx)
        self._profiles.transaction_stopped(tx)

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """Keep the latest reading; the sampling timers decide what is sent."""
        self._metering.meter_sampled(sample)

    def reservation_ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        """:class:`~controller.domain.ReservationListener`: forget a stored reservation."""
        self._services.reservations.ended(reservation_id, reason)

    # --- authorization ----------------------------------------------------------------------

    async def authorize(self, id_tag: str) -> AuthResult:
        """The cache (LocalPreAuthorize), else the CSMS, else the offline rules."""
        if len(id_tag) > MAX_ID_TAG:
            log.warning("id %s is longer than OCPP 1.6 allows (20): Invalid", id_tag)
            return AuthResult(AuthStatus.INVALID)
        return await self._authorize_online(
            id_tag,
            lambda: call.Authorize(id_tag=id_tag),
            lambda conf: result_from_info(conf.id_tag_info),
        )

    # --- configuration ----------------------------------------------------------------------

    def _config_changed(self, key: str, value: str) -> None:
        if key.casefold() in SETTING_KEYS:
            self._control.apply_settings(csms_settings(self._config))
