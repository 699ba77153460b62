"""OCPP 2.0.1 security (issue 14, block A, and the certificate store of M): the whole
controller on simulated hardware against the bundled CSMS, which records every message
that breaks the 2.0.1 schemas (the ``make_csms`` fixture fails the test on any).

The rules are the version-neutral ones 1.6 has (``controller/csms/``), reached through
2.0.1's messages and words: security profile 3 with a client certificate signed through
the CSMS (A02: TriggerMessage SignChargingStationCertificate, SignCertificate,
CertificateSigned), never a lower profile; SecurityEventNotification with the 2.0.1 event
names, kept while offline; the CA store of the four 2.0.1 uses (M03-M05), where the CSMS
root the link relies on is not deleted (M04.FR.06).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v201 import call

from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from tests.support.csms import MakeCsms
from tests.support.pki import Pem, issue, make_cert, pem, sign_csr
from tests.support.security import CP_ID, PASSWORD, client_serial
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

V201 = {"version": "2.0.1"}
CPO = "Test CPO"
KEYS = {"OCPPCommCtrlr": {"HeartbeatInterval": 30, "WebSocketPingInterval": 0}}


@dataclass(frozen=True)
class Ca:
    """A CA on disk (``pem``) and in memory."""

    pem: Pem
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pki:
    ca: Ca  # [ocpp] ca_file: signs the CSMS certificate and the charger's client certificate
    server: Pem
    impostor: Pem  # a CSMS certificate from a CA the charger does not know


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = Ca(*issue(d, "ca", "picharge 2.0.1 test CA", None, ca=True))
    server, _, _ = issue(d, "server", "csms", (ca.cert, ca.key), server=True)
    stranger = Ca(*issue(d, "stranger", "a CA the charger does not trust", None, ca=True))
    impostor, _, _ = issue(d, "impostor", "csms", (stranger.cert, stranger.key), server=True)
    return Pki(ca, server, impostor)


def tls_csms_context(pki: Pki) -> ssl.SSLContext:
    """The CSMS's TLS: its certificate; a client certificate from the CA is checked when
    shown (profile 2 shows none)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(pki.ca.pem.cert)
    return context


def tls_ocpp(pki: Pki, profile: int) -> dict[str, Any]:
    return {
        **V201,
        "security_profile": profile,
        "password": PASSWORD,
        "ca_file": str(pki.ca.pem.cert),
    }


async def set_variable(rig: AppRig, component: str, variable: str, value: str) -> str:
    """SetVariables of one Actual value; its attributeStatus."""
    item = {
        "component": {"name": component},
        "variable": {"name": variable},
        "attribute_value": value,
    }
    result = await rig.cp_call(call.SetVariables(set_variable_data=[item]))
    status: str = result.set_variable_result[0]["attribute_status"]
    return status


async def get_variable(rig: AppRig, component: str, variable: str) -> str | None:
    item = {"component": {"name": component}, "variable": {"name": variable}}
    result = await rig.cp_call(call.GetVariables(get_variable_data=[item]))
    value: str | None = result.get_variable_result[0].get("attribute_value")
    return value


async def security_event(
    csms: LocalCsms, kind: str, after: int = 0, timeout_s: float = 10.0
) -> dict[str, Any]:
    return await csms.wait_for(
        "SecurityEventNotification", lambda p: p["type"] == kind, after=after, timeout_s=timeout_s
    )


async def relinked(rig: AppRig, attempts_before: int) -> None:
    """The charger closed its link and is connected again (a later handshake succeeded)."""
    csms = rig.csms
    await until(
        lambda: (
            any(not a.refused for a in csms.connection_attempts[attempts_before:])
            and CP_ID in csms.connected
        ),
        timeout_s=10,
    )


# --- A02 and A00: profile 3 with a certificate signed through the CSMS ------------------


