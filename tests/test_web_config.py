"""The web page's configuration and its place in the charger: ``[web]`` keys and named
cards, ``picharge run --sim`` telling where its page is, and the page of a charger with a
CSMS, where starting means the CSMS's authorization and the cards are the CSMS's."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.config import DEFAULT_WEB_LISTEN, ConfigError, parse_config
from controller.local_csms import LocalCsms
from controller.web import passwords
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import controller
from tests.support.sim_process import free_port
from tests.support.web import PASSWORD, check_answer

pytestmark = pytest.mark.timeout(60)


def test_the_page_listens_on_loopback_unless_configured() -> None:
    config = parse_config({})
    assert config.web_listen == DEFAULT_WEB_LISTEN == "127.0.0.1:8080"
    assert config.web_public_status is False and config.web_id_tag == ""
    config = parse_config({"web": {"listen": "", "public_status": True, "id_tag": "WEB"}})
    assert (config.web_listen, config.web_public_status, config.web_id_tag) == ("", True, "WEB")


def test_cards_may_carry_names_for_the_history() -> None:
    config = parse_config(
        {"authorization": {"cards": ["04A1B2C3", {"uid": "04c0ffee", "name": "Company car"}]}}
    )
    assert config.local_cards == ("04A1B2C3", "04c0ffee")
    assert config.card_names == {"04C0FFEE": "Company car"}


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"web": {"listen": "8080"}}, "web.listen"),
        ({"web": {"listen": "host:99999"}}, "web.listen"),
        ({"web": {"public_status": "yes"}}, "web.public_status"),
        ({"web": {"id_tag": "x" * 21}}, "web.id_tag"),
        ({"web": {"port": 80}}, "web.port"),
        ({"authorization": {"cards": [{"uid": "04A1", "colour": "red"}]}}, "authorization.cards.0"),
        ({"authorization": {"cards": [{"name": "no uid"}]}}, "authorization.cards.0"),
        ({"authorization": {"cards": [{"uid": "04A1", "name": 5}]}}, "authorization.cards.0.name"),
    ],
)
def test_a_bad_web_or_card_key_is_named(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(doc)
    assert error.value.key == key


async def test_picharge_run_sim_prints_the_url_of_its_page(tmp_path: Path) -> None:
    port = free_port()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli", "run", "--sim",
        "--state-dir", str(tmp_path), "--sim-control", f"127.0.0.1:{free_port()}",
        "--web", f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        first = await asyncio.wait_for(child.stdout.readline(), 30)
        second = await asyncio.wait_for(child.stdout.readline(), 5)
        assert first.decode().strip() == f"picharge: web page on http://127.0.0.1:{port}/"
        assert f"picharge web-password --state-dir {tmp_path}" in second.decode()
        url = f"http://127.0.0.1:{port}/api/v1/status"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        status = json.loads(body)  # a simulation shows its status without a login
        check_answer("GET", "/api/v1/status", 200, status)
        assert status["csms_link"] == "standalone"
    finally:
        child.terminate()
        assert await asyncio.wait_for(child.wait(), 20) == 0


async def test_with_a_csms_the_page_starts_through_authorization_and_leaves_cards_to_it(
    csms: LocalCsms, tmp_path: Path
) -> None:
    passwords.save(tmp_path / "state", PASSWORD)
    async with controller(
        csms, tmp_path, config={"web": {"id_tag": ACCEPTED_TAG}}, web="127.0.0.1:0"
    ) as rig:
        base = rig.app.web.url.rstrip("/")
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.post(base + "/api/v1/login", json={"password": PASSWORD}) as r:
                csrf = {"X-CSRF-Token": (await r.json())["csrf_token"]}
            async with http.get(base + "/api/v1/cards") as r:
                cards = await r.json()
                assert cards["editable"] is False and cards["last_unknown"] is None
            async with http.put(base + "/api/v1/cards/04AA", json={}, headers=csrf) as r:
                assert r.status == 409
            async with http.post(
                base + "/api/v1/connectors/1/start", json={"id_tag": "bob"}, headers=csrf
            ) as r:
                assert r.status == 400 and (await r.json())["field"] == "id_tag"

            mark = rig.mark()
            await rig.act("plug")
            await rig.status("Preparing", mark)
            async with http.post(base + "/api/v1/connectors/1/start", headers=csrf) as r:
                assert r.status == 202, await r.text()
            start = await csms.wait_for("StartTransaction", after=mark)
            assert start["idTag"] == ACCEPTED_TAG
            async with http.get(base + "/api/v1/status") as r:
                status = await r.json()
                check_answer("GET", "/api/v1/status", 200, status)
                assert status["csms_link"] != "standalone"
