"""The OCPP 1.6J adapter: :class:`Ocpp16Adapter` implements :class:`~controller.domain.CsmsLink`.

It owns the link to the CSMS (connect, BootNotification, Heartbeat, reconnect), tells the
CSMS what the supervisor reports (status, transactions, meter values) and serves the CSMS's
requests through :class:`~controller.ocpp16.charge_point.OcppChargePoint`. Protocol rules
live in small modules beside it: :mod:`.auth` (cache and local authorization), :mod:`.queue`
(transaction messages), :mod:`.meter_values`, :mod:`.status`, :mod:`.profiles`,
:mod:`.errors` (CALLERRORs) and :mod:`.link` (websocket, backoff, pings).

Everything runs on the loop thread. The CsmsLink notification methods return at once;
:meth:`Ocpp16Adapter.run` does the sending until it is cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call
from ocpp.v16.enums import RegistrationStatus
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from controller.charging_schedule import ConnectorRating
from controller.connector_types import ConnectorStatus, ReservationEnd
from controller.csms.auth import Authorizer
from controller.csms.calls import CallFailed
from controller.csms.certificate_store import CertificateUse
from controller.csms.firmware_signature import file_roots
from controller.csms.link import (
    Backoff,
    LinkDead,
    LinkRefused,
    LinkState,
    LinkTiming,
    endpoint_url,
    keepalive,
    open_link,
)
from controller.csms.queue import TransactionQueue, TxKind, TxMessage
from controller.csms.security_events import SecurityEvents
from controller.csms.timers import Retimer, next_boundary
from controller.csms.wire import iso_utc
from controller.domain import (
    AuthResult,
    AuthStatus,
    ChargePointControl,
    MeterSample,
    ReadingContext,
    Transaction,
    utc_now,
)
from controller.firmware_install import FIRMWARE_DIR, Installer, PipTargetInstaller
from controller.ocpp16.auth import result_from_info
from controller.ocpp16.certificates import CertificateManager
from controller.ocpp16.charge_point import OcppChargePoint
from controller.ocpp16.services import Services
from controller.ocpp16.diagnostics import SECRET_KEYS, Diagnostics, LogSource, default_log_source
from controller.ocpp16.errors import CALL_FAILURES
from controller.ocpp16.extended_trigger import ExtendedTriggers
from controller.ocpp16.firmware import FirmwareUpdater, installed_version
from controller.ocpp16.get_log import LogUploads
from controller.ocpp16.meter_values import WireDict, meter_value, parse_measurands
from controller.ocpp16.profile_service import SmartCharging
from controller.ocpp16.reservations import ReservationBook
from controller.ocpp16.security import LinkSecurity, LinkSecurityError
from controller.ocpp16.settings import SETTING_KEYS, AuthKeys, csms_settings
from controller.ocpp16.status import charge_point_status, error_code, wire_status
from controller.ocpp16.transactions import tx_request
from controller.ocpp16.triggers import TriggerSender
from controller.outbox import Outbox
from drivers.errors import FaultKind

if TYPE_CHECKING:
    from pathlib import Path

    from websockets.asyncio.client import ClientConnection

    from controller.ocpp16.keys import OcppConfig
    from controller.storage import Storage

log = logging.getLogger(__name__)

#: Why a connection attempt or a connection ended; anything else is a bug, logged in full.
LINK_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, unreachable, reset; TimeoutError is one too
    InvalidHandshake,
    InvalidURI,
    ConnectionClosed,
    LinkDead,
    LinkRefused,
    LinkSecurityError,  # TLS or credentials refused, or a profile the URL cannot give
)
CALL_OR_LINK_FAILURES: tuple[type[BaseException], ...] = (*CALL_FAILURES, ConnectionClosed)
#: Seconds between a raised SecurityProfile's answer and closing the link to use it.
RELINK_DELAY_S = 0.2
#: OCPP 1.6 IdToken: CiString20.
MAX_ID_TAG = 20
#: Meter samples kept per transaction for StopTxn*Data; beyond it every other one goes.
MAX_TX_SAMPLES = 240


@dataclass(frozen=True, slots=True)
class _StatusItem:
    connector_id: int
    status: ConnectorStatus
    fault: FaultKind | None
    at: dt.datetime


def security_event_request(event: Mapping[str, str]) -> call.SecurityEventNotification:
    """A recorded security event as the 1.6 security whitepaper's notification."""
    return call.SecurityEventNotification(
        type=event["type"], timestamp=event["timestamp"], tech_info=event.get("techInfo")
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, CallFailed):
        return str(exc)
    if isinstance(exc, OCPPError):
        return f"{exc.code}: {exc.description}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}"


