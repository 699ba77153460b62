"""The web server's lifecycle: one aiohttp application on the controller's loop, restarted
after a crash without touching charging.

Why aiohttp: one library gives HTTP, WebSocket and static files, made to be embedded in a
loop the application already runs (``AppRunner``/``TCPSite``). It costs about 10 MiB RSS
on a Pi's controller; starlette + uvicorn would cost about 5 MiB (it reuses ``websockets``)
but uvicorn is made to own the process: it replaces the SIGTERM/SIGINT handlers with its
own and calls ``sys.exit`` when its port is taken, which would take the charger down
with it. 10 MiB of a Pi Zero 2's 512 MiB buys a server that fails alone
(docs/benchmarks.md, "The web page").

:meth:`WebServer.run` never returns while the controller runs: a failure of the server
(the port taken, a bug in a handler's setup) is logged and the server started again after
a backoff, while the supervisor goes on charging. Every request passes
:func:`_guard`: who may read (a login, or ``[web] public_status`` for the live status),
CSRF and origin checks for what changes something, and the response headers a page
served from a charger needs (no framing, no third-party content).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from controller.card_store import CardStore
from controller.energy.grid import GridFeed
from controller.energy.modes import ModeControl
from controller.events import Subscription
from controller.supervisor import Supervisor
from controller.web import history
from controller.web.api import PUBLIC_STATUS, SESSION, Api
from controller.web.auth import COOKIE, CSRF_HEADER, Logins
from controller.web.live import Hub
from controller.web.status import status_json
from drivers.threads import named_executor

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 15.0, 30.0)
#: The largest request body (JSON of a card or a limit): anything bigger is refused (413).
MAX_BODY = 16 * 1024

#: Paths anyone may fetch: the page itself, its files, the API description, the login.
_OPEN = {"/", "/api/v1/me", "/api/v1/login", "/api/v1/logout", "/api/v1/openapi.json"}
#: Paths readable without a login when ``[web] public_status`` is true.
_PUBLIC_STATUS = {"/api/v1/status", "/api/v1/live"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

LOGINS = web.AppKey("logins", Logins)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free port); raises ValueError."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def openapi_text() -> str:
    return resources.files("controller.web").joinpath("openapi.json").read_text("utf-8")


def _same_origin(request: web.Request) -> bool:
    """A request without Origin comes from a tool (curl), not from another site's page."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin.split("://", 1)[-1] == request.host


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    logins = request.app[LOGINS]
    session = logins.session(request.cookies.get(COOKIE))
    request[SESSION] = session
    path = request.path
    is_open = path in _OPEN or path.startswith("/static/")
    public = request.app[PUBLIC_STATUS] and path in _PUBLIC_STATUS
    if not (is_open or public or session is not None):
        return _json(401, "log in first")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if not _same_origin(request):
            return _json(403, "cross-site request refused (Origin)")
        if (
            path != "/api/v1/login"
            and path != "/api/v1/logout"
            and (session is None or request.headers.get(CSRF_HEADER) != session.csrf)
        ):
            return _json(403, f"missing or wrong {CSRF_HEADER} header")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.content_type != "application/json" and exc.status >= 400:
            response = _json(exc.status, exc.reason)
        else:
            raise
    if not response.prepared:
        response.headers.update(_HEADERS)
        if path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def _json(status: int, message: str) -> web.Response:
    response = web.json_response({"error": message}, status=status)
    response.headers.update(_HEADERS)
    return response


class WebServer:
    """The page, the API and the live stream for one running controller."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        listen: str,
        state_dir: Path,
        db_path: Path,
        public_status: bool,
        id_tag: str,
        configured_cards: dict[str, str],
        store: CardStore | None,
        energy: ModeControl | None = None,
        grid: GridFeed | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self._energy = energy
        self._grid = grid
        self._supervisor = supervisor
        self._executor = named_executor("web", max_workers=1)
        self.logins = Logins(state_dir, self._executor)
        self._public_status = public_status
        self._store = store
        self._configured = {uid.upper(): name for uid, name in configured_cards.items()}
        self._names: dict[str, str] = dict(self._configured)
        self._history = history.History(db_path, self._configured)
        self._id_tag = id_tag
        self.hub = Hub(self.status)
        #: The address it listens on once started (port 0 resolved), for the URL.
        self.address: tuple[str, int] | None = None
        self.started = asyncio.Event()
        self.restarts = 0

    @property
    def url(self) -> str:
        host, port = self.address or (self.host, self.port)
        return f"http://{host}:{port}/"

    def status(self) -> dict[str, Any]:
        status = status_json(self._supervisor, lambda tag: self._names.get(tag.upper()))
        if self._energy is not None:
            status["energy"] = self._energy.status()
        return status

    def build(self) -> web.Application:
        app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY)
        app[LOGINS] = self.logins
        app[PUBLIC_STATUS] = self._public_status
        api = Api(
            self._supervisor,
            self.logins,
            self.status,
            self._history,
            self._executor,
            link=self._supervisor.link,
            store=self._store,
            configured_cards=self._configured,
            names=self._names,
            id_tag=self._id_tag,
            energy=self._energy,
            grid=self._grid,
        )
        api.add_routes(app)
        app.router.add_get("/api/v1/live", self.hub.serve)
        app.router.add_get("/api/v1/openapi.json", self._openapi)
        static = Path(str(resources.files("controller.web").joinpath("static")))
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", static, append_version=False)
        return app

    async def _index(self, request: web.Request) -> web.FileResponse:
        static = Path(str(resources.files("controller.web").joinpath("static")))
        return web.FileResponse(static / "index.html")

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=openapi_text(), content_type="application/json")

    async def run(self) -> None:
        """Serve until cancelled; a failure is logged and the server started again."""
        attempt = 0
        while True:
            try:
                await self._serve()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
                log.exception("web server failed; restarting in %.0f s (charging goes on)", delay)
                attempt += 1
                self.restarts += 1
                self.started.clear()
                await asyncio.sleep(delay)
            else:
                attempt = 0

    async def _serve(self) -> None:
        if self._store is not None:
            for card in await self._store.all():
                if card.name:
                    self._names.setdefault(card.uid, card.name)
        runner = web.AppRunner(
            self.build(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        subscription: Subscription | None = None
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            bound = runner.addresses
            self.address = (self.host, int(bound[0][1])) if bound else (self.host, self.port)
            subscription = self._supervisor.events.subscribe("web", self.hub.publish, maxlen=64)
            self.started.set()
            log.info("web page on %s", self.url)
            await asyncio.Event().wait()  # until cancelled
        finally:
            if subscription is not None:
                self._supervisor.events.unsubscribe(subscription)
            await self.hub.close()
            await runner.cleanup()

    async def close(self) -> None:
        """Release the web thread (after :meth:`run` was cancelled); idempotent."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(RuntimeError):
            await loop.run_in_executor(self._executor, self._history.close)
        self._executor.shutdown(wait=True)
