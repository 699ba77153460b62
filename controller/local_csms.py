"""A small, real OCPP 1.6J central system (CSMS) on loopback, for ``picharge demo`` and tests.

It is built on the ``ocpp`` library's server side: one :class:`ocpp.v16.ChargePoint`
subclass per websocket (``websockets`` asyncio server, subprotocol ``ocpp1.6``; the charge
point id is the last path segment of the URL). It answers every charge-point-initiated 1.6
Core action as a real CSMS would (transaction ids counting up from 1, idTagInfo from a tag
table, the current time), keeps a record of each transaction for a session summary, and
records everything it received so a test can wait for a message and assert on it.

It is also strict where a CSMS written in Python is strict: a call that fails the OCPP 1.6
JSON schemas is answered with a CALLERROR by the library, and every such protocol slip (bad
frame, schema violation, timestamp without UTC offset, message id over 36 characters, a call
sent while the boot was Rejected or a boot retried before the interval) is kept in
:attr:`LocalCsms.violations`, so a test suite can fail on any of them.

Fault knobs for tests: :meth:`LocalCsms.drop_connections` (abrupt loss),
:meth:`LocalCsms.freeze_connections` (a dead but open link), :attr:`LocalCsms.refuse_connections`
(HTTP 503 on handshakes), :meth:`LocalCsms.set_response` (answer differently, or late) and
:meth:`LocalCsms.send_raw` (any frame, valid or not, straight to the charge point).

Everything runs on the caller's event loop; nothing here blocks it or starts a thread (the
``ocpp`` library validates schemas in the loop's default executor). Payloads are the wire's
camelCase dicts throughout. Times: ``*_s`` are :func:`time.monotonic` seconds; timestamps are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hmac
import http
import inspect
import itertools
import json
import logging
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, unpack, validate_payload
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
#: The same server also speaks OCPP 2.0.1 (:mod:`controller.local_csms201`) to a charging
#: station that asks for this subprotocol.
SUBPROTOCOL_201 = "ocpp2.0.1"
#: The vendorId whose DataTransfer this CSMS accepts (compared case-insensitively).
VENDOR_ID = "picharge"
#: OCPP-J: a message id is at most 36 characters.
MAX_MESSAGE_ID_LEN = 36
#: A boot retried this much earlier than the interval still counts as on time (timer jitter).
BOOT_RETRY_TOLERANCE_S = 0.05

Payload = dict[str, Any]
ResponseOverride = Callable[[Payload], Payload | Awaitable[Payload | None] | None]
T = TypeVar("T")

#: The charge-point-initiated actions this CSMS answers.
HANDLED_ACTIONS = frozenset(
    {
        Action.authorize,
        Action.boot_notification,
        Action.data_transfer,
        Action.diagnostics_status_notification,
        Action.firmware_status_notification,
        Action.heartbeat,
        Action.log_status_notification,
        Action.meter_values,
        Action.security_event_notification,
        Action.sign_certificate,
        Action.signed_firmware_status_notification,
        Action.start_transaction,
        Action.status_notification,
        Action.stop_transaction,
    }
)


#: The charging-station-initiated 2.0.1 actions this CSMS answers.
HANDLED_ACTIONS_201 = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)


class UnexpectedResult(Exception):
    """:meth:`LocalCsms.call` expected a CALLERROR but the charge point answered normally."""


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One CALL from a charge point that passed schema validation, recorded once answered."""

    cp_id: str
    action: str
    payload: Payload
    monotonic_s: float  # when the frame arrived


class RawFrame(NamedTuple):
    """One websocket frame exactly as a charge point sent it (any message type, or garbage)."""

    cp_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Violation:
    """Something a charge point sent that breaks OCPP 1.6J (see the module docstring)."""

    cp_id: str
    frame: str
    problem: str


@dataclass(frozen=True, slots=True)
class ConnectionAttempt:
    """A websocket handshake; ``refused`` when :attr:`LocalCsms.refuse_connections` was set."""

    cp_id: str
    monotonic_s: float
    refused: bool
    authorization: str | None = None  # the HTTP Authorization header as sent


