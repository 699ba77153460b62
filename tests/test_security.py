"""Security profiles of the OCPP 1.6 security whitepaper against real TLS servers.

Certificates are made here with ``cryptography`` (EC P-256, so generating them is quick):
a CA that signs the CSMS certificate for 127.0.0.1, a second unrelated CA, an expired CSMS
certificate and a client certificate. The CSMS is :class:`LocalCsms` with HTTP Basic
checking and a server SSL context; the charge point side is the production
:class:`LinkSecurity` (unit tests) or the whole controller on simulated hardware.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call

from controller.config import ConfigError, parse_config
from controller.csms.link import LinkTiming, endpoint_url
from controller.csms.security import LinkSecurity, LinkSecurityError, TlsFiles, basic_password
from controller.local_csms import LocalCsms
from controller.ocpp16.keys import ConfigStatus, OcppConfig
from controller.ocpp16.settings import SECURITY_KEYS
from controller.storage import Storage
from tests.support.pki import Pki, issue, server_context
from tests.support.security import CP_ID, PASSWORD, captured_log, charger
from tests.support.wait import until

NO_FILES = TlsFiles()
TIMING = LinkTiming(open_timeout_s=3.0, close_timeout_s=1.0)


# --- certificates -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = issue(d, "ca", "picharge test CA", None, ca=True)
    other, _, _ = issue(d, "other-ca", "someone else's CA", None, ca=True)
    server, _, _ = issue(d, "server", "csms", (ca_cert, ca_key), server=True)
    expired, _, _ = issue(d, "expired", "csms", (ca_cert, ca_key), server=True, expired=True)
    client, _, _ = issue(d, "client", CP_ID, (ca_cert, ca_key))
    return Pki(ca, other, server, expired, client)


# --- the charge point's link, alone -------------------------------------------------------


@contextlib.asynccontextmanager
async def security_for(
    tmp_path: Path, url: str, profile: int, files: TlsFiles = NO_FILES, password: str = PASSWORD
) -> AsyncIterator[tuple[LinkSecurity, OcppConfig]]:
    storage = await Storage.open(tmp_path / "state")
    try:
        config = OcppConfig(
            storage,
            number_of_connectors=1,
            defaults={"SecurityProfile": str(profile), "AuthorizationKey": password},
        )
        await config.load()
        yield (
            LinkSecurity(config, names=SECURITY_KEYS, chargepoint_id=CP_ID, url=url, files=files),
            config,
        )
    finally:
        await storage.close()


async def open_and_close(security: LinkSecurity, csms: LocalCsms) -> None:
    ws = await security.open(endpoint_url(csms.url, CP_ID), TIMING)
    await csms.wait_connected(CP_ID, timeout_s=3)
    await ws.close()


async def test_profile_1_sends_the_charge_point_id_and_authorization_key_as_basic_auth(
    tmp_path: Path,
) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}) as csms,
        security_for(tmp_path, csms.url, 1) as (security, _),
    ):
        await open_and_close(security, csms)
        assert [a.refused for a in csms.connection_attempts] == [False]


async def test_a_wrong_authorization_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: "another-password-0000"}) as csms,
        security_for(tmp_path, csms.url, 1) as (security, _),
    ):
        with pytest.raises(LinkSecurityError, match="refused our credentials \\(HTTP 401\\)"):
            await open_and_close(security, csms)
        assert csms.connected == [] and [a.refused for a in csms.connection_attempts] == [True]


async def test_profile_0_sends_no_credentials_and_a_checking_csms_refuses_it(
    tmp_path: Path,
) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}) as csms,
        security_for(tmp_path, csms.url, 0) as (security, _),
    ):
        assert security.options(csms.url) == ({}, None)
        with pytest.raises(LinkSecurityError, match="HTTP 401"):
            await open_and_close(security, csms)


async def test_profile_2_verifies_the_csms_certificate_against_the_configured_ca(
    tmp_path: Path, pki: Pki
) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=server_context(pki.server)) as csms,
        security_for(tmp_path, csms.url, 2, TlsFiles(ca_file=pki.ca.cert)) as (security, _),
    ):
        assert csms.url.startswith("wss://127.0.0.1:")
        await open_and_close(security, csms)


async def test_a_csms_certificate_from_another_ca_is_refused(tmp_path: Path, pki: Pki) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=server_context(pki.server)) as csms,
        security_for(tmp_path, csms.url, 2, TlsFiles(ca_file=pki.other_ca.cert)) as (sec, _),
    ):
        with pytest.raises(LinkSecurityError, match=r"CSMS certificate was refused.*issuer"):
            await open_and_close(sec, csms)
        assert csms.connection_attempts == []  # no HTTP: the password never left


async def test_an_expired_csms_certificate_is_refused(tmp_path: Path, pki: Pki) -> None:
    context = server_context(pki.expired_server)
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=context) as csms,
        security_for(tmp_path, csms.url, 2, TlsFiles(ca_file=pki.ca.cert)) as (security, _),
    ):
        with pytest.raises(LinkSecurityError, match=r"certificate was refused.*expired"):
            await open_and_close(security, csms)


async def test_profile_3_connects_with_its_client_certificate(tmp_path: Path, pki: Pki) -> None:
    files = TlsFiles(pki.ca.cert, pki.client.cert, pki.client.key)
    async with (
        LocalCsms(ssl_context=server_context(pki.server, client_ca=pki.ca)) as csms,
        security_for(tmp_path, csms.url, 3, files) as (security, _),
    ):
        headers, _context = security.options(csms.url)
        assert headers == {}  # profile 3 proves itself by its certificate, not Basic auth
        await open_and_close(security, csms)


async def test_a_csms_requiring_a_client_certificate_refuses_a_charger_without_one(
    tmp_path: Path, pki: Pki
) -> None:
    async with (
        LocalCsms(ssl_context=server_context(pki.server, client_ca=pki.ca)) as csms,
        security_for(tmp_path, csms.url, 2, TlsFiles(ca_file=pki.ca.cert)) as (security, _),
    ):
        with pytest.raises(LinkSecurityError, match="may require a client certificate"):
            await open_and_close(security, csms)
        assert csms.connected == []


async def test_profile_3_with_an_unreadable_client_key_never_connects(
    tmp_path: Path, pki: Pki
) -> None:
    files = TlsFiles(pki.ca.cert, pki.client.cert, pki.other_ca.key)  # key of another cert
    async with (
        LocalCsms(ssl_context=server_context(pki.server, client_ca=pki.ca)) as csms,
        security_for(tmp_path, csms.url, 3, files) as (security, _),
    ):
        with pytest.raises(LinkSecurityError, match="cannot load the client certificate") as err:
            await open_and_close(security, csms)
        assert csms.connection_attempts == []
    key_text = pki.other_ca.key.read_text()
    assert "PRIVATE KEY" not in str(err.value) and key_text not in str(err.value)


async def test_profile_2_never_downgrades_to_ws(tmp_path: Path) -> None:
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}) as csms,
        security_for(tmp_path, csms.url, 2) as (security, _),
    ):
        with pytest.raises(LinkSecurityError, match="needs wss://; refusing"):
            await open_and_close(security, csms)
        assert csms.connection_attempts == []


# --- the keys -----------------------------------------------------------------------------


async def test_security_profile_can_only_be_raised_and_only_when_it_can_work(
    tmp_path: Path, pki: Pki
) -> None:
    files = TlsFiles(ca_file=pki.ca.cert)
    async with security_for(tmp_path, "wss://csms.example/ocpp", 1, files) as (_, config):
        assert await config.change("SecurityProfile", "0") is ConfigStatus.REJECTED
        assert await config.change("SecurityProfile", "3") is ConfigStatus.REJECTED  # no cert
        assert await config.change("SecurityProfile", "2") is ConfigStatus.ACCEPTED
        assert config.get_int("SecurityProfile") == 2
        assert await config.change("SecurityProfile", "1") is ConfigStatus.REJECTED
    async with security_for(tmp_path / "b", "ws://csms.example/", 1) as (_, config):
        assert await config.change("SecurityProfile", "2") is ConfigStatus.REJECTED  # ws://


async def test_authorization_key_is_write_only_and_checked(tmp_path: Path) -> None:
    async with security_for(tmp_path, "ws://csms.example/", 1) as (security, config):
        entries, unknown = config.entries(None)
        assert "AuthorizationKey" not in [e.key for e in entries] and unknown == []
        assert {e.key: e.value for e in entries}["SecurityProfile"] == "1"
        asked, _ = config.entries(["AuthorizationKey"])
        assert [(e.key, e.value) for e in asked] == [("AuthorizationKey", "")]
        assert await config.change("AuthorizationKey", "short") is ConfigStatus.REJECTED
        new_key = "fedcba9876543210fedcba98"
        # Accepted: it applies at once, by reconnecting (tests/test_conformance_ocpp16.py)
        assert await config.change("AuthorizationKey", new_key) is ConfigStatus.ACCEPTED
        assert security.password == new_key


@pytest.mark.parametrize(
    ("key", "password"),
    [
        ("00112233445566778899aabbccddeeff", bytes.fromhex("00112233445566778899aabbccddeeff")),
        (
            "00112233445566778899AABBCCDDEEFF0a1b2c3d",
            bytes.fromhex("00112233445566778899AABBCCDDEEFF0a1b2c3d"),
        ),
        ("00112233445566778899aabbccddeeff0", b"00112233445566778899aabbccddeeff0"),  # odd
        ("0123456789abcdef0123", b"0123456789abcdef0123"),  # 20 characters: text
        ("g0112233445566778899aabbccddeeff", b"g0112233445566778899aabbccddeeff"),  # not hex
    ],
)
def test_a_hex_authorization_key_of_16_to_20_bytes_is_sent_as_its_bytes_else_as_text(
    key: str, password: bytes
) -> None:
    # Whitepaper: 16-20 random bytes written as 32-40 hex digits; OCTT TC_085_CS checks the
    # header carries the "non hex representation".
    assert basic_password(key) == password


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ocpp", "key"),
    [
        ({"url": "ws://h/", "security_profile": 2, "password": PASSWORD}, "ocpp.url"),
        ({"url": "ws://h/", "security_profile": 1}, "ocpp.password"),
        ({"url": "ws://h/", "password": "short"}, "ocpp.password"),
        ({"url": "wss://h/", "security_profile": 4}, "ocpp.security_profile"),
        ({"url": "wss://h/", "security_profile": 3}, "ocpp.cert_file"),
        ({"url": "wss://h/", "ca_file": "/nonexistent/ca.pem"}, "ocpp.ca_file"),
    ],
)
def test_security_configuration_errors_name_the_key(ocpp: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"ocpp": ocpp})
    assert caught.value.key == key


def test_a_password_alone_means_profile_1() -> None:
    config = parse_config({"ocpp": {"url": "ws://h/", "password": PASSWORD}})
    assert config.ocpp_security_profile == 1 and PASSWORD not in repr(config)


# --- end to end ---------------------------------------------------------------------------


async def test_profile_2_charger_boots_and_never_shows_or_logs_its_authorization_key(
    tmp_path: Path, pki: Pki
) -> None:
    context = server_context(pki.server)
    ocpp = {"security_profile": 2, "password": PASSWORD, "ca_file": str(pki.ca.cert)}
    new_key = "9f8e7d6c5b4a39281706f5e4"
    with captured_log() as log_text:
        async with (
            LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=context) as csms,
            charger(csms, tmp_path, ocpp),
        ):
            await csms.wait_for("BootNotification", timeout_s=5)
            conf = await csms.call(CP_ID, call.GetConfiguration())
            shown = {k["key"]: k.get("value") for k in conf.configuration_key}
            assert shown["SecurityProfile"] == "2" and "AuthorizationKey" not in shown
            csms.basic_auth = {CP_ID: new_key}  # the CSMS takes the key it sends
            attempts = len(csms.connection_attempts)
            changed = await csms.call(
                CP_ID, call.ChangeConfiguration(key="AuthorizationKey", value=new_key)
            )
            assert changed.status == "Accepted"
            # the charger reconnects with the new key at once
            await until(lambda: [a for a in csms.connection_attempts[attempts:] if not a.refused])
            await csms.wait_connected(CP_ID)
            lowered = await csms.call(
                CP_ID, call.ChangeConfiguration(key="SecurityProfile", value="1")
            )
            assert lowered.status == "Rejected"
    text = log_text.getvalue()
    assert "ChangeConfiguration" in text  # the frames were logged, redacted
    assert PASSWORD not in text and new_key not in text


async def test_profile_2_charger_with_the_wrong_ca_logs_one_clear_reason_and_retries(
    tmp_path: Path, pki: Pki
) -> None:
    context = server_context(pki.server)
    ocpp = {"security_profile": 2, "password": PASSWORD, "ca_file": str(pki.other_ca.cert)}
    with captured_log() as log_text:
        async with (
            LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=context) as csms,
            charger(csms, tmp_path, ocpp),
        ):
            await until(lambda: "certificate was refused" in log_text.getvalue(), 5)
            assert csms.connected == [] and csms.received == []
    lines = [line for line in log_text.getvalue().splitlines() if "certificate" in line]
    assert lines and "WARNING" in lines[0] and "unable to get local issuer" in lines[0]


async def test_profile_3_charger_boots_with_its_client_certificate_from_the_configuration(
    tmp_path: Path, pki: Pki
) -> None:
    context = server_context(pki.server, client_ca=pki.ca)
    ocpp = {
        "security_profile": 3,
        "ca_file": str(pki.ca.cert),
        "cert_file": str(pki.client.cert),
        "key_file": str(pki.client.key),
    }
    with captured_log() as log_text:
        async with LocalCsms(ssl_context=context) as csms, charger(csms, tmp_path, ocpp):
            await csms.wait_for("BootNotification", timeout_s=5)
            conf = await csms.call(
                CP_ID, call.GetConfiguration(key=["SecurityProfile", "AuthorizationKey"])
            )
            shown = {k["key"]: k.get("value") for k in conf.configuration_key}
            assert shown == {"SecurityProfile": "3", "AuthorizationKey": ""}
    assert pki.client.key.read_text().splitlines()[1] not in log_text.getvalue()


# --- raising SecurityProfile --------------------------------------------------------------


async def test_a_raised_profile_that_cannot_connect_falls_back_to_the_previous_one(
    tmp_path: Path, pki: Pki
) -> None:
    # The CSMS checks a client certificate only when one is sent, and trusts another CA:
    # profile 2 (Basic, no certificate) works, profile 3 with our certificate cannot.
    context = server_context(pki.server, client_ca=pki.other_ca)
    context.verify_mode = ssl.CERT_OPTIONAL
    files = TlsFiles(pki.ca.cert, pki.client.cert, pki.client.key)
    relinks: list[int] = []
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=context) as csms,
        security_for(tmp_path, csms.url, 2, files) as (security, config),
    ):
        security.on_upgrade(lambda: relinks.append(security.profile))
        await open_and_close(security, csms)
        assert await config.change("SecurityProfile", "3") is ConfigStatus.ACCEPTED
        assert relinks == [3]
        with pytest.raises(LinkSecurityError):
            await open_and_close(security, csms)
        assert config.get_int("SecurityProfile") == 2  # undone, and stored so
        await open_and_close(security, csms)
        assert relinks == [3]  # falling back is no upgrade


async def test_a_raised_profile_reconnects_at_once_and_stays_once_it_works(
    tmp_path: Path, pki: Pki
) -> None:
    context = server_context(pki.server)
    ocpp = {"security_profile": 1, "password": PASSWORD, "ca_file": str(pki.ca.cert)}
    async with (
        LocalCsms(basic_auth={CP_ID: PASSWORD}, ssl_context=context) as csms,
        charger(csms, tmp_path, ocpp),
    ):
        await csms.wait_for("BootNotification", timeout_s=5)
        mark = len(csms.received)
        raised = await csms.call(CP_ID, call.ChangeConfiguration(key="SecurityProfile", value="2"))
        assert raised.status == "Accepted"
        # a reconnect, not a boot: registered again once the statuses come
        await csms.wait_for("StatusNotification", after=mark, timeout_s=8)
        assert [r.action for r in csms.received[mark:]].count("BootNotification") == 0
        conf = await csms.call(CP_ID, call.GetConfiguration(key=["SecurityProfile"]))
        assert conf.configuration_key[0]["value"] == "2"
