"""The JSON API under ``/api/v1/`` (docs/api.md, controller/web/openapi.json).

Handlers read the core's snapshot and act only through the supervisor's methods: the
user's current limit is :attr:`LimitSource.USER` (the CSMS's limits still apply), a start
is a remote start (standalone: for a named user, without a card; with a CSMS: through the
normal authorization of ``[web] id_tag``), a stop a remote stop. Bad input is a 400 whose
``field`` names what is wrong. Loop thread only; SQLite reads run on the ``web`` thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar

from aiohttp import web

from controller.card_store import CardStore, StoredCard
from controller.config_keys import ENERGY_THRESHOLD_KEYS
from controller.domain import Answer, ConnectorView, Transaction
from controller.energy.grid import BadReading, GridFeed, parse_pushed
from controller.energy.modes import Mode, ModeControl
from controller.limits import LimitSource
from controller.standalone import StandaloneLink
from controller.status_snapshot import StatusSnapshot
from controller.web import history
from controller.web.auth import (
    COOKIE,
    SESSION_S,
    LoginRefused,
    Logins,
    Session,
    TooManyFailures,
)
from drivers.errors import ConfigurationError

log = logging.getLogger(__name__)
T = TypeVar("T")
#: The default id tag of a start from the page in standalone mode (no name given).
WEB_USER = "web"
MAX_LIMIT_A = 80.0
PUBLIC_STATUS = web.AppKey("public_status", bool)
#: The request's login session (None: not logged in), set by the server's guard.
SESSION: web.RequestKey[Session | None] = web.RequestKey("session")


class Control(Protocol):
    """The supervisor's methods the page may use."""

    @property
    def connector_ids(self) -> tuple[int, ...]: ...
    def snapshot(self) -> StatusSnapshot: ...
    def view(self, connector_id: int) -> ConnectorView: ...
    def set_limit(
        self, connector_id: int, source: LimitSource, current_a: float | None
    ) -> None: ...
    async def remote_start(
        self, id_tag: str, connector_id: int | None, authorized: bool
    ) -> bool: ...
    async def remote_stop(self, tx: Transaction) -> bool: ...
    async def change_availability(self, connector_id: int, available: bool) -> Answer: ...