@dataclass(slots=True)
class TransactionRecord:
    """A transaction as the CSMS saw it. Energies in Wh as the charge point reported them.

    ``stop_reason`` is as sent: None means the charge point left it out (OCPP: "Local").
    ``meter_values`` holds the ``meterValue`` items of MeterValues calls naming this
    transaction; ``transaction_data`` those of StopTransaction.
    """

    transaction_id: int
    cp_id: str
    connector_id: int
    id_tag: str
    id_tag_status: str  # what StartTransaction answered
    meter_start_wh: int
    started_at: dt.datetime
    reservation_id: int | None = None
    meter_stop_wh: int | None = None
    stopped_at: dt.datetime | None = None
    stop_reason: str | None = None
    stop_id_tag: str | None = None
    meter_values: list[Payload] = field(default_factory=list)
    transaction_data: list[Payload] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def energy_wh(self) -> int | None:
        """Energy of the finished transaction (meterStop - meterStart); None while running."""
        return None if self.meter_stop_wh is None else self.meter_stop_wh - self.meter_start_wh

    @property
    def duration_s(self) -> float | None:
        if self.stopped_at is None:
            return None
        return (self.stopped_at - self.started_at).total_seconds()


# --- helpers ------------------------------------------------------------------------------


def utc_timestamp(moment: dt.datetime | None = None) -> str:
    """An OCPP timestamp: UTC, millisecond precision, ``Z`` suffix."""
    moment = moment or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(text: str) -> dt.datetime | None:
    """A timezone-aware datetime, or None when ``text`` is no ISO 8601 time with an offset."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


def _timestamp_problems(payload: Any) -> list[str]:
    """Every ``timestamp`` value in ``payload`` (at any depth) that lacks a UTC offset."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key == "timestamp" and isinstance(value, str) and parse_timestamp(value) is None:
                found.append(f"timestamp {value!r} has no UTC offset")
            else:
                found.extend(_timestamp_problems(value))
    elif isinstance(payload, list):
        for item in payload:
            found.extend(_timestamp_problems(item))
    return found


def _password_bytes(authorization_key: str) -> bytes:
    """What a Basic-auth header carries for ``authorization_key`` (see
    :meth:`LocalCsms._credentials_ok`)."""
    hex_digits = set("0123456789abcdefABCDEF")
    key = authorization_key
    if 32 <= len(key) <= 40 and len(key) % 2 == 0 and set(key) <= hex_digits:
        return bytes.fromhex(key)
    return key.encode()


def cp_id_from_path(path: str) -> str:
    """The charge point id: the last non-empty path segment, percent-decoded."""
    segments = [s for s in urlsplit(path).path.split("/") if s]
    return unquote(segments[-1]) if segments else ""


def _short(payload: Any, limit: int = 160) -> str:
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- one connection -----------------------------------------------------------------------


