"""The local web API (issue 15): what a phone, a script or Home Assistant's REST sensor can
do with the charger, through the real controller on simulated hardware. Every answer is
checked against the OpenAPI description the server publishes (tests.support.web)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from controller.connector_types import ConnectorStatus
from controller.limits import LimitSource
from controller.web import passwords
from controller.web.auth import MAX_FAILURES
from tests.support.standalone import CARD
from tests.support.wait import until
from tests.support.web import CARD_NAME, OPENAPI, PASSWORD, WebRig, web_charger

pytestmark = pytest.mark.timeout(90)
#: A simulated tap holds the card in the field this long; the reader reports a card once
#: while it stays there, so the same card is tapped again only after it has left.
PRESENTATION_S = 0.8


async def live_events(rig: WebRig, into: list[dict[str, Any]]) -> aiohttp.ClientWebSocketResponse:
    """Open the live stream and collect its messages into ``into`` in the background."""
    ws = await rig.http.ws_connect(rig.base + "/api/v1/live")

    async def read() -> None:
        async for message in ws:
            into.append(json.loads(message.data))

    asyncio.get_running_loop().create_task(read())
    return ws


def events(messages: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["event"] == name]


async def test_a_session_started_limited_and_stopped_from_the_api_is_in_the_history_and_csv(
    tmp_path: Path,
) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        messages: list[dict[str, Any]] = []
        ws = await live_events(rig, messages)
        await until(lambda: bool(events(messages, "Hello")))

        await rig.charger.act("plug")
        await rig.charger.act("charge")
        status, body = await rig.call("POST", "/api/v1/connectors/1/start", {"id_tag": "bob"})
        assert (status, body) == (202, {"accepted": True, "id_tag": "bob"})
        await until(lambda: rig.charger.status() is ConnectorStatus.CHARGING)
        await until(lambda: bool(events(messages, "TransactionStarted")))
        await until(lambda: rig.charger.hw("ev_current_a") > 15.0)
        await until(lambda: any(m["status"]["connectors"][0]["power_w"] for m in messages))

        status, connector = await rig.call("PUT", "/api/v1/connectors/1/limit", {"current_a": 10})
        assert status == 200
        assert connector["offered_current_a"] == 10.0 and connector["limited_by"] == ["user"]
        assert connector["state_text"] == "Charging, limited by your limit"
        await until(lambda: rig.charger.hw("offered_current_a") == 10.0)
        await until(lambda: rig.charger.hw("ev_current_a") <= 10.0)
        # the CSMS's source stays its own: the user's limit only adds a bound
        assert rig.charger.supervisor.snapshot().connector(1).limits == ((LimitSource.USER, 10.0),)

        _, now = await rig.call("GET", "/api/v1/status")
        session = now["connectors"][0]["session"]
        assert session["id_tag"] == "bob" and now["connectors"][0]["transaction_id"]

        status, _ = await rig.call("POST", "/api/v1/connectors/1/stop")
        assert status == 202
        await until(lambda: bool(events(messages, "TransactionStopped")))
        assert not rig.charger.hw("contactor_closed")
        status, _ = await rig.call("POST", "/api/v1/connectors/1/stop")
        assert status == 409  # nothing left to stop

        _, page = await rig.call("GET", "/api/v1/sessions")
        assert page["total"] == 1
        [row] = page["sessions"]
        assert row["id_tag"] == "bob" and row["stop_reason"] == "Remote"
        assert row["energy_wh"] > 0
        assert row["meter_stop_wh"] - row["meter_start_wh"] == pytest.approx(row["energy_wh"])
        status, text = await rig.call("GET", "/api/v1/sessions.csv")
        [line] = list(csv.DictReader(io.StringIO(text)))
        assert line["card"] == "bob" and line["stop_reason"] == "Remote"
        assert float(line["energy_kwh"]) == pytest.approx(row["energy_wh"] / 1000, abs=0.001)
        _, energy = await rig.call("GET", "/api/v1/energy?by=day")
        assert energy["periods"][-1]["sessions"] == 1
        assert energy["periods"][-1]["energy_wh"] == pytest.approx(row["energy_wh"], abs=0.1)
        await ws.close()


async def test_history_names_configured_cards_and_filters_by_card_and_month(
    tmp_path: Path,
) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        await rig.charger.charging()  # plug + tap CARD
        await rig.charger.act("unplug")
        await until(lambda: rig.charger.status() is ConnectorStatus.AVAILABLE)
        await rig.charger.act("plug")
        await rig.call("POST", "/api/v1/connectors/1/start", {"id_tag": "bob"})
        await until(lambda: rig.charger.status() is ConnectorStatus.SUSPENDED_EV)
        await rig.charger.act("unplug")
        await until(lambda: rig.charger.status() is ConnectorStatus.AVAILABLE)

        _, page = await rig.call("GET", f"/api/v1/sessions?card={CARD.lower()}")
        assert page["total"] == 1
        assert page["sessions"][0]["card_name"] == CARD_NAME
        month = page["sessions"][0]["started_at"][:7]
        _, this_month = await rig.call("GET", f"/api/v1/sessions?month={month}&limit=1")
        assert this_month["total"] == 2 and len(this_month["sessions"]) == 1
        assert this_month["sessions"][0]["id_tag"] == "bob"  # newest first
        _, other = await rig.call("GET", "/api/v1/sessions?month=1999-01")
        assert other == {"total": 0, "sessions": [], "limit": 50, "offset": 0}
        _, nobody = await rig.call("GET", "/api/v1/sessions?card=FFFF")
        assert nobody["total"] == 0
        _, text = await rig.call("GET", f"/api/v1/sessions.csv?month={month}")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [(r["card"], r["card_name"]) for r in rows] == [(CARD, CARD_NAME), ("bob", "")]
        assert rows[0]["started_at"] < rows[1]["started_at"]  # oldest first


async def test_bad_input_gets_a_4xx_naming_the_field(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        for method, path, body, field in (
            ("PUT", "/api/v1/connectors/1/limit", {"current_a": "ten"}, "current_a"),
            ("PUT", "/api/v1/connectors/1/limit", {"current_a": -1}, "current_a"),
            ("PUT", "/api/v1/connectors/1/limit", {}, "current_a"),
            ("PUT", "/api/v1/connectors/1/limit", {"current_a": 8, "amps": 1}, "amps"),
            ("PUT", "/api/v1/connectors/1/availability", {"available": "no"}, "available"),
            ("POST", "/api/v1/connectors/1/start", {"id_tag": "x" * 21}, "id_tag"),
            ("PUT", "/api/v1/cards/04AA", {"enabled": "yes"}, "enabled"),
            ("PUT", "/api/v1/cards/04AA", {"expires_at": "tomorrow"}, "expires_at"),
            ("PUT", "/api/v1/cards/04AA", {"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
            ("PUT", "/api/v1/cards/" + "A" * 21, {"name": "x"}, "uid"),
        ):
            status, answer = await rig.call(method, path, body)
            assert status == 400, (path, body, answer)
            assert answer["field"] == field and field in answer["error"]
        for query, field in (("month=2024-13", "month"), ("limit=0", "limit"), ("page=2", "page")):
            status, answer = await rig.call("GET", f"/api/v1/sessions?{query}")
            assert (status, answer["field"]) == (400, field)
        status, answer = await rig.call("GET", "/api/v1/energy?by=week")
        assert (status, answer["field"]) == (400, "by")
        status, _ = await rig.call("PUT", "/api/v1/connectors/7/limit", {"current_a": 8})
        assert status == 404
        status, answer = await rig.call(
            "PUT",
            "/api/v1/connectors/1/limit",
            data="current_a=8",
            headers={"Content-Type": "text/plain"},
        )
        assert (status, answer["field"]) == (400, "body")
        assert rig.charger.supervisor.snapshot().connector(1).limits == ()


async def test_login_is_needed_rate_limited_and_csrf_and_origin_checked(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        for path in ("/api/v1/status", "/api/v1/sessions", "/api/v1/cards"):
            status, _ = await rig.call("GET", path)
            assert status == 401, path
        _, me = await rig.call("GET", "/api/v1/me")
        assert me["logged_in"] is False and me["password_set"] is True
        for _ in range(MAX_FAILURES):
            status, answer = await rig.call("POST", "/api/v1/login", {"password": "guess"})
            assert status == 401 and answer["error"] == "wrong password"
        status, _ = await rig.call("POST", "/api/v1/login", {"password": PASSWORD})
        assert status == 429  # even the right password waits out the lockout
        rig.web.logins._failures.clear()  # the window has passed (5 minutes)
        await rig.login()

        status, answer = await rig.call(
            "PUT", "/api/v1/connectors/1/limit", {"current_a": 8}, csrf=False
        )
        assert status == 403 and "X-CSRF-Token" in answer["error"]
        status, answer = await rig.call(
            "PUT",
            "/api/v1/connectors/1/limit",
            {"current_a": 8},
            headers={"Origin": "http://evil.example"},
        )
        assert status == 403 and "Origin" in answer["error"]
        assert rig.charger.supervisor.snapshot().connector(1).limits == ()
        status, _ = await rig.call("PUT", "/api/v1/connectors/1/limit", {"current_a": 8})
        assert status == 200

        token = rig.http.cookie_jar.filter_cookies(URL(rig.base))["picharge_session"].value
        rig.web.logins._sessions[token].expires_at = 0.0  # the session has expired
        status, _ = await rig.call("GET", "/api/v1/sessions")
        assert status == 401
        await rig.login()
        status, _ = await rig.call("POST", "/api/v1/logout")
        assert status == 200
        status, _ = await rig.call("GET", "/api/v1/sessions")
        assert status == 401


async def test_public_status_shows_the_live_status_and_nothing_else(tmp_path: Path) -> None:
    async with web_charger(tmp_path, web={"public_status": True}) as rig:
        status, body = await rig.call("GET", "/api/v1/status")
        assert status == 200 and body["connectors"][0]["ocpp_status"] == "Available"
        messages: list[dict[str, Any]] = []
        ws = await live_events(rig, messages)
        await until(lambda: bool(events(messages, "Hello")))
        await ws.close()
        for path in ("/api/v1/sessions", "/api/v1/sessions.csv", "/api/v1/cards"):
            status, _ = await rig.call("GET", path)
            assert status == 401, path


async def test_cards_added_from_the_page_charge_until_disabled_or_expired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new_card = "04C0FFEE"
    async with web_charger(tmp_path) as rig:
        await rig.login()
        await rig.charger.act("plug")
        await until(lambda: rig.charger.status() is ConnectorStatus.PREPARING)
        await rig.charger.act("tap", uid=new_card)  # unknown: refused, offered for adding
        await until(lambda: rig.charger.supervisor.link.last_unknown is not None)
        _, cards = await rig.call("GET", "/api/v1/cards")
        assert cards["last_unknown"]["uid"] == new_card
        assert cards["configured"] == [{"uid": CARD, "name": CARD_NAME}]
        assert rig.charger.status() is ConnectorStatus.PREPARING

        status, card = await rig.call("PUT", f"/api/v1/cards/{new_card.lower()}", {"name": "Carol"})
        assert status == 200 and card["uid"] == new_card and card["enabled"] is True
        await asyncio.sleep(PRESENTATION_S)
        await rig.charger.act("tap", uid=new_card)
        await until(
            lambda: rig.charger.status() in (ConnectorStatus.SUSPENDED_EV, ConnectorStatus.CHARGING)
        )
        _, now = await rig.call("GET", "/api/v1/status")
        assert now["connectors"][0]["session"]["card_name"] == "Carol"
        await rig.charger.act("unplug")
        await until(lambda: rig.charger.status() is ConnectorStatus.AVAILABLE)

        await rig.call("PUT", f"/api/v1/cards/{new_card}", {"name": "Carol", "enabled": False})
        await rig.charger.act("plug")
        await until(lambda: rig.charger.status() is ConnectorStatus.PREPARING)
        await asyncio.sleep(PRESENTATION_S)
        await rig.charger.act("tap", uid=new_card)
        await until(lambda: "04C0FFEE (Carol) is disabled" in caplog.text)
        await asyncio.sleep(0.3)
        assert rig.charger.status() is ConnectorStatus.PREPARING  # disabled: no session
        caplog.clear()
        await rig.call(
            "PUT",
            f"/api/v1/cards/{new_card}",
            {"name": "Carol", "expires_at": "2000-01-01T00:00:00Z"},
        )
        await asyncio.sleep(PRESENTATION_S)
        await rig.charger.act("tap", uid=new_card)
        await until(lambda: "04C0FFEE (Carol) is disabled or expired" in caplog.text)
        await asyncio.sleep(0.3)
        assert rig.charger.status() is ConnectorStatus.PREPARING  # expired: no session

        status, _ = await rig.call("PUT", f"/api/v1/cards/{CARD}", {"name": "x"})
        assert status == 409  # a card of the configuration file is not the page's to change
        status, _ = await rig.call("DELETE", f"/api/v1/cards/{new_card}")
        assert status == 200
        status, _ = await rig.call("DELETE", f"/api/v1/cards/{new_card}")
        assert status == 404
        _, cards = await rig.call("GET", "/api/v1/cards")
        assert cards["cards"] == []


async def test_availability_from_the_page(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        await rig.login()
        status, body = await rig.call(
            "PUT", "/api/v1/connectors/1/availability", {"available": False}
        )
        assert (status, body) == (200, {"result": "Accepted"})
        await until(lambda: rig.charger.status() is ConnectorStatus.UNAVAILABLE)
        _, now = await rig.call("GET", "/api/v1/status")
        assert now["connectors"][0]["state_text"] == "Unavailable"
        await rig.call("PUT", "/api/v1/connectors/1/availability", {"available": True})
        await until(lambda: rig.charger.status() is ConnectorStatus.AVAILABLE)


async def test_every_route_is_documented_and_every_documented_route_is_served(
    tmp_path: Path,
) -> None:
    async with web_charger(tmp_path) as rig:
        app = rig.web.build()
        served = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/api/")
        }
        documented = {
            (method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item
        }
        assert served - {("HEAD", p) for _, p in served} == documented
        status, text = await rig.call("GET", "/api/v1/openapi.json")
        assert status == 200 and text["openapi"].startswith("3.1")


async def test_the_page_and_its_files_are_served_with_safe_headers(tmp_path: Path) -> None:
    async with web_charger(tmp_path) as rig:
        for path in ("/", "/static/app.js", "/static/style.css"):
            async with rig.http.get(rig.base + path) as response:
                assert response.status == 200, path
                assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
                assert response.headers["X-Content-Type-Options"] == "nosniff"
        outside = URL(rig.base + "/static/%2e%2e/openapi.json", encoded=True)
        async with rig.http.get(outside) as response:
            assert response.status in (403, 404)  # nothing outside static/


def test_web_password_is_stored_hashed_for_the_service_user_only(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controller.cli", "web-password", "--state-dir", str(tmp_path)],
        input="a long passphrase\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    stored = passwords.load(tmp_path)
    assert stored is not None and stored.startswith("scrypt$16384$8$1$")
    assert "a long passphrase" not in stored
    assert passwords.matches("a long passphrase", stored)
    assert not passwords.matches("a long passphrasE", stored)
    assert stat.S_IMODE(passwords.path_in(tmp_path).stat().st_mode) == 0o600
    short = subprocess.run(
        [sys.executable, "-m", "controller.cli", "web-password", "--state-dir", str(tmp_path)],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert short.returncode == 2 and "at least 8" in short.stderr
    assert passwords.load(tmp_path) == stored  # the old password stays