async def test_profile_3_connects_with_the_certificate_signed_through_the_csms_and_stays(
    make_csms: MakeCsms, tmp_path: Path, pki: Pki
) -> None:
    context = tls_csms_context(pki)
    csms = await make_csms(basic_auth={CP_ID: PASSWORD}, ssl_context=context)
    state = tmp_path / "state"
    ocpp = tls_ocpp(pki, 2)
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state) as rig:
        assert client_serial(csms) is None  # profile 2: no client certificate
        # Profile 3 needs a client certificate first (none is configured).
        assert await set_variable(rig, "SecurityCtrlr", "SecurityProfile", "3") == "Rejected"
        assert await set_variable(rig, "SecurityCtrlr", "OrganizationName", CPO) == "Accepted"

        mark = rig.mark()
        trigger = call.TriggerMessage(requested_message="SignChargingStationCertificate")
        assert (await rig.cp_call(trigger)).status == "Accepted"
        request = await csms.wait_for("SignCertificate", after=mark)
        assert request["certificateType"] == "ChargingStationCertificate"
        csr = x509.load_pem_x509_csr(request["csr"].encode())
        subject = {a.oid: a.value for a in csr.subject}
        assert subject == {NameOID.COMMON_NAME: CP_ID, NameOID.ORGANIZATION_NAME: CPO}
        leaf = sign_csr(csr, (pki.ca.cert, pki.ca.key))
        signed = call.CertificateSigned(
            certificate_chain=pem(leaf), certificate_type="ChargingStationCertificate"
        )
        assert (await rig.cp_call(signed)).status == "Accepted"

        # From now on only a client certificate gets in: no password.
        context.verify_mode = ssl.CERT_REQUIRED
        csms.basic_auth = None
        attempts = len(csms.connection_attempts)
        mark = rig.mark()
        assert await set_variable(rig, "SecurityCtrlr", "SecurityProfile", "3") == "Accepted"
        await relinked(rig, attempts)  # the link closed and came back at profile 3
        assert client_serial(csms) == leaf.serial_number
        assert [a.authorization for a in csms.connection_attempts[attempts:]] == [None]
        raised = await security_event(csms, "ReconfigurationOfSecurityParameters", mark)
        assert raised["techInfo"] == "SecurityCtrlr.SecurityProfile now 3"
        # Never a downgrade.
        assert await set_variable(rig, "SecurityCtrlr", "SecurityProfile", "2") == "Rejected"
        assert await get_variable(rig, "SecurityCtrlr", "SecurityProfile") == "3"

    # A restart with [ocpp] security_profile = 2 does not lower it either, and the signed
    # certificate is still the one shown.
    mark = rig.mark()
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state) as rig:
        await csms.wait_for("BootNotification", after=mark)
        assert await get_variable(rig, "SecurityCtrlr", "SecurityProfile") == "3"
        assert client_serial(csms) == leaf.serial_number
    client_dir = state / "certs" / "client"
    assert (client_dir / "current.pem").exists()  # proven by a connection: it stays


async def test_a_certificate_signed_by_an_unknown_ca_is_rejected_and_reported(
    make_csms: MakeCsms, tmp_path: Path, pki: Pki
) -> None:
    csms = await make_csms(basic_auth={CP_ID: PASSWORD}, ssl_context=tls_csms_context(pki))
    keys = {**KEYS, "SecurityCtrlr": {"OrganizationName": f'"{CPO}"'}}  # TOML text
    async with controller(csms, tmp_path, keys, ocpp=tls_ocpp(pki, 2), cp_id=CP_ID) as rig:
        mark = rig.mark()
        trigger = call.TriggerMessage(requested_message="SignChargingStationCertificate")
        await rig.cp_call(trigger)
        request = await csms.wait_for("SignCertificate", after=mark)
        stranger = make_cert("a CA nobody installed")
        leaf = sign_csr(x509.load_pem_x509_csr(request["csr"].encode()), stranger)
        answer = await rig.cp_call(call.CertificateSigned(certificate_chain=pem(leaf)))
        event = await security_event(csms, "InvalidChargingStationCertificate", mark)
    assert answer.status == "Rejected"
    assert "chain" in event["techInfo"] or "root" in event["techInfo"], event
    assert not (tmp_path / "state" / "certs" / "client" / "candidate.pem").exists()


def signing_keys(wait_s: int, repeats: int) -> dict[str, Any]:
    security = {
        "OrganizationName": f'"{CPO}"',  # TOML text
        "CertSigningWaitMinimum": wait_s,
        "CertSigningRepeatTimes": repeats,
    }
    return {**KEYS, "SecurityCtrlr": security}