class _SessionMixin:
    """The CSMS side of one charge point's websocket, whatever its version (the version's
    ``ChargePoint`` follows this class in the bases). Loop thread only.

    The handlers only adapt: :class:`LocalCsms` decides every answer. The library hands
    handlers snake_case keyword arguments; the answer logic wants the wire's camelCase, so
    :meth:`route_message` keeps the request being handled in ``_request`` (one call at a
    time per connection: the library's receive loop awaits each).
    """

    #: The version's call_result module (answers are built from its dataclasses).
    results: Any = call_result
    id: str
    _ocpp_version: str
    if TYPE_CHECKING:  # the version's ChargePoint provides them

        async def start(self) -> None: ...

        async def call(self, payload: Any, suppress: bool = ..., unique_id: Any = ...) -> Any: ...

    def __init__(self, cp_id: str, ws: ServerConnection, csms: LocalCsms) -> None:
        super().__init__(cp_id, ws, response_timeout=csms.call_timeout_s)  # type: ignore[call-arg]
        self.ws = ws
        self._csms = csms
        self._request: Payload = {}
        self.frozen = False
        self.finished = asyncio.Event()
        self.pending_calls: set[asyncio.Task[Any]] = set()
        self.awaiting: set[str] = set()  # ids of our CALLs still unanswered
        self.answers: dict[str, str] = {}  # unique id -> raw CALLRESULT/CALLERROR frame

    async def route_message(self, raw_msg: str) -> None:
        arrived_s = time.monotonic()
        csms = self._csms
        csms._record_raw(RawFrame(self.id, raw_msg))
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            csms._violation(self.id, raw_msg, f"not an OCPP-J message: {error}")
            return  # the library would only log it: there is no id to answer
        unique_id = msg.unique_id
        if not isinstance(unique_id, str) or len(unique_id) > MAX_MESSAGE_ID_LEN:
            csms._violation(self.id, raw_msg, f"message id {unique_id!r} is not a string <= 36")
        if not isinstance(msg, Call):
            # Only an answer a call() awaits goes to the library: it queues every answer
            # for call() to read in order, so an answer to a raw CALL (send_raw, a flood)
            # would wait there for ever and be read, logged and skipped, one recursion deep
            # each, before the next call()'s own. The others are in raw_received.
            if unique_id in self.awaiting:
                self.answers[unique_id] = raw_msg
                await super().route_message(raw_msg)  # type: ignore[misc]
            return
        try:
            await validate_payload(msg, self._ocpp_version)
        except OCPPError as error:
            csms._violation(self.id, raw_msg, f"{error.code}: {error.description} {error.details}")
            await super().route_message(raw_msg)  # type: ignore[misc]  # answered: CALLERROR
            return
        for problem in _timestamp_problems(msg.payload):
            csms._violation(self.id, raw_msg, problem)
        csms._check_boot_order(self.id, msg.action, raw_msg, arrived_s)
        self._request = msg.payload
        await super().route_message(raw_msg)  # type: ignore[misc]
        csms._record_call(Received(self.id, msg.action, msg.payload, arrived_s))

    async def _reply(self, action: str) -> Any:
        answer = await self._csms._answer(self.id, action, self._request, self._ocpp_version)
        return getattr(self.results, action)(**camel_to_snake_case(answer))


class _ChargePointSession(_SessionMixin, ChargePoint):
    """An OCPP 1.6J charge point's session."""

    @on(Action.boot_notification)
    async def _on_boot_notification(self, **_: Any) -> Any:
        return await self._reply(Action.boot_notification)

    @on(Action.heartbeat)
    async def _on_heartbeat(self, **_: Any) -> Any:
        return await self._reply(Action.heartbeat)

    @on(Action.authorize)
    async def _on_authorize(self, **_: Any) -> Any:
        return await self._reply(Action.authorize)

    @on(Action.start_transaction)
    async def _on_start_transaction(self, **_: Any) -> Any:
        return await self._reply(Action.start_transaction)

    @on(Action.stop_transaction)
    async def _on_stop_transaction(self, **_: Any) -> Any:
        return await self._reply(Action.stop_transaction)

    @on(Action.status_notification)
    async def _on_status_notification(self, **_: Any) -> Any:
        return await self._reply(Action.status_notification)

    @on(Action.meter_values)
    async def _on_meter_values(self, **_: Any) -> Any:
        return await self._reply(Action.meter_values)

    @on(Action.data_transfer)
    async def _on_data_transfer(self, **_: Any) -> Any:
        return await self._reply(Action.data_transfer)

    @on(Action.diagnostics_status_notification)
    async def _on_diagnostics_status_notification(self, **_: Any) -> Any:
        return await self._reply(Action.diagnostics_status_notification)

    @on(Action.firmware_status_notification)
    async def _on_firmware_status_notification(self, **_: Any) -> Any:
        return await self._reply(Action.firmware_status_notification)

    @on(Action.security_event_notification)
    async def _on_security_event_notification(self, **_: Any) -> Any:
        return await self._reply(Action.security_event_notification)

    @on(Action.log_status_notification)
    async def _on_log_status_notification(self, **_: Any) -> Any:
        return await self._reply(Action.log_status_notification)

    @on(Action.signed_firmware_status_notification)
    async def _on_signed_firmware_status_notification(self, **_: Any) -> Any:
        return await self._reply(Action.signed_firmware_status_notification)

    @on(Action.sign_certificate)
    async def _on_sign_certificate(self, **_: Any) -> Any:
        return await self._reply(Action.sign_certificate)