async def _call(cp: OcppChargePoint, payload: Any) -> Any:
    """``cp.call(payload)`` raising on a CALLERROR, and honouring a cancellation it swallowed.

    The library waits for the answer with ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation that arrives together with the answer (CPython gh-86296): the task would
    carry on as if never cancelled, and a TaskGroup waiting for it would hang.
    """
    try:
        return await cp.call(payload, suppress=False)
    finally:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


class Ocpp16Adapter:
    """The charge point's OCPP 1.6J link to its CSMS (a :class:`CsmsLink`).

    ``url`` is the CSMS base URL; ``chargepoint_id`` is appended as the last path segment.
    ``timing`` lets tests shrink every protocol timer (see :class:`LinkTiming`).
    ``connector_ratings`` (phases, maximum current) serve smart charging; a connector
    missing from it counts as three-phase 32 A. ``diagnostics_logs`` is where GetDiagnostics
    reads the log (default: the journal under systemd, else ``<state_dir>/logs``);
    ``firmware_installer`` installs UpdateFirmware's package (default: pip into
    ``<state_dir>/firmware/<version>``).
    ``security`` gives the link its security profile (credentials, TLS: see
    :mod:`.security`); None connects without credentials. ``firmware_signing_ca`` (PEM) holds
    the roots SignedUpdateFirmware's signing certificates must chain to.
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
        firmware_signing_ca: Path | None = None,
    ) -> None:
        self.chargepoint_id = chargepoint_id
        self.url = endpoint_url(url, chargepoint_id)
        self.timing = timing or LinkTiming()
        self._security = security  # None: no credentials, system CAs for wss://
        self._security_events = SecurityEvents(storage, clock)
        if security is not None:
            security.report_to(self._security_events)
            security.on_upgrade(self._relink)
        self._boot_request = call.BootNotification(
            charge_point_model=model,
            charge_point_vendor=vendor,
            charge_point_serial_number=serial or None,
            firmware_version=firmware_version or None,
        )
        self._control = control
        self._config = config
        self._clock = clock
        self._authorizer = Authorizer(AuthKeys(config), storage, clock)
        self._profiles = SmartCharging(
            control=control,
            config=config,
            storage=storage,
            spawn=self._spawn,
            clock=clock,
            ratings=connector_ratings,
        )
        self._queue = TransactionQueue(store=Outbox(storage))
        self._state = LinkState.STOPPED
        self._cp: OcppChargePoint | None = None
        self._closed: asyncio.Event | None = None
        self._registered = False
        self._statuses: asyncio.Queue[_StatusItem] | None = None
        self._zero_reported: ConnectorStatus | None = None
        self._zero_sent: ConnectorStatus | None = None
        self._latest: dict[int, MeterSample] = {}
        self._used: dict[tuple[int, ReadingContext], MeterSample] = {}
        self._transactions: dict[str, Transaction] = {}
        self._samplers: dict[str, asyncio.Task[None]] = {}
        self._aligned_fired: dt.datetime | None = None
        self._aligned_target: dt.datetime | None = None
        self._retimers: defaultdict[str, set[Retimer]] = defaultdict(set)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reservations = ReservationBook(control, config, storage, clock, self._spawn)
        self._triggers = TriggerSender(
            control=control,
            config=config,
            boot_request=self._boot_request,
            latest_sample=self._latest.get,
            clock=clock,
            spawn=self._spawn,
            diagnostics_status=lambda: self._services.diagnostics.status,
            firmware_status=lambda: self._services.firmware.status,
        )
        self._services = Services(
            control=control,
            config=config,
            authorizer=self._authorizer,
            reservations=self._reservations,
            triggers=self._triggers,
            profiles=self._profiles,
            diagnostics=Diagnostics(
                chargepoint_id=chargepoint_id,
                logs=diagnostics_logs or default_log_source(storage.path.parent),
                secrets=lambda: [v for k in SECRET_KEYS if (v := config.get(k))],
                send=self._call_now,
                spawn=self._spawn,
                clock=clock,
                interval_scale=self.timing.interval_scale,
            ),
            firmware=FirmwareUpdater(
                control=control,
                installer=firmware_installer
                or PipTargetInstaller(storage.path.parent / FIRMWARE_DIR),
                current_version=installed_version(),
                send=self._call_now,
                spawn=self._spawn,
                clock=clock,
                storage=storage,
                record_event=self._security_events.record,
                signing_roots=lambda: (
                    file_roots(firmware_signing_ca)
                    + self._services.certificates.roots(CertificateUse.MANUFACTURER_ROOT)
                ),
                interval_scale=self.timing.interval_scale,
            ),
            clock=clock,
            spawn=self._spawn,
            security_events=self._security_events,
            certificates=CertificateManager(
                state_dir=storage.path.parent,
                config=config,
                chargepoint_id=chargepoint_id,
                ca_file=security.files.ca_file if security is not None else None,
                send=self._call_now,
                events=self._security_events,
                clock=clock,
            ),
            logs=LogUploads(
                chargepoint_id=chargepoint_id,
                diagnostics_log=lambda *window: self._services.diagnostics.prepare(*window),
                security_history=self._security_events.history,
                secrets=lambda: [v for k in SECRET_KEYS if (v := config.get(k))],
                send=self._call_now,
                spawn=self._spawn,
                clock=clock,
                interval_scale=self.timing.interval_scale,
            ),
            extended_triggers=ExtendedTriggers(
                triggers=self._triggers,
                log_status=lambda: self._services.logs.status_notification(),
                report_firmware=lambda: self._services.firmware.report_signed_status(),
                request_signing=lambda: self._services.certificates.request_signing(),
            ),
        )
        if security is not None:  # installed roots and a signed client certificate
            security.use_certificates(self._services.certificates)
        config.on_change(self._config_changed)

    # --- state ------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def online(self) -> bool:
        """True while a websocket to the CSMS is open (registered or not)."""
        return self._cp is not None

    @property
    def registered(self) -> bool:
        """True while the current connection's BootNotification is Accepted."""
        return self._registered

    @property
    def queued(self) -> int:
        """Transaction messages waiting to be sent (or being sent)."""
        return len(self._queue)

    async def resync(self) -> None:
        """Write the transaction queue to the database again (it failed and works again)."""
        await self._queue.resync()

    async def flush(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the transaction queue to empty (before a reset)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.wait_empty()
        except TimeoutError:
            return False
        return True

    def _set_state(self, state: LinkState) -> None:
        if state is not self._state:
            log.info("CSMS link %s: %s -> %s", self.url, self._state, state)
            self._state = state

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Talk to the CSMS until cancelled, reconnecting forever."""
        self._control.apply_settings(csms_settings(self._config))
        await self._reservations.restore()
        await self._security_events.restore()
        await self._services.certificates.load()  # before the first connection uses them
        await self._services.firmware.restore()  # a scheduled or installed update goes on
        await self._queue.restore()  # what the last run left unsent goes first
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._link_loop(), name="ocpp16-link")
                group.create_task(self._clock_aligned_loop(), name="ocpp16-clock-aligned")
                group.create_task(self._profiles.run(), name="ocpp16-smart-charging")
        finally:
            self._set_state(LinkState.STOPPED)
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._security_events.flush()  # stored before the storage closes

    async def _link_loop(self) -> None:
        timing = self.timing
        backoff = Backoff(timing.backoff_initial_s, timing.backoff_max_s, timing.backoff_jitter)
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                await self._connect_once(backoff)
            except* LINK_ERRORS as group:
                log.warning("CSMS link %s: %s", self.url, "; ".join(map(str, group.exceptions)))
            except* Exception as group:
                log.error("CSMS link failed unexpectedly; reconnecting", exc_info=group)
            delay = backoff.next_delay()
            self._set_state(LinkState.BACKOFF)
            log.info("reconnecting to %s in %.1f s", self.url, delay)
            await asyncio.sleep(delay)

    async def _connect_once(self, backoff: Backoff) -> None:
        if self._security is not None:
            ws = await self._security.open(self.url, self.timing)
        else:
            ws = await open_link(self.url, self.timing)
        try:
            await self._session(ws, backoff)
        finally:
            await ws.close()  # 1000 normal closure, also on shutdown; at once when already down

    def _relink(self) -> None:
        """SecurityProfile was raised: close the link so the next connection uses it."""
        cp = self._cp
        if cp is not None:
            self._spawn(self._close_after_answer(cp), "ocpp16-relink")

    async def _close_after_answer(self, cp: OcppChargePoint) -> None:
        await asyncio.sleep(RELINK_DELAY_S)  # the ChangeConfiguration answer goes out first
        if self._cp is cp:
            log.info("closing the CSMS link to reconnect with the new SecurityProfile")
            await cp._connection.close()

    async def _session(self, ws: ClientConnection, backoff: Backoff) -> None:
        cp = OcppChargePoint(
            self.chargepoint_id, ws, self._services, self.timing.response_timeout_s
        )
        closed = asyncio.Event()
        self._cp, self._closed = cp, closed
        self._set_state(LinkState.BOOTING)
        pings = Retimer(lambda: self._interval("WebSocketPingInterval"))
        self._retimers["websocketpinginterval"].add(pings)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(cp.start(), name="ocpp16-receive")
                group.create_task(
                    keepalive(ws, pings, lambda: self._interval("WebSocketPingInterval") or 1.0),
                    name="ocpp16-ping",
                )
                group.create_task(self._converse(cp, backoff), name="ocpp16-converse")
        finally:
            self._retimers["websocketpinginterval"].discard(pings)
            closed.set()
            self._cp = self._closed = self._statuses = None
            self._registered = False

    async def _converse(self, cp: OcppChargePoint, backoff: Backoff) -> None:
        await self._boot(cp)
        backoff.reset()
        self._registered = True
        self._services.firmware.booted()  # the running firmware works: its trial ends
        self._set_state(LinkState.REGISTERED)
        statuses: asyncio.Queue[_StatusItem] = asyncio.Queue()
        self._statuses = statuses
        for item in self._status_sweep():
            await self._send_status(cp, item)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._status_worker(cp, statuses), name="ocpp16-status")
            group.create_task(self._heartbeat(cp), name="ocpp16-heartbeat")
            group.create_task(
                self._queue.drain(
                    lambda message, tid: self._send_tx(cp, message, tid),
                    self._tx_confirmed,
                    lambda: self._config.get_int("TransactionMessageAttempts"),
                    lambda: (
                        self._config.get_int("TransactionMessageRetryInterval")
                        * self.timing.interval_scale
                    ),
                ),
                name="ocpp16-transactions",
            )
            group.create_task(
                self._security_events.drain(
                    lambda event: _call(cp, security_event_request(event)), CALL_FAILURES
                ),
                name="ocpp16-security-events",
            )

    async def _boot(self, cp: OcppChargePoint) -> None:
        """BootNotification until Accepted (1.6 §4.2: Pending and Rejected retry later)."""
        while True:
            try:
                conf = await _call(cp, self._boot_request)
            except CALL_FAILURES as exc:
                delay = self.timing.boot_retry_s
                log.warning("BootNotification failed (%s); again in %.1f s", _describe(exc), delay)
            else:
                if conf.status == RegistrationStatus.accepted:
                    log.info("BootNotification accepted; heartbeat every %s s", conf.interval)
                    if conf.interval > 0:
                        await self._set_key("HeartbeatInterval", str(conf.interval))
                    return
                self._set_state(
                    LinkState.PENDING
                    if conf.status == RegistrationStatus.pending
                    else LinkState.REJECTED
                )
                delay = (
                    conf.interval * self.timing.interval_scale
                    if conf.interval > 0
                    else self.timing.boot_retry_s
                )
                log.info("BootNotification %s; again in %.1f s", conf.status, delay)
            await asyncio.sleep(delay)

    async def _set_key(self, key: str, value: str) -> None:
        if self._config.get(key) == value:
            return
        status = await self._config.change(key, value)
        if status.value not in ("Accepted", "RebootRequired"):
            log.warning("could not set %s to %s: %s", key, value, status)

    async def _heartbeat(self, cp: OcppChargePoint) -> None:
        timer = Retimer(lambda: self._interval("HeartbeatInterval"))
        self._retimers["heartbeatinterval"].add(timer)
        try:
            while True:
                await timer.wait()
                try:
                    await _call(cp, call.Heartbeat())
                except CALL_FAILURES as exc:
                    log.warning("Heartbeat failed: %s", _describe(exc))
        finally:
            self._retimers["heartbeatinterval"].discard(timer)

    # --- calls ------------------------------------------------------------------------------

    async def _call_now(self, payload: Any) -> Any:
        """A call from outside the session's tasks (authorize, clock-aligned values).

        Raises :class:`CallFailed` when offline, unanswered, or the link closes meanwhile.
        """
        cp, closed = self._cp, self._closed
        if cp is None or closed is None or not self._registered:
            raise CallFailed("not connected and registered")
        calling = asyncio.ensure_future(_call(cp, payload))
        closing = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({calling, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not calling.done():
                calling.cancel()
        if not calling.done():
            raise CallFailed("the link closed")
        try:
            return calling.result()
        except CALL_OR_LINK_FAILURES as exc:
            raise CallFailed(_describe(exc)) from exc

    async def _send_tx(
        self, cp: OcppChargePoint, message: TxMessage, transaction_id: int | None
    ) -> Any:
        try:
            return await _call(cp, tx_request(message, transaction_id))
        except CALL_FAILURES as exc:
            raise CallFailed(_describe(exc)) from exc

    # --- status -----------------------------------------------------------------------------

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        """Send now when registered; offline it is dropped (the reconnect sends the latest)."""
        if connector_id == 0:
            self._zero_reported = status
        elif status is ConnectorStatus.AVAILABLE and self._running(connector_id) is None:
            self._profiles.connector_idle(connector_id)  # a remote start that never began
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

    def _derived_zero(self) -> ConnectorStatus:
        ids = self._control.connector_ids
        return charge_point_status(self._control.view(c).status for c in ids)

    def _status_sweep(self) -> list[_StatusItem]:
        """Connector 0 and every connector as they are now (after each Boot accepted)."""
        now = self._clock()
        views = [self._control.view(c) for c in self._control.connector_ids]
        zero = self._zero_reported or charge_point_status(v.status for v in views)
        self._zero_sent = zero
        return [_StatusItem(0, zero, None, now)] + [
            _StatusItem(v.connector_id, v.status, v.fault, now) for v in views
        ]

    async def _status_worker(
        self, cp: OcppChargePoint, statuses: asyncio.Queue[_StatusItem]
    ) -> None:
        while True:
            await self._send_status(cp, await statuses.get())

    async def _send_status(self, cp: OcppChargePoint, item: _StatusItem) -> None:
        request = call.StatusNotification(
            connector_id=item.connector_id,
            error_code=error_code(item.fault),
            status=wire_status(item.status),
            timestamp=iso_utc(item.at),
            info=item.fault.value if item.fault else None,
        )
        try:
            await _call(cp, request)
        except CALL_FAILURES as exc:
            log.warning(
                "StatusNotification %s of connector %d failed: %s",
                item.status,
                item.connector_id,
                _describe(exc),
            )

    # --- authorization ----------------------------------------------------------------------

    async def authorize(self, id_tag: str) -> AuthResult:
        """The cache (LocalPreAuthorize), else the CSMS, else the offline rules."""
        if len(id_tag) > MAX_ID_TAG:
            log.warning("id %s is longer than OCPP 1.6 allows (20): Invalid", id_tag)
            return AuthResult(AuthStatus.INVALID)
        pre = await self._authorizer.pre_authorized(id_tag)
        if pre is not None:
            log.info("%s pre-authorized from the cache", id_tag)
            return pre
        if self._registered:
            try:
                # one response timeout in all, however long other calls hold the link
                async with asyncio.timeout(self.timing.response_timeout_s):
                    conf = await self._call_now(call.Authorize(id_tag=id_tag))
            except (CallFailed, TimeoutError) as exc:
                log.warning(
                    "Authorize %s unanswered (%s): deciding offline", id_tag, _describe(exc)
                )
            else:
                return await self._authorizer.remember(id_tag, result_from_info(conf.id_tag_info))
        result = await self._authorizer.offline(id_tag)
        log.info("%s authorized offline: %s", id_tag, result.status)
        return result

    # --- transactions -----------------------------------------------------------------------

    def transaction_started(self, tx: Transaction) -> None:
        self._transactions[tx.local_id] = tx
        latest = self._latest.get(tx.connector_id)
        if latest is not None:
            self._record(tx, latest, ReadingContext.BEGIN)
        if tx.csms_id is not None:  # resumed after a restart: the CSMS knows it already
            self._queue.set_csms_id(tx.local_id, tx.csms_id)
        else:
            body = {
                "connector_id": tx.connector_id,
                "id_tag": tx.id_tag,
                "meter_start": round(tx.meter_start_wh),
                "timestamp": iso_utc(tx.started_at),
            }
            if tx.reservation_id is not None:  # OCPP: this ends the reservation at the CSMS
                body["reservation_id"] = tx.reservation_id
            self._queue.put(TxMessage(TxKind.START, tx.local_id, body))
        self._profiles.transaction_started(tx)
        task = asyncio.create_task(
            self._sample_periodically(tx), name=f"ocpp16-sample-{tx.local_id}"
        )
        self._track(task)
        self._samplers[tx.local_id] = task

    def transaction_stopped(self, tx: Transaction) -> None:
        sampler = self._samplers.pop(tx.local_id, None)
        if sampler is not None:
            sampler.cancel()
        self._transactions.setdefault(tx.local_id, tx)
        if tx.csms_id is not None:
            self._queue.set_csms_id(tx.local_id, tx.csms_id)
        latest = self._latest.get(tx.connector_id)
        if latest is not None:
            self._record(tx, latest, ReadingContext.END)
        meter_stop = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.meter_start_wh
        body = {
            "meter_stop": round(meter_stop),
            "timestamp": iso_utc(tx.stopped_at or self._clock()),
            "reason": tx.stop_reason.value if tx.stop_reason else None,
            "id_tag": tx.stop_id_tag,
            "transaction_data": self._transaction_data(tx) or None,
        }
        self._queue.put(TxMessage(TxKind.STOP, tx.local_id, body))
        self._profiles.transaction_stopped(tx)

    def reservation_ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        """:class:`~controller.domain.ReservationListener`: forget a stored reservation."""
        self._reservations.ended(reservation_id, reason)

    async def _tx_confirmed(self, message: TxMessage, conf: Any) -> None:
        tx = self._transactions.get(message.local_id)
        if message.kind is TxKind.START:
            if tx is not None:
                tx.csms_id = conf.transaction_id
            log.info("transaction %s is %s at the CSMS", message.local_id, conf.transaction_id)
            result = await self._authorizer.remember(
                message.body["id_tag"], result_from_info(conf.id_tag_info)
            )
            if (
                not result.accepted
                and tx is not None
                and tx.running
                and self._config.get_bool("StopTransactionOnInvalidId")
            ):
                log.warning("CSMS refused %s (%s): stopping", tx.id_tag, result.status)
                self._spawn(self._control.deauthorize(tx), f"ocpp16-deauthorize-{tx.local_id}")
        elif message.kind is TxKind.STOP:
            self._transactions.pop(message.local_id, None)
            stop_tag = message.body.get("id_tag")
            if stop_tag and conf.id_tag_info is not None:
                await self._authorizer.remember(stop_tag, result_from_info(conf.id_tag_info))

    # --- meter values -----------------------------------------------------------------------

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        """Keep the latest reading; the sampling timers decide what is sent."""
        self._latest[sample.connector_id] = sample

    def _fresh(self, connector_id: int, context: ReadingContext) -> MeterSample | None:
        """The latest sample of a connector, once per context (a stale one is not resent)."""
        sample = self._latest.get(connector_id)
        if sample is None or self._used.get((connector_id, context)) is sample:
            return None
        self._used[(connector_id, context)] = sample
        return sample

    def _record(self, tx: Transaction, sample: MeterSample, context: ReadingContext) -> None:
        tx.samples.append(dataclasses.replace(sample, context=context))
        if len(tx.samples) > MAX_TX_SAMPLES:
            tx.samples[:] = tx.samples[::2]

    def _measurands(self, key: str) -> Sequence[Any]:
        return parse_measurands(self._config.get_list(key))

    def _transaction_data(self, tx: Transaction) -> list[WireDict]:
        sampled = self._measurands("StopTxnSampledData")
        aligned = self._measurands("StopTxnAlignedData")
        data = []
        for sample in tx.samples:
            measurands = aligned if sample.context is ReadingContext.CLOCK else sampled
            value = meter_value(sample, measurands, sample.context) if measurands else None
            if value is not None:
                data.append(value)
        return data

    def _queue_meter_value(self, tx: Transaction, value: WireDict) -> None:
        body = {"connector_id": tx.connector_id, "meter_value": [value]}
        self._queue.put(TxMessage(TxKind.METER, tx.local_id, body))

    async def _sample_periodically(self, tx: Transaction) -> None:
        """MeterValueSampleInterval from the start of the transaction (1.6 §9.1.9)."""
        timer = Retimer(lambda: self._interval("MeterValueSampleInterval"))
        self._retimers["metervaluesampleinterval"].add(timer)
        try:
            while True:
                await timer.wait()
                sample = self._fresh(tx.connector_id, ReadingContext.PERIODIC)
                if sample is None:
                    continue
                self._record(tx, sample, ReadingContext.PERIODIC)
                measurands = self._measurands("MeterValuesSampledData")
                value = meter_value(sample, measurands, ReadingContext.PERIODIC)
                if value is not None:
                    self._queue_meter_value(tx, value)
        finally:
            self._retimers["metervaluesampleinterval"].discard(timer)

    def _until_boundary(self) -> float | None:
        interval = self._interval("ClockAlignedDataInterval")
        if interval is None:
            return None
        now = self._clock()
        fired = self._aligned_fired
        if fired is not None and fired > now + dt.timedelta(seconds=interval):
            fired = None  # the wall clock was set back (NTP on a Pi without RTC): start afresh
        since = max(now, fired) if fired is not None else now
        self._aligned_target = next_boundary(since, interval)
        return max((self._aligned_target - now).total_seconds(), 0.001)

    async def _clock_aligned_loop(self) -> None:
        """ClockAlignedDataInterval boundaries: every connector, with or without a transaction."""
        timer = Retimer(self._until_boundary)
        self._retimers["clockaligneddatainterval"].add(timer)
        while True:
            await timer.wait()
            self._aligned_fired = self._aligned_target
            self._clock_aligned_tick()

    def _clock_aligned_tick(self) -> None:
        measurands = self._measurands("MeterValuesAlignedData")
        for connector_id in self._control.connector_ids:
            sample = self._fresh(connector_id, ReadingContext.CLOCK)
            if sample is None:
                continue
            tx = self._running(connector_id)
            if tx is not None:
                self._record(tx, sample, ReadingContext.CLOCK)
            value = meter_value(sample, measurands, ReadingContext.CLOCK) if measurands else None
            if value is None:
                continue
            if tx is not None:
                self._queue_meter_value(tx, value)
            elif self._registered:
                request = call.MeterValues(connector_id=connector_id, meter_value=[value])
                self._spawn(self._send_untracked(request), f"ocpp16-aligned-{connector_id}")
            else:
                log.debug("offline: clock-aligned values of connector %d dropped", connector_id)

    async def _send_untracked(self, request: Any) -> None:
        try:
            await self._call_now(request)
        except CallFailed as exc:
            log.warning("%s failed: %s", type(request).__name__, exc)

    def _running(self, connector_id: int) -> Transaction | None:
        for tx in self._transactions.values():
            if tx.connector_id == connector_id and tx.running:
                return tx
        return None

    # --- configuration and limits -----------------------------------------------------------

    def _interval(self, key: str) -> float | None:
        """A 1.6 interval key in seconds (scaled by ``timing.interval_scale``); None = off."""
        value = self._config.get_int(key)
        return value * self.timing.interval_scale if value > 0 else None

    def _config_changed(self, key: str, value: str) -> None:
        for timer in self._retimers.get(key.casefold(), ()):
            timer.retime()
        if key.casefold() in SETTING_KEYS:
            self._control.apply_settings(csms_settings(self._config))

    # --- tasks ------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        self._track(asyncio.create_task(coro, name=name))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