async def test_an_unanswered_sign_certificate_is_sent_again_with_the_wait_doubling(
    csms: LocalCsms, tmp_path: Path, pki: Pki
) -> None:
    keys = signing_keys(wait_s=1, repeats=2)
    async with controller(csms, tmp_path, keys, ocpp=V201, cp_id=CP_ID) as rig:
        root = call.InstallCertificate("CSMSRootCertificate", pem(pki.ca.cert))
        assert (await rig.cp_call(root)).status == "Accepted"
        mark = rig.mark()
        trigger = call.TriggerMessage(requested_message="SignChargingStationCertificate")
        await rig.cp_call(trigger)
        await until(lambda: len(rig.sent("SignCertificate", mark)) == 3, timeout_s=10)
        sent = [r for r in csms.received[mark:] if r.action == "SignCertificate"]
        csr = x509.load_pem_x509_csr(sent[-1].payload["csr"].encode())
        leaf = sign_csr(csr, (pki.ca.cert, pki.ca.key))
        answer = await rig.cp_call(call.CertificateSigned(certificate_chain=pem(leaf)))
    assert len({r.payload["csr"] for r in sent}) == 1  # the same CSR: the same pending key
    gaps = [b.monotonic_s - a.monotonic_s for a, b in itertools.pairwise(sent)]
    assert gaps[0] >= 0.95 and gaps[1] >= 1.95, gaps  # CertSigningWaitMinimum, doubled
    assert answer.status == "Accepted"