# --- the central system -------------------------------------------------------------------


class LocalCsms:
    """An OCPP 1.6J central system on one websocket server. Loop thread only.

    ``authorized_tags``: id tag -> AuthorizationStatus (``"Accepted"``, ``"Blocked"``,
    ``"Expired"``, ...), compared case-insensitively; other tags are ``"Invalid"``.
    ``heartbeat_interval_s``: the interval in BootNotification answers (also the retry
    interval for Pending and Rejected). ``boot_status``: what BootNotification answers.
    Both may be changed at run time. ``on_message(cp_id, action, payload)`` is called for
    every recorded call (live printing); ``call_timeout_s`` bounds :meth:`call`.
    ``basic_auth`` (cp id -> password) and ``ssl_context`` serve the security profiles.
    """

    def __init__(
        self,
        *,
        authorized_tags: Mapping[str, str] | None = None,
        heartbeat_interval_s: int = 300,
        boot_status: str = "Accepted",
        on_message: Callable[[str, str, Payload], None] | None = None,
        call_timeout_s: float = 30.0,
        basic_auth: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._tags: dict[str, str] = {}
        #: cp_id -> password: handshakes without those HTTP Basic credentials get 401
        #: (None: no check). ``ssl_context`` makes the server wss:// (security profiles 2/3).
        self.basic_auth = dict(basic_auth) if basic_auth is not None else None
        self._ssl_context = ssl_context
        for tag, status in (authorized_tags or {}).items():
            self.set_tag(tag, status)
        self.heartbeat_interval_s = heartbeat_interval_s
        self.boot_status = RegistrationStatus(boot_status).value
        self.on_message = on_message
        self.call_timeout_s = call_timeout_s
        #: While True, websocket handshakes are answered with HTTP 503.
        self.refuse_connections = False

        self.received: list[Received] = []
        self.raw_received: list[RawFrame] = []
        self.violations: list[Violation] = []
        self.connection_attempts: list[ConnectionAttempt] = []
        self.transactions: dict[int, TransactionRecord] = {}
        #: OCPP 2.0.1: every TransactionEvent request by (cp_id, transactionId), in order.
        self.transaction_events: dict[tuple[str, str], list[Payload]] = {}
        #: The last StatusNotification status per (cp_id, connectorId).
        self.statuses: dict[tuple[str, int], str] = {}

        self._server: Server | None = None
        self._url: str | None = None
        self._sessions: dict[str, _SessionMixin] = {}
        self._overrides: dict[str, ResponseOverride] = {}
        self._transaction_ids = itertools.count(1)
        self._boots: dict[str, tuple[str, float, float]] = {}  # status, interval_s, at_s
        self._changed = asyncio.Event()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port); return the base URL, e.g.
        ``ws://127.0.0.1:PORT/``, to which a charge point appends its id."""
        if self._server is not None:
            raise RuntimeError("LocalCsms already started")
        self._server = await serve(
            self._serve_connection,
            host,
            port,
            subprotocols=[Subprotocol(SUBPROTOCOL), Subprotocol(SUBPROTOCOL_201)],
            process_request=self._process_request,
            close_timeout=2.0,
            ssl=self._ssl_context,
        )
        bound_port = self._server.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        scheme = "ws" if self._ssl_context is None else "wss"
        self._url = f"{scheme}://{shown}:{bound_port}/"
        return self._url

    async def stop(self) -> None:
        """Close every connection (1001 going away) and the server. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        for session in self._sessions.values():
            if session.frozen:  # it would never finish a closing handshake
                session.ws.transport.abort()
        server.close()
        await server.wait_closed()

    async def __aenter__(self) -> LocalCsms:
        """``async with LocalCsms(...) as csms``: started on loopback (see :attr:`url`)."""
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL :meth:`start` returned (kept after :meth:`stop`)."""
        if self._url is None:
            raise RuntimeError("LocalCsms not started")
        return self._url

    @property
    def connected(self) -> list[str]:
        """Ids of the charge points connected now."""
        return list(self._sessions)

    # --- tags and answers -----------------------------------------------------------------

    def set_tag(self, id_tag: str, status: str | None) -> None:
        """Set the status answered for ``id_tag`` (None forgets it: "Invalid" from then)."""
        if status is None:
            self._tags.pop(id_tag.casefold(), None)
        else:
            self._tags[id_tag.casefold()] = AuthorizationStatus(status).value

    def tag_status(self, id_tag: str) -> str:
        return self._tags.get(id_tag.casefold(), AuthorizationStatus.invalid.value)

    def set_response(self, action: str, fn: ResponseOverride | None) -> None:
        """Answer ``action`` with ``fn(request)`` (camelCase dicts) instead of the default.

        ``fn`` may be async (to answer late); returning None keeps the default answer.
        The answer must still validate against the schemas, or the library sends an
        InternalError CALLERROR instead. ``fn=None`` restores the default.
        """
        if action not in HANDLED_ACTIONS | HANDLED_ACTIONS_201:
            known = sorted(HANDLED_ACTIONS | HANDLED_ACTIONS_201)
            raise ValueError(f"{action!r} is not one of {known}")
        if fn is None:
            self._overrides.pop(action, None)
        else:
            self._overrides[action] = fn

    async def _answer(
        self, cp_id: str, action: str, request: Payload, version: str = "1.6"
    ) -> Payload:
        if version == "1.6":
            answer = self._default_answer(action, request)
        else:
            from controller.local_csms201 import default_answer

            answer = default_answer(self, action, request)
        override = self._overrides.get(action)
        if override is not None:
            replaced = override(request)
            if inspect.isawaitable(replaced):
                replaced = await replaced
            if replaced is not None:
                answer = replaced
        if version == "1.6":
            self._remember(cp_id, action, request, answer)
        else:
            from controller.local_csms201 import remember

            remember(self, cp_id, action, request, answer)
        return answer

    def _id_tag_info(self, id_tag: str) -> Payload:
        return {"status": self.tag_status(id_tag)}

    def _default_answer(self, action: str, request: Payload) -> Payload:
        if action == Action.boot_notification:
            return {
                "status": self.boot_status,
                "currentTime": utc_timestamp(),
                "interval": self.heartbeat_interval_s,
            }
        if action == Action.heartbeat:
            return {"currentTime": utc_timestamp()}
        if action == Action.authorize:
            return {"idTagInfo": self._id_tag_info(request["idTag"])}
        if action == Action.start_transaction:
            return {
                "transactionId": next(self._transaction_ids),
                "idTagInfo": self._id_tag_info(request["idTag"]),
            }
        if action == Action.stop_transaction and "idTag" in request:
            return {"idTagInfo": self._id_tag_info(request["idTag"])}
        if action == Action.data_transfer:
            known = str(request["vendorId"]).casefold() == VENDOR_ID
            return {"status": "Accepted" if known else "UnknownVendorId"}
        if action == Action.sign_certificate:
            # Accepted: the CSR goes to a CA; a test answers with CertificateSigned itself.
            return {"status": "Accepted"}
        return {}  # StatusNotification, MeterValues, *StatusNotification, tagless Stop

    def _remember(self, cp_id: str, action: str, request: Payload, answer: Payload) -> None:
        """Update the CSMS's state from a request and the answer actually given."""
        self._remember_boot(cp_id, action, answer)
        if action == Action.start_transaction and "transactionId" in answer:
            tx_id = int(answer["transactionId"])
            self.transactions[tx_id] = TransactionRecord(
                transaction_id=tx_id,
                cp_id=cp_id,
                connector_id=request["connectorId"],
                id_tag=request["idTag"],
                id_tag_status=str(answer.get("idTagInfo", {}).get("status")),
                meter_start_wh=request["meterStart"],
                started_at=parse_timestamp(request["timestamp"]) or dt.datetime.now(dt.UTC),
                reservation_id=request.get("reservationId"),
            )
        elif action == Action.stop_transaction:
            record = self.transactions.get(request["transactionId"])
            if record is None:
                log.warning("%s stopped unknown transaction %s", cp_id, request["transactionId"])
                return
            record.meter_stop_wh = request["meterStop"]
            record.stopped_at = parse_timestamp(request["timestamp"]) or dt.datetime.now(dt.UTC)
            record.stop_reason = request.get("reason")
            record.stop_id_tag = request.get("idTag")
            record.transaction_data.extend(request.get("transactionData", []))
        elif action == Action.meter_values and "transactionId" in request:
            record = self.transactions.get(request["transactionId"])
            if record is not None:
                record.meter_values.extend(request["meterValue"])
        elif action == Action.status_notification:
            self.statuses[(cp_id, request["connectorId"])] = request["status"]

    def _remember_boot(self, cp_id: str, action: str, answer: Payload) -> None:
        """A BootNotification's answer: the status and interval the boot order follows."""
        if action == Action.boot_notification:
            interval = float(answer.get("interval", self.heartbeat_interval_s))
            self._boots[cp_id] = (str(answer.get("status")), interval, time.monotonic())

    def _check_boot_order(self, cp_id: str, action: str, frame: str, now_s: float) -> None:
        """OCPP 1.6 4.2: after Rejected, nothing but a BootNotification, and that only
        once the interval has passed."""
        status, interval_s, at_s = self._boots.get(cp_id, ("", 0.0, 0.0))
        if status != RegistrationStatus.rejected:
            return
        if action != Action.boot_notification:
            self._violation(cp_id, frame, f"{action} sent while the boot is Rejected")
        elif now_s - at_s < interval_s - BOOT_RETRY_TOLERANCE_S:
            waited = now_s - at_s
            self._violation(
                cp_id, frame, f"boot retried after {waited:.2f} s, interval {interval_s:g} s"
            )

    # --- records and waiting --------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _record_raw(self, frame: RawFrame) -> None:
        self.raw_received.append(frame)
        self._notify()

    def _record_call(self, item: Received) -> None:
        self.received.append(item)
        self._notify()
        if self.on_message is not None:
            try:
                self.on_message(item.cp_id, item.action, item.payload)
            except Exception:
                log.exception("on_message failed for %s %s", item.cp_id, item.action)

    def _violation(self, cp_id: str, frame: str, problem: str) -> None:
        log.warning("%s broke OCPP: %s in %s", cp_id, problem, frame)
        self.violations.append(Violation(cp_id, frame, problem))

    async def _wait(
        self, find: Callable[[], T | None], timeout_s: float, describe: Callable[[], str]
    ) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    changed = self._changed
                    found = find()
                    if found is not None:
                        return found
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(describe()) from None

    async def wait_for(
        self,
        action: str,
        predicate: Callable[[Payload], bool] = lambda p: True,
        *,
        timeout_s: float = 10.0,
        after: int = 0,
        cp_id: str | None = None,
    ) -> Payload:
        """The payload of the first recorded ``action`` at index >= ``after`` (optionally
        from ``cp_id``) that satisfies ``predicate``. Raises TimeoutError listing the calls
        that did arrive. Take ``after = len(csms.received)`` before provoking a message."""

        def find() -> Received | None:
            for item in self.received[after:]:
                if (
                    item.action == action
                    and cp_id in (None, item.cp_id)
                    and predicate(item.payload)
                ):
                    return item
            return None

        def describe() -> str:
            arrived = self.received[after:]
            lines = [
                f"  #{after + i} {r.cp_id} {r.action} {_short(r.payload)}"
                for i, r in enumerate(arrived)
            ][-30:]
            return (
                f"no {action} matching the predicate within {timeout_s:g} s "
                f"(from index {after}); {len(arrived)} call(s) arrived:\n" + "\n".join(lines)
            )

        return (await self._wait(find, timeout_s, describe)).payload

    async def wait_for_raw(
        self,
        cp_id: str,
        predicate: Callable[[str], bool],
        *,
        timeout_s: float = 10.0,
        after: int = 0,
    ) -> str:
        """The first raw frame from ``cp_id`` (index >= ``after`` in :attr:`raw_received`)
        that satisfies ``predicate``; TimeoutError names the frames that arrived."""

        def find() -> str | None:
            for frame in self.raw_received[after:]:
                if frame.cp_id == cp_id and predicate(frame.text):
                    return frame.text
            return None

        def describe() -> str:
            frames = [f"  {f.cp_id} {f.text[:160]}" for f in self.raw_received[after:]][-30:]
            return (
                f"no matching frame from {cp_id} within {timeout_s:g} s; "
                f"{len(frames)} frame(s) arrived:\n" + "\n".join(frames)
            )

        return await self._wait(find, timeout_s, describe)

    async def wait_connected(self, cp_id: str, *, timeout_s: float = 10.0) -> None:
        """Return once ``cp_id`` has an open websocket."""
        await self._wait(
            lambda: True if cp_id in self._sessions else None,
            timeout_s,
            lambda: f"{cp_id} did not connect within {timeout_s:g} s; connected: {self.connected}",
        )

    # --- talking to charge points ---------------------------------------------------------

    def _session(self, cp_id: str) -> Any:
        try:
            return self._sessions[cp_id]
        except KeyError:
            raise KeyError(f"{cp_id!r} is not connected; connected: {self.connected}") from None

    async def call(self, cp_id: str, payload: Any, *, expect_error: bool = False) -> Any:
        """Send a CSMS->CP call (an ``ocpp.v16.call.*`` dataclass), validated, and return
        the ``ocpp.v16.call_result`` dataclass.

        A CALLERROR raises the library's OCPPError subclass (e.g. NotImplementedError), or
        with ``expect_error`` is returned as the :class:`ocpp.messages.CallError`; a result
        then raises :class:`UnexpectedResult`. A result that breaks the schemas, or an
        error code OCPP does not define, is a violation and raises. ConnectionError if the
        charge point disconnects first; TimeoutError after ``call_timeout_s``.
        """
        session = self._session(cp_id)
        unique_id = str(uuid.uuid4())
        session.awaiting.add(unique_id)
        task = asyncio.ensure_future(session.call(payload, suppress=False, unique_id=unique_id))
        session.pending_calls.add(task)
        try:
            result = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled, not the connection
            raise ConnectionError(f"{cp_id} disconnected before answering {payload}") from None
        except (OCPPError, UnknownCallErrorCodeError) as error:
            raw = session.answers.get(unique_id)
            if raw is None:
                raise  # our own call broke the schemas: it was never sent
            message = unpack(raw)
            if isinstance(message, CallError) and isinstance(error, OCPPError):
                if expect_error:
                    return message
                raise
            self._violation(cp_id, raw, f"invalid answer to {type(payload).__name__}: {error}")
            raise
        finally:
            session.pending_calls.discard(task)
            session.awaiting.discard(unique_id)
            session.answers.pop(unique_id, None)
        if expect_error:
            raise UnexpectedResult(f"{cp_id} answered {payload} with {result}, not a CALLERROR")
        return result

    async def send_raw(self, cp_id: str, text: str | bytes) -> None:
        """Write ``text`` as one websocket frame to ``cp_id``, unchecked: a text frame, or a
        binary one for bytes. What the charge point sends back lands in
        :attr:`raw_received` (see :meth:`wait_for_raw`)."""
        await self._session(cp_id).ws.send(text)

    # --- fault knobs ----------------------------------------------------------------------

    async def drop_connections(self, *, reset: bool = False) -> None:
        """Abort every connection's TCP stream (no closing handshake, as if the network
        failed) and return once their handlers have finished. ``reset``: with an RST, so
        what the CSMS's socket still had to send is discarded instead of delivered before
        the FIN (a flood the charge point reads slowly), and the charge point's next write
        fails at once."""
        sessions = list(self._sessions.values())
        for session in sessions:
            sock = session.ws.transport.get_extra_info("socket")
            if reset and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            session.ws.transport.abort()
        for session in sessions:
            await session.finished.wait()

    async def freeze_connections(self) -> None:
        """Stop reading every connection: the link stays open but nothing is answered, not
        even websocket pings (a dead link the charge point notices only by its pings). A
        new connection from the same id replaces the frozen one; :meth:`stop` aborts it."""
        for session in self._sessions.values():
            session.frozen = True
            session.ws.transport.pause_reading()

    # --- websocket server -----------------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        cp_id = cp_id_from_path(request.path)
        authorized = self._credentials_ok(cp_id, request.headers.get("Authorization"))
        self.connection_attempts.append(
            ConnectionAttempt(
                cp_id,
                time.monotonic(),
                self.refuse_connections or not authorized,
                request.headers.get("Authorization"),
            )
        )
        self._notify()
        if not authorized:
            log.warning("%s: HTTP Basic credentials missing or wrong: 401", cp_id)
            response = ws.respond(http.HTTPStatus.UNAUTHORIZED, "credentials required\n")
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp"'
            return response
        if self.refuse_connections:
            return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "refused (test knob)\n")
        if not cp_id:
            return ws.respond(
                http.HTTPStatus.NOT_FOUND, "the URL must end in the charge point id\n"
            )
        return None

    def _credentials_ok(self, cp_id: str, header: str | None) -> bool:
        """HTTP Basic (RFC 7617) with the charge point id as user, when checked at all.

        The password in :attr:`basic_auth` is the AuthorizationKey as the CSMS set it. A key
        of 32 to 40 hexadecimal digits is a binary password written in hex (security
        whitepaper; OCTT TC_085_CS): the header must carry the bytes it encodes. Any other
        key is compared as its UTF-8 text."""
        if self.basic_auth is None:
            return True
        password = self.basic_auth.get(cp_id)
        scheme, _, token = (header or "").partition(" ")
        if password is None or scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token, validate=True)
        except binascii.Error:
            return False
        return hmac.compare_digest(given, cp_id.encode() + b":" + _password_bytes(password))

    async def _serve_connection(self, ws: ServerConnection) -> None:
        cp_id = cp_id_from_path(ws.request.path if ws.request is not None else "")
        previous = self._sessions.get(cp_id)
        if previous is not None:
            log.warning("%s connected again: dropping its previous connection", cp_id)
            previous.ws.transport.abort()
            await previous.finished.wait()
        session: _SessionMixin
        if ws.subprotocol == SUBPROTOCOL_201:
            from controller.local_csms201 import Session201

            session = Session201(cp_id, ws, self)
        else:
            session = _ChargePointSession(cp_id, ws, self)
        self._sessions[cp_id] = session
        self._notify()
        log.info("%s connected from %s", cp_id, ws.remote_address)
        try:
            await session.start()
        except ConnectionClosed as closed:
            log.info("%s disconnected: %s", cp_id, closed)
        finally:
            for task in session.pending_calls:
                task.cancel()
            if self._sessions.get(cp_id) is session:
                del self._sessions[cp_id]
            session.finished.set()
            self._notify()


__all__ = [
    "ConnectionAttempt",
    "LocalCsms",
    "RawFrame",
    "Received",
    "TransactionRecord",
    "UnexpectedResult",
    "Violation",
    "cp_id_from_path",
    "parse_timestamp",
    "utc_timestamp",
]