class BadInput(web.HTTPBadRequest):
    """400 with ``{"error", "field"}``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(
            text=json.dumps({"error": f"{field}: {problem}", "field": field}),
            content_type="application/json",
        )


def error(status: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    return status(
        text=json.dumps({"error": message}), content_type="application/json", headers=headers
    )


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadInput("body", "must be JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise BadInput("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadInput("body", "must be a JSON object")
    return body


def _only(body: dict[str, Any], *allowed: str) -> None:
    for key in body:
        if key not in allowed:
            raise BadInput(key, f"unknown field; expected {', '.join(allowed)}")


class Api:
    """The handlers; routes are added by :meth:`add_routes`."""

    def __init__(
        self,
        control: Control,
        logins: Logins,
        status: Callable[[], dict[str, Any]],
        reader: history.History,
        executor: Executor,
        *,
        link: object,
        store: CardStore | None,
        configured_cards: dict[str, str],
        names: dict[str, str],
        id_tag: str,
        energy: ModeControl | None = None,
        grid: GridFeed | None = None,
    ) -> None:
        self._control = control
        self._energy = energy
        self._grid = grid
        self._logins = logins
        self._status = status
        self._history = reader
        self._executor = executor
        self._standalone = link if isinstance(link, StandaloneLink) else None
        self._store = store
        self._configured = configured_cards
        self._names = names  # uid (upper) -> name; shared with the status builder
        self._id_tag = id_tag
        self._reads = asyncio.Semaphore(2)  # history queries at once; more wait their turn

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_get("/api/v1/me", self.me)
        app.router.add_post("/api/v1/login", self.login)
        app.router.add_post("/api/v1/logout", self.logout)
        app.router.add_get("/api/v1/sessions", self.sessions)
        app.router.add_get("/api/v1/sessions.csv", self.sessions_csv)
        app.router.add_get("/api/v1/energy", self.energy)
        app.router.add_put("/api/v1/connectors/{id}/limit", self.limit)
        app.router.add_put("/api/v1/connectors/{id}/mode", self.mode)
        app.router.add_get("/api/v1/connectors/{id}/thresholds", self.thresholds)
        app.router.add_put("/api/v1/connectors/{id}/thresholds", self.put_thresholds)
        app.router.add_put("/api/v1/grid", self.grid)
        app.router.add_put("/api/v1/connectors/{id}/availability", self.availability)
        app.router.add_post("/api/v1/connectors/{id}/start", self.start)
        app.router.add_post("/api/v1/connectors/{id}/stop", self.stop)
        app.router.add_get("/api/v1/cards", self.cards)
        app.router.add_put("/api/v1/cards/{uid}", self.put_card)
        app.router.add_delete("/api/v1/cards/{uid}", self.delete_card)

    # --- reading ---------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self._status())

    async def me(self, request: web.Request) -> web.Response:
        session = request.get(SESSION)
        return web.json_response(
            {
                "logged_in": session is not None,
                "csrf_token": None if session is None else session.csrf,
                "password_set": self._logins.password_set(),
                "public_status": request.app[PUBLIC_STATUS],
                "standalone": self._standalone is not None,
            }
        )

    async def _read(self, job: Callable[[], T]) -> T:
        async with self._reads:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, job)
            except history.sqlite3.Error as exc:
                log.error("session history unreadable: %s", exc)
                raise error(web.HTTPServiceUnavailable, f"history unavailable: {exc}") from exc

    @staticmethod
    def _filter(request: web.Request) -> history.Filter:
        query = request.query
        for key in query:
            if key not in ("month", "card", "limit", "offset"):
                raise BadInput(key, "unknown query parameter")
        try:
            return history.Filter(month=query.get("month") or None, card=query.get("card") or None)
        except ValueError as exc:
            name, _, problem = str(exc).partition(": ")
            raise BadInput(name, problem) from None

    @staticmethod
    def _int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
        text = request.query.get(key)
        if text is None:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            raise BadInput(key, f"must be a whole number from {low} to {high}")
        return int(text)

    async def sessions(self, request: web.Request) -> web.Response:
        which = self._filter(request)
        limit = self._int(request, "limit", 50, 1, history.MAX_PAGE)
        offset = self._int(request, "offset", 0, 0, 10**9)
        page = await self._read(lambda: self._history.sessions(which, limit, offset))
        return web.json_response({**page, "limit": limit, "offset": offset})

    async def sessions_csv(self, request: web.Request) -> web.Response:
        which = self._filter(request)
        text = await self._read(lambda: self._history.csv_text(which))
        name = "sessions" + (f"-{which.month}" if which.month else "") + ".csv"
        return web.Response(
            text=text,
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def energy(self, request: web.Request) -> web.Response:
        by = request.query.get("by", "day")
        if by not in ("day", "month"):
            raise BadInput("by", f"must be 'day' or 'month', got {by!r}")
        return web.json_response(
            {"by": by, "periods": await self._read(lambda: self._history.energy(by))}
        )

    # --- login ------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await _body(request)
        _only(body, "password")
        password = body.get("password")
        if not isinstance(password, str) or not password:
            raise BadInput("password", "must be a non-empty string")
        client = request.remote or "?"
        try:
            session = await self._logins.login(client, password[:1024])
        except TooManyFailures as exc:
            raise error(
                web.HTTPTooManyRequests,
                str(exc),
                **{"Retry-After": str(math.ceil(exc.retry_after_s))},
            ) from None
        except LoginRefused as exc:
            log.warning("web login from %s refused: %s", client, exc)
            raise error(web.HTTPUnauthorized, str(exc)) from None
        log.info("web login from %s", client)
        response = web.json_response({"logged_in": True, "csrf_token": session.csrf})
        response.set_cookie(
            COOKIE,
            session.token,
            max_age=int(SESSION_S),
            httponly=True,
            samesite="Strict",
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        self._logins.logout(request.cookies.get(COOKIE))
        response = web.json_response({"logged_in": False})
        response.del_cookie(COOKIE, path="/")
        return response

    # --- acting on the charger ---------------------------------------------------------------

    def _connector(self, request: web.Request) -> int:
        text = request.match_info["id"]
        if not text.isdigit() or int(text) not in self._control.connector_ids:
            raise error(web.HTTPNotFound, f"no connector {text}")
        return int(text)

    def _connector_status(self, connector_id: int) -> dict[str, Any]:
        status = self._status()
        return next(c for c in status["connectors"] if c["id"] == connector_id)

    async def limit(self, request: web.Request) -> web.Response:
        connector_id = self._connector(request)
        body = await _body(request)
        _only(body, "current_a")
        if "current_a" not in body:
            raise BadInput("current_a", "required (a current in A, or null to clear)")
        current = body["current_a"]
        if current is not None and (
            isinstance(current, bool)
            or not isinstance(current, int | float)
            or not math.isfinite(current)
            or not 0 <= current <= MAX_LIMIT_A
        ):
            raise BadInput("current_a", f"must be null or a number from 0 to {MAX_LIMIT_A:g} A")
        self._control.set_limit(
            connector_id, LimitSource.USER, None if current is None else float(current)
        )
        log.info("web: user limit on connector %d set to %s A", connector_id, current)
        return web.json_response(self._connector_status(connector_id))

    async def mode(self, request: web.Request) -> web.Response:
        """The connector's charging mode (fast, solar, min_solar, schedule); kept across
        restarts. 409 without charging modes, or for a mode not possible here (a solar mode
        without a grid meter, a schedule not configured), with the reason."""
        connector_id = self._connector(request)
        body = await _body(request)
        _only(body, "mode")
        value = body.get("mode")
        if not isinstance(value, str) or value not in set(Mode):
            raise BadInput("mode", f"must be one of {', '.join(Mode)}")
        energy = self._modes()
        try:
            await energy.set_mode(connector_id, Mode(value))
        except ValueError as exc:
            raise error(web.HTTPConflict, str(exc)) from None
        log.info("web: charging mode of connector %d set to %s", connector_id, value)
        return web.json_response(energy.status())

    def _modes(self) -> ModeControl:
        if self._energy is None:
            raise error(
                web.HTTPConflict,
                "no charging modes: configure [energy] (or [site] and [grid_meter])",
            )
        return self._energy

    def _connector_energy(self, energy: ModeControl, connector_id: int) -> dict[str, Any]:
        return next(c for c in energy.status()["connectors"] if c["id"] == connector_id)

    async def thresholds(self, request: web.Request) -> web.Response:
        """The connector's mode, the thresholds in force and where each comes from."""
        connector_id = self._connector(request)
        return web.json_response(self._connector_energy(self._modes(), connector_id))

    async def put_thresholds(self, request: web.Request) -> web.Response:
        """Change any of the connector's thresholds (a null: back to the configured value),
        applied at once and kept across restarts; a 400 names the field and changes
        nothing. 409 without local energy management."""
        connector_id = self._connector(request)
        body = await _body(request)
        _only(body, *ENERGY_THRESHOLD_KEYS)
        if not body:
            raise BadInput("body", f"name one or more of {', '.join(ENERGY_THRESHOLD_KEYS)}")
        energy = self._modes()
        try:
            await energy.set_thresholds(connector_id, body)
        except ConfigurationError as exc:
            raise BadInput(exc.key, exc.problem) from None
        log.info("web: thresholds of connector %d changed: %s", connector_id, body)
        return web.json_response(self._connector_energy(energy, connector_id))

    async def grid(self, request: web.Request) -> web.Response:
        """A grid reading pushed by a bridge (a Home Assistant automation, a smart-meter
        reader) for ``[grid_meter] source = "push"``: the signed current per phase (A,
        import positive; null for a phase not measured). Its age is judged like a polled
        meter's: without a new one within ``[site] grid_max_age_s`` the connectors fall back
        to the safe current. 409 when the grid meter is not pushed."""
        body = await _body(request)
        if self._grid is None:
            raise error(
                web.HTTPConflict, 'the grid meter is not pushed: [grid_meter] source = "push"'
            )
        try:
            current = parse_pushed(body)  # the same check as a reading over MQTT
        except BadReading as exc:
            raise BadInput(exc.field, exc.problem) from None
        self._grid.push(current)
        return web.json_response({"current_a": current, "samples": self._grid.samples})

    async def availability(self, request: web.Request) -> web.Response:
        connector_id = self._connector(request)
        body = await _body(request)
        _only(body, "available")
        available = body.get("available")
        if not isinstance(available, bool):
            raise BadInput("available", "must be true or false")
        answer = await self._control.change_availability(connector_id, available)
        log.info("web: connector %d available=%s: %s", connector_id, available, answer)
        return web.json_response({"result": str(answer)})

    async def start(self, request: web.Request) -> web.Response:
        connector_id = self._connector(request)
        body = await _body(request) if request.can_read_body else {}
        _only(body, "id_tag")
        if self._standalone is not None:
            tag = body.get("id_tag", WEB_USER)
            if not isinstance(tag, str) or not 1 <= len(tag) <= 20 or not tag.isprintable():
                raise BadInput("id_tag", "must be a name of 1-20 printable characters")
            authorized = True  # the logged-in owner starts it: no card to check
        else:
            if "id_tag" in body:
                raise BadInput("id_tag", "with a CSMS the page starts with [web] id_tag only")
            if not self._id_tag:
                raise error(web.HTTPConflict, "set [web] id_tag to start from the page")
            tag, authorized = self._id_tag, False  # the CSMS authorizes it as a card
        accepted = await self._control.remote_start(tag, connector_id, authorized)
        log.info("web: start on connector %d for %s: %s", connector_id, tag, accepted)
        if not accepted:
            raise error(web.HTTPConflict, f"connector {connector_id} refused to start")
        return web.json_response({"accepted": True, "id_tag": tag}, status=202)

    async def stop(self, request: web.Request) -> web.Response:
        connector_id = self._connector(request)
        tx = self._control.view(connector_id).transaction
        if tx is None or not await self._control.remote_stop(tx):
            raise error(web.HTTPConflict, f"no session on connector {connector_id}")
        log.info("web: stop on connector %d", connector_id)
        return web.json_response({"accepted": True}, status=202)

    # --- cards -------------------------------------------------------------------------------

    async def cards(self, request: web.Request) -> web.Response:
        stored = [] if self._store is None else await self._store.all()
        unknown = None if self._standalone is None else self._standalone.last_unknown
        return web.json_response(
            {
                "editable": self._store is not None,
                "configured": [{"uid": u, "name": n} for u, n in self._configured.items()],
                "cards": [_card_json(c) for c in stored],
                "last_unknown": None
                if unknown is None
                else {"uid": unknown[0], "at": unknown[1].isoformat()},
            }
        )

    def _editable(self) -> CardStore:
        if self._store is None:
            raise error(web.HTTPConflict, "cards are managed by the CSMS")
        return self._store

    async def put_card(self, request: web.Request) -> web.Response:
        store = self._editable()
        uid = request.match_info["uid"]
        body = await _body(request)
        _only(body, "name", "enabled", "expires_at")
        name = body.get("name", "")
        if not isinstance(name, str):
            raise BadInput("name", "must be a string")
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise BadInput("enabled", "must be true or false")
        expires = body.get("expires_at")
        expires_at = None
        if expires is not None:
            try:
                expires_at = dt.datetime.fromisoformat(str(expires))
            except ValueError:
                raise BadInput("expires_at", "must be an ISO 8601 date-time or null") from None
            if expires_at.tzinfo is None:
                raise BadInput("expires_at", "must carry a time zone (Z or +01:00)")
        if uid.upper() in self._configured:
            raise error(web.HTTPConflict, f"{uid} is a card of the configuration file")
        try:
            card = await store.put(uid, name, enabled=enabled, expires_at=expires_at)
        except ValueError as exc:
            field, _, problem = str(exc).partition(": ")
            raise BadInput(field, problem) from None
        self._names[card.uid] = card.name
        log.info("web: card %s saved (%s, enabled=%s)", card.uid, card.name, card.enabled)
        return web.json_response(_card_json(card))

    async def delete_card(self, request: web.Request) -> web.Response:
        store = self._editable()
        uid = request.match_info["uid"]
        if not await store.delete(uid):
            raise error(web.HTTPNotFound, f"no card {uid}")
        if uid.upper() not in self._configured:
            self._names.pop(uid.upper(), None)
        log.info("web: card %s removed", uid.upper())
        return web.json_response({"deleted": uid.upper()})


def _card_json(card: StoredCard) -> dict[str, Any]:
    return {
        "uid": card.uid,
        "name": card.name,
        "enabled": card.enabled,
        "expires_at": None if card.expires_at is None else card.expires_at.isoformat(),
        "added_at": card.added_at.isoformat(),
    }
