"""The controller with its web page, as a browser or an API client meets it.

:func:`web_charger` runs the whole standalone controller on simulated hardware (x30) with
the page on a free loopback port and a password set, and hands over a :class:`WebRig`: the
:class:`~tests.support.standalone.Charger` to play the car and the reader, an aiohttp client
that keeps the session cookie, and helpers that log in and check each answer against the
OpenAPI description (controller/web/openapi.json) the server publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

from controller.app import ChargePointApp, RunOptions
from controller.app import running as running_app
from controller.config import parse_config
from controller.connector_types import ConnectorStatus
from controller.web import passwords
from controller.web.server import openapi_text
from tests.support.standalone import CARD, Charger
from tests.support.wait import until

PASSWORD = "correct horse battery"
CARD_NAME = "Alice"
OPENAPI: dict[str, Any] = json.loads(openapi_text())


def _operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The documented operation that serves ``method path`` (path parameters matched)."""
    for template, item in OPENAPI["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the OpenAPI description")


def check_answer(method: str, path: str, status: int, body: Any) -> None:
    """Fail unless ``status`` is documented for the operation and ``body`` (JSON answers)
    matches its schema."""
    template, operation = _operation(method, path)
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, not documented"
    response = responses[str(status)]
    if "$ref" in response:
        response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {})
    if "application/json" in content:
        schema = {"components": OPENAPI["components"], **content["application/json"]["schema"]}
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


class WebRig:
    def __init__(self, charger: Charger, http: aiohttp.ClientSession, base: str) -> None:
        self.charger = charger
        self.http = http
        self.base = base
        self.csrf: str | None = None

    @property
    def web(self) -> Any:
        return self.charger.app.web

    async def call(
        self, method: str, path: str, body: Any = None, *, csrf: bool = True, **kwargs: Any
    ) -> tuple[int, Any]:
        """One API call, its answer checked against the OpenAPI description; returns
        (status, JSON body or text)."""
        headers = dict(kwargs.pop("headers", {}))
        if csrf and self.csrf and method != "GET":
            headers.setdefault("X-CSRF-Token", self.csrf)
        async with self.http.request(
            method, self.base + path, json=body, headers=headers, **kwargs
        ) as response:
            if response.content_type == "application/json":
                data: Any = await response.json()
            else:
                data = await response.text()
            check_answer(method, path.split("?")[0], response.status, data)
            return response.status, data

    async def login(self, password: str = PASSWORD) -> None:
        status, body = await self.call("POST", "/api/v1/login", {"password": password})
        assert status == 200, body
        self.csrf = body["csrf_token"]


@contextlib.asynccontextmanager
async def web_charger(
    state_dir: Path,
    *,
    web: dict[str, Any] | None = None,
    password: str | None = PASSWORD,
    listen: str = "127.0.0.1:0",
    wait_for_web: bool = True,
    **sections: Any,
) -> AsyncIterator[WebRig]:
    """The standalone controller with :data:`CARD` (named :data:`CARD_NAME`) and its page on
    ``listen`` (handed over once it listens, unless ``wait_for_web`` is false); ``sections``
    are further configuration sections (``site=...``)."""
    doc: dict[str, Any] = {"authorization": {"cards": [{"uid": CARD, "name": CARD_NAME}]}}
    doc.update(sections)
    if web is not None:
        doc["web"] = web
    if password is not None:
        passwords.save(state_dir, password)
    config = dataclasses.replace(parse_config(doc), state_dir=state_dir)
    app = ChargePointApp(config, RunOptions(sim=True, sim_speed=30.0, web=listen))
    async with running_app(app):
        charger = Charger(app)
        await until(lambda: charger.status() is ConnectorStatus.AVAILABLE)
        if wait_for_web:
            await asyncio.wait_for(app.web.started.wait(), 10)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield WebRig(charger, http, app.web.url.rstrip("/"))  # url: known before it listens