async def test_sign_certificate_stops_after_its_repeats_until_the_next_trigger(
    csms: LocalCsms, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = signing_keys(wait_s=1, repeats=0)
    async with controller(csms, tmp_path, keys, ocpp=V201, cp_id=CP_ID) as rig:
        mark = rig.mark()
        trigger = call.TriggerMessage(requested_message="SignChargingStationCertificate")
        await rig.cp_call(trigger)
        await until(lambda: "waiting for the next trigger" in caplog.text, timeout_s=10)
        once = rig.sent("SignCertificate", mark)
        await rig.cp_call(trigger)
        await until(lambda: len(rig.sent("SignCertificate", mark)) == 2, timeout_s=10)
        again = rig.sent("SignCertificate", mark)
    assert len(once) == 1
    assert again[1]["csr"] != again[0]["csr"]  # a trigger starts afresh: a new key


# --- M03-M05: the CA store ---------------------------------------------------------------


def hash_data_of(listed: Any, certificate_type: str) -> list[dict[str, Any]]:
    chain = listed.certificate_hash_data_chain or []
    return [c["certificate_hash_data"] for c in chain if c["certificate_type"] == certificate_type]


async def test_roots_of_the_four_uses_are_installed_listed_counted_and_deleted(
    csms: LocalCsms, tmp_path: Path
) -> None:
    uses = (
        "CSMSRootCertificate",
        "ManufacturerRootCertificate",
        "V2GRootCertificate",
        "MORootCertificate",
    )
    roots = {use: make_cert(f"{use} root")[0] for use in uses}
    async with controller(csms, tmp_path, KEYS, ocpp=V201, base_keys={}) as rig:
        assert (await rig.cp_call(call.GetInstalledCertificateIds())).status == "NotFound"
        installed = [
            (await rig.cp_call(call.InstallCertificate(use, pem(cert)))).status
            for use, cert in roots.items()
        ]
        leaf = make_cert("not a CA", issuer=make_cert("some CA"), ca=False)[0]
        not_a_ca = await rig.cp_call(call.InstallCertificate("MORootCertificate", pem(leaf)))
        every = await rig.cp_call(call.GetInstalledCertificateIds())
        v2g = await rig.cp_call(call.GetInstalledCertificateIds(["V2GRootCertificate"]))
        entries = await get_variable(rig, "SecurityCtrlr", "CertificateEntries")

        [mo] = hash_data_of(every, "MORootCertificate")
        deleted = await rig.cp_call(call.DeleteCertificate(certificate_hash_data=mo))
        again = await rig.cp_call(call.DeleteCertificate(certificate_hash_data=mo))
        left = await rig.cp_call(call.GetInstalledCertificateIds(["MORootCertificate"]))
        entries_after = await get_variable(rig, "SecurityCtrlr", "CertificateEntries")
    assert installed == ["Accepted"] * 4
    assert not_a_ca.status == "Rejected"
    assert every.status == "Accepted"
    assert {c["certificate_type"] for c in every.certificate_hash_data_chain} == set(uses)
    assert [c["certificate_type"] for c in v2g.certificate_hash_data_chain] == [
        "V2GRootCertificate"
    ]
    assert mo["serial_number"] == format(roots["MORootCertificate"].serial_number, "x")
    assert (entries, entries_after) == ("4", "3")
    assert (deleted.status, again.status, left.status) == ("Accepted", "NotFound", "NotFound")
    for use in uses:  # stored under the state directory, one folder per use
        assert (tmp_path / "state" / "certs" / _store_dir(use)).is_dir()


def _store_dir(use: str) -> str:
    """The store keeps 2.0.1's CSMSRootCertificate under the whitepaper's name."""
    return "CentralSystemRootCertificate" if use == "CSMSRootCertificate" else use


async def test_the_csms_root_the_link_relies_on_is_not_deleted(
    make_csms: MakeCsms, tmp_path: Path, pki: Pki
) -> None:
    csms = await make_csms(basic_auth={CP_ID: PASSWORD}, ssl_context=tls_csms_context(pki))
    other = make_cert("another CSMS root")[0]
    async with controller(csms, tmp_path, KEYS, ocpp=tls_ocpp(pki, 2), cp_id=CP_ID) as rig:
        for root in (pki.ca.cert, other):
            answer = await rig.cp_call(call.InstallCertificate("CSMSRootCertificate", pem(root)))
            assert answer.status == "Accepted"
        listed = await rig.cp_call(call.GetInstalledCertificateIds(["CSMSRootCertificate"]))
        by_serial = {
            int(d["serial_number"], 16): d for d in hash_data_of(listed, "CSMSRootCertificate")
        }
        in_use = await rig.cp_call(
            call.DeleteCertificate(certificate_hash_data=by_serial[pki.ca.cert.serial_number])
        )
        unused = await rig.cp_call(
            call.DeleteCertificate(certificate_hash_data=by_serial[other.serial_number])
        )
    assert (in_use.status, unused.status) == ("Failed", "Accepted")


# --- SecurityEventNotification -------------------------------------------------------


async def test_security_events_wait_for_the_link_and_use_the_201_names(
    make_csms: MakeCsms, tmp_path: Path
) -> None:
    """A refused connection can only be told once a later one is accepted; a changed
    password and a reset are told too, the reset's before or after the restart (whichever
    comes first: an event is sent until the CSMS answered it)."""
    csms = await make_csms(basic_auth={CP_ID: "not-the-password-16"})
    state = tmp_path / "state"
    ocpp = {**V201, "security_profile": 1, "password": PASSWORD}
    async with controller(
        csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state, wait_ready=False
    ) as rig:
        await until(lambda: any(a.refused for a in csms.connection_attempts), timeout_s=10)
        assert csms.received == []
        csms.basic_auth = {CP_ID: PASSWORD}
        refused = await security_event(csms, "FailedToAuthenticateAtCsms", timeout_s=15)

        new_password = "fedcba9876543210fedc"
        csms.basic_auth = {CP_ID: new_password}
        mark = rig.mark()
        answer = await set_variable(rig, "SecurityCtrlr", "BasicAuthPassword", new_password)
        changed = await security_event(csms, "ReconfigurationOfSecurityParameters", mark)
        before_reset = rig.mark()
        assert (await rig.cp_call(call.Reset(type="Immediate"))).status == "Accepted"
        kind = await asyncio.wait_for(asyncio.shield(rig.task), 10)
    mark = rig.mark()
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state):
        boot = await csms.wait_for("BootNotification", after=mark)
        # sent before the restart if the link was quick enough, else after it
        reset = await security_event(csms, "ResetOrReboot", before_reset)
        await rig.status("Available", mark)
    assert answer == "Accepted"
    assert "401" in refused["techInfo"]
    assert changed["techInfo"] == "SecurityCtrlr.BasicAuthPassword changed"
    assert new_password not in str([r.payload for r in csms.received])
    assert kind is ResetKind.HARD and boot["reason"] == "RemoteReset"
    assert reset["techInfo"] == "Immediate reset requested by the CSMS"


async def test_a_csms_certificate_the_charger_refuses_is_told_once_the_right_one_is_shown(
    make_csms: MakeCsms, tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    context = tls_csms_context(pki)
    context.load_cert_chain(pki.impostor.cert, pki.impostor.key)  # the next handshakes
    csms = await make_csms(basic_auth={CP_ID: PASSWORD}, ssl_context=context)
    ocpp = tls_ocpp(pki, 2)
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, wait_ready=False):
        # The charger aborts in the TLS handshake (the CSMS never sees a request) ...
        await until(lambda: "CSMS certificate was refused" in caplog.text, timeout_s=10)
        assert csms.connection_attempts == []
        # ... and tells it once it reaches the genuine CSMS.
        context.load_cert_chain(pki.server.cert, pki.server.key)
        event = await security_event(csms, "InvalidCsmsCertificate", timeout_s=15)
    assert "CSMS certificate was refused" in event["techInfo"]
