"""The OCPP 2.0.1 adapter: :class:`Ocpp201Adapter` implements :class:`~controller.domain.
CsmsLink` and :class:`~controller.csms.adapter.CsmsAdapter`.

It composes: the link (:class:`~controller.ocppj.link_loop.LinkLoop` in the 2.0.1
:mod:`.link_loop` dialect: connect, BootNotification, Heartbeat, reconnect, security
profiles), the device model (:mod:`.device_model`, GetVariables/SetVariables),
StatusNotification per EVSE, TransactionEvent through the durable queue
(:mod:`.transactions`), authorization (Authorize, the cache, the local list
and the offline rules of :mod:`controller.csms.auth`), reservations
(:class:`~controller.csms.reservations.ReservationBook`, ReservationStatusUpdate), smart
charging (:mod:`.smart_charging`: the profiles' timer, transactions binding and ending
TxProfiles, ChargingRateChanged), the clock-aligned meter values (:mod:`.aligned_data`) and
the security services (:mod:`.security_services`: SecurityEventNotification, sent in order
once registered and kept while offline; certificates; firmware updates). Loop thread only;
the CsmsLink notifications return at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Mapping

from ocpp.v201 import call

from controller.charging_schedule import ConnectorRating
from controller.connector_types import ConnectorStatus, ReservationEnd
from controller.csms.auth import Authorizer
from controller.csms.diagnostics import LogSource, default_log_source, prepare_log
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.get_log import LogUploads
from controller.csms.key_timers import KeyTimers
from controller.csms.link import LinkTiming, endpoint_url
from controller.csms.queue import TransactionQueue
from controller.csms.reservations import ReservationBook
from controller.csms.security import LinkSecurity
from controller.csms.tasks import TaskSet
from controller.csms.timers import Retimer
from controller.csms.wire import iso_utc
from controller.domain import (
    AuthResult,
    ChargePointControl,
    MeterSample,
    Transaction,
    utc_now,
)
from controller.firmware_install import Installer
from controller.ocpp201 import smart_charging
from controller.ocpp201.aligned_data import AlignedData
from controller.ocpp201.any_evse import AnyEvseStatuses
from controller.ocpp201.auth import TokenKinds, result_from_info
from controller.ocpp201.charge_point import Ocpp201ChargePoint
from controller.ocpp201.charging_limits import ExternalLimits
from controller.ocpp201.device_model import AUTH_CACHE_BYTES_MAX, DeviceModel
from controller.ocpp201.diagnostics_handlers import log_status_request
from controller.ocpp201.ended_values import EndedValues
from controller.ocpp201.errors import VERSION
from controller.ocpp201.evse_variables import EvseVariables
from controller.ocpp201.fault_events import FaultEvents
from controller.ocpp201.link_loop import dialect as link_dialect
from controller.ocpp201.monitoring import Monitors
from controller.ocpp201.network_profiles import NetworkProfiles
from controller.ocpp201.notify_events import NotifyEvents
from controller.ocpp201.plug_ins import PlugIns, PlugInTransactions
from controller.ocpp201.reservation_updates import ReservationUpdates
from controller.ocpp201.security_services import build_security_services
from controller.ocpp201.security_wire import security_event_request
from controller.ocpp201.services import Services
from controller.ocpp201.settings import (
    SETTING_VARIABLES,
    AuthVariables,
    ReservationVariables,
    csms_settings,
)
from controller.ocpp201.status import status_request
from controller.ocpp201.transactions import SeqNumbers, TransactionEvents
from controller.ocppj.adapter import LinkedAdapter
from controller.ocppj.caller import SessionCaller, call_checked, describe
from controller.ocppj.frames import CALL_FAILURES
from controller.ocppj.link_loop import LinkLoop
from controller.outbox import Outbox
from controller.storage import Storage, StorageError
from drivers.errors import FaultKind

log = logging.getLogger(__name__)


class Ocpp201Adapter(LinkedAdapter[Ocpp201ChargePoint]):
    """The charging station's OCPP 2.0.1 link to its CSMS (a :class:`CsmsLink`).

    ``boot_request`` is the BootNotification this run sends (its reason decided by the
    factory); ``security`` gives the link its security profile (None: no credentials).
    ``connector_ratings`` (phases, maximum current) serve smart charging; a connector
    missing from it counts as three-phase 32 A.
    """

    def __init__(
        self,
        *,
        url: str,
        chargepoint_id: str,
        boot_request: call.BootNotification,
        control: ChargePointControl,
        model: DeviceModel,
        storage: Storage,
        seq: SeqNumbers,
        plug_ins: PlugIns,
        clock: Callable[[], dt.datetime] = utc_now,
        timing: LinkTiming | None = None,
        security: LinkSecurity | None = None,
        firmware_policy: FirmwarePolicy | None = None,
        firmware_installer: Installer | None = None,
        connector_ratings: Mapping[int, ConnectorRating] | None = None,
        diagnostics_logs: LogSource | None = None,
        network: NetworkProfiles | None = None,
        fallback_url: str | None = None,
        ended_values: EndedValues | None = None,
    ) -> None:
        self.chargepoint_id = chargepoint_id
        timing = timing or LinkTiming()
        self._control = control
        self._clock = clock
        self._tasks = TaskSet()
        self._caller = SessionCaller()
        self._model = model
        self._timers = KeyTimers(model, timing.interval_scale)
        auth_variables = AuthVariables(model)
        self._authorizer = Authorizer(
            auth_variables,
            storage,
            clock,
            cache_lifetime_s=lambda: auth_variables.cache_lifetime_s,
            cache_max_bytes=AUTH_CACHE_BYTES_MAX,
        )
        model.provide("AuthCacheCtrlr.Storage", lambda: str(self._authorizer.cache_bytes))
        model.provide("ClockCtrlr.DateTime", lambda: iso_utc(clock()))
        model.provide("LocalAuthListCtrlr.Entries", lambda: str(self._authorizer.local_list.size))
        self._token_kinds = TokenKinds()
        self._reservations = ReservationBook(
            control, ReservationVariables(model), storage, clock, self._tasks.spawn
        )
        self._reservation_updates = ReservationUpdates(self._tasks.spawn, storage)
        self._ended_values = ended_values or EndedValues(storage)
        self._queue = TransactionQueue(store=Outbox(storage, protocol=VERSION), csms_ids=False)
        self._transactions = TransactionEvents(
            queue=self._queue,
            seq=seq,
            model=model,
            authorizer=self._authorizer,
            tokens=self._token_kinds,
            control=control,
            registered=lambda: self._caller.registered,
            clock=clock,
            spawn=self._tasks.spawn,
            interval_scale=timing.interval_scale,
            took_plug_in=plug_ins.take,
            ended_values=self._ended_values,
        )
        self._plug_in_txs = PlugInTransactions(
            records=plug_ins,
            events=self._transactions,
            model=model,
            control=control,
            clock=clock,
            spawn=self._tasks.spawn,
            interval_scale=timing.interval_scale,
        )
        self._latest: dict[int, MeterSample] = {}
        self._aligned = AlignedData(
            model=model,
            control=control,
            timers=self._timers,
            transactions=self._transactions,
            caller=self._caller,
            latest=self._latest.get,
            spawn=self._tasks.spawn,
            clock=clock,
        )
        self._events = NotifyEvents(clock)
        self._faults = FaultEvents(self._events)
        self._evses = EvseVariables(control, connector_ratings or {}, self._latest.get)
        self._monitors = Monitors(
            storage=storage,
            model=model,
            evses=self._evses,
            events=self._events,
            running=lambda evse_id: control.view(evse_id).transaction is not None,
            clock=clock,
            online=lambda: self._caller.registered,
        )
        self._faces = AnyEvseStatuses(control)  # H01: an any-EVSE reservation's EVSE
        self._profiles = smart_charging.build(
            model=model,
            control=control,
            storage=storage,
            spawn=self._tasks.spawn,
            clock=clock,
            ratings=connector_ratings,
        )
        self._external_limits = ExternalLimits(  # K12, K13
            model=model,
            control=control,
            profiles=self._profiles,
            caller=self._caller,
            spawn=self._tasks.spawn,
            clock=clock,
        )
        self._rates = smart_charging.RateWatch(
            lambda: smart_charging.SmartChargingVariables(model).significance
        )
        model.on_change(self._variable_changed)
        self._security = build_security_services(
            chargepoint_id=chargepoint_id,
            model=model,
            control=control,
            storage=storage,
            send=self._caller.call,
            spawn=self._tasks.spawn,
            clock=clock,
            interval_scale=timing.interval_scale,
            security=security,
            policy=firmware_policy or FirmwarePolicy(),
            installer=firmware_installer,
        )
        self._security_events = self._security.events
        services = Services(
            model=model,
            control=control,
            transactions=self._transactions,
            authorizer=self._authorizer,
            storage=storage,
            spawn=self._tasks.spawn,
            clock=clock,
            latest_sample=self._latest.get,
            boot_request=boot_request,
            security=self._security,
            token_kinds=self._token_kinds,
            reservations=self._reservations,
            profiles=self._profiles,
            events=self._events,
            logs=self._log_uploads(chargepoint_id, storage, diagnostics_logs, timing),
            network=network or NetworkProfiles(storage, {}),
            evses=self._evses,
            monitors=self._monitors,
            plug_ins=plug_ins,
        )
        self._link = LinkLoop(
            dialect=link_dialect(chargepoint_id, services),
            url=endpoint_url(url, chargepoint_id),
            timing=timing,
            security=security,
            boot_request=boot_request,
            settings=model,
            timers=self._timers,
            caller=self._caller,
            spawn=self._tasks.spawn,
            serve=self._serve_registered,
            fallback_url=None
            if fallback_url is None
            else endpoint_url(fallback_url, chargepoint_id),
        )

    def _log_uploads(
        self, chargepoint_id: str, storage: Storage, logs: LogSource | None, timing: LinkTiming
    ) -> LogUploads:
        """GetLog's uploads: the controller's log (``logs``, default the journal or the
        state directory's log file) and the security event history, redacted of the
        BasicAuthPassword."""
        source = logs or default_log_source(storage.path.parent)

        def secrets() -> list[str]:
            return [v for v in (self._model.get("SecurityCtrlr.BasicAuthPassword"),) if v]

        return LogUploads(
            chargepoint_id=chargepoint_id,
            diagnostics_log=functools.partial(prepare_log, source, secrets),
            security_history=self._security.events.history,
            secrets=secrets,
            send=self._caller.call,
            status_request=log_status_request,
            spawn=self._tasks.spawn,
            clock=self._clock,
            interval_scale=timing.interval_scale,
        )

    async def run(self) -> None:
        """Talk to the CSMS until cancelled, reconnecting forever."""
        self._control.apply_settings(csms_settings(self._model))
        await self._security.restore()  # before the first connection uses them
        await self._queue.restore()  # what the last run left unsent goes first
        self._plug_in_txs.end_left_over()  # E02 transactions a power cut interrupted
        self._ended_values.forget_stale()  # the recovery's Ended events took theirs
        await self._reservation_updates.restore()  # before those the restart finds
        await self._reservations.restore(dropped=self._reservation_updates.ended_at_restart)
        await self._authorizer.measure_cache()
        try:
            await self._authorizer.local_list.load()
        except StorageError as exc:  # lookups try again; until then Entries says 0
            log.error("local authorization list unreadable at start: %s", exc)
        await self._monitors.load()
        await self._run_link(
            "ocpp201",
            {
                "ocpp201-tx-updated": self._sample_periodically(),
                "ocpp201-smart-charging": self._profiles.run(),
                "ocpp201-clock-aligned": self._aligned.run_interval(),
                "ocpp201-tx-ended-aligned": self._aligned.run_tx_ended(),
                "ocpp201-cert-renewal": self._security.renewal.run(),
                "ocpp201-periodic-monitors": self._monitors.run(),
            },
        )

    async def _serve_registered(self, cp: Ocpp201ChargePoint) -> None:
        """While ``cp`` is registered: every connector's status (G01), the reservation
        updates raised offline, then heartbeats, the transaction queue and the security
        events (those recorded offline first)."""
        self._security.firmware.booted()  # the running firmware registered: its trial ends
        self._security.renewal.registered()  # A03: a client certificate about to expire
        for connector_id in self._control.connector_ids:
            status = self._faces.face(connector_id, self._control.view(connector_id).status)
            await self._send_status(cp, connector_id, status)
        await self._reservation_updates.flush(cp)
        async with asyncio.TaskGroup() as group:
            self._serve_common(
                group,
                cp,
                "ocpp201",
                transactions=self._transactions.drain,
                security_event=security_event_request,
            )
            group.create_task(self._events.drain(cp), name="ocpp201-notify-events")

    async def _sample_periodically(self) -> None:
        """TransactionEvent Updated every TxUpdatedInterval of each running transaction,
        online or not (the queue keeps them); until cancelled."""
        interval = "SampledDataCtrlr.TxUpdatedInterval"
        timer = Retimer(lambda: self._timers.interval(interval))
        with self._timers.following(interval, timer):
            while True:
                await timer.wait()
                for tx in self._transactions.running():
                    sample = self._latest.get(tx.connector_id)
                    if sample is not None:
                        self._transactions.sampled(sample)

    def _variable_changed(self, name: str, value: str) -> None:
        if name in SETTING_VARIABLES:
            self._control.apply_settings(csms_settings(self._model))

    async def _send_status(
        self, cp: Ocpp201ChargePoint, connector_id: int, status: ConnectorStatus
    ) -> None:
        try:
            await call_checked(cp, status_request(connector_id, status, self._clock()))
        except CALL_FAILURES as exc:
            log.warning("status of EVSE %d not sent: %s", connector_id, describe(exc))

    # --- what the supervisor reports ----------------------------------------------------

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Send now when registered; offline it is dropped (the reconnect sends the latest).
        A running transaction's new charging state is a TransactionEvent, a fault that came
        or went a NotifyEvent (both queued: delivered after a reconnect too)."""
        self._plug_in_txs.status_changed(self._control.view(connector_id))
        self._transactions.status_changed(connector_id, status)
        idle = self._control.view(connector_id).transaction is None
        if status is ConnectorStatus.AVAILABLE and idle:
            self._profiles.connector_idle(connector_id)  # a remote start that never began
        self._faults.changed(connector_id, fault, self._clock())
        shown = self._faces.face(connector_id, status)
        also = self._faces.changed_elsewhere(connector_id)  # H01: any-EVSE reservations
        cp = self._caller.cp
        if cp is not None and self._caller.registered:
            self._tasks.spawn(
                self._send_status(cp, connector_id, shown),
                f"ocpp201-status-{connector_id}",
            )
            for other_id, other in also:
                self._tasks.spawn(
                    self._send_status(cp, other_id, other), f"ocpp201-status-{other_id}"
                )

    def reservation_ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        """:class:`~controller.domain.ReservationListener`: forget the stored reservation and
        tell the CSMS when the charge point ended it on its own (:mod:`.reservation_updates`)."""
        self._reservations.ended(reservation_id, reason)
        cp = self._caller.cp if self._caller.registered else None
        self._reservation_updates.ended(reservation_id, reason, cp)

    def session_id(self, connector_id: int) -> str | None:
        """:class:`~controller.domain.SessionIds`: a transaction begun at the plug-in (E02)
        gives the session its id."""
        return self._plug_in_txs.session_id(connector_id)

    def transaction_started(self, tx: Transaction) -> None:
        self._transactions.started(tx, self._control.view(tx.connector_id).status)
        self._profiles.transaction_started(tx)
        self._rates.forget(tx.connector_id)

    def transaction_stopped(self, tx: Transaction) -> None:
        self._transactions.stopped(tx)
        self._profiles.transaction_stopped(tx)
        self._rates.forget(tx.connector_id)

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """Keep the latest reading (the timers decide what is sent); while a transaction
        runs, an offer that moved by more than LimitChangeSignificance is an Updated
        (ChargingRateChanged). A TxStartPoint EnergyTransfer may be reached by it, and the
        variable monitors look at its power."""
        connector_id = sample.connector_id
        self._latest[connector_id] = sample
        self._transactions.reading(sample)
        self._monitors.reading(connector_id)
        self._external_limits.observe(connector_id)  # K12: a local limit below the CSMS's
        if tx is not None and self._rates.changed(connector_id, sample.offered_a):
            self._transactions.updated(connector_id, "ChargingRateChanged")

    async def authorize(self, id_tag: str) -> AuthResult:
        """The cache (LocalPreAuthorize), else the CSMS (Authorize, C01), else the offline
        rules (LocalAuthorizeOffline, OfflineTxForUnknownIdEnabled)."""
        return await self._authorize_online(
            id_tag,
            # a card, or as the CSMS named it
            lambda: call.Authorize(id_token=self._token_kinds.token(id_tag)),
            lambda conf: result_from_info(conf.id_token_info),
        )
