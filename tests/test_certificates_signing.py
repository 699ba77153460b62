"""SignCertificate / CertificateSigned over the real adapter and LocalCsms: what the charger
refuses (and reports as InvalidChargePointCertificate), and what it needs before it signs."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from ocpp.v16 import call

from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig, started
from tests.support.pki import make_cert, pem

Key = ec.EllipticCurvePrivateKey


def sign(
    csr_or_key: x509.CertificateSigningRequest | Key,
    ca: tuple[x509.Certificate, Key],
    *,
    expired: bool = False,
) -> x509.Certificate:
    public = csr_or_key.public_key()
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(minutes=5), now + dt.timedelta(days=30))
    )
    ca_cert, ca_key = ca
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN={CP_ID},O=Test CPO"))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(ca_key, hashes.SHA256())
    )


async def signing_request(rig: AdapterRig) -> x509.CertificateSigningRequest:
    csrs: list[str] = []
    rig.csms.set_response("SignCertificate", lambda request: csrs.append(request["csr"]))
    assert await rig.adapter._services.certificates.request_signing()
    return x509.load_pem_x509_csr(csrs[-1].encode())


async def certificate_signed(rig: AdapterRig, chain: str) -> str:
    conf = await rig.csms.call(CP_ID, call.CertificateSigned(certificate_chain=chain))
    status: str = conf.status
    return status


async def test_chains_for_another_key_expired_or_from_an_unknown_ca_are_rejected_and_reported(
    make_rig: MakeRig,
) -> None:
    rig = await started(make_rig, CpoName="Test CPO", CertificateSignedMaxChainSize="2000")
    ca = make_cert("operator CA")
    stranger = make_cert("someone else's CA")
    conf = await rig.csms.call(
        CP_ID,
        call.InstallCertificate(
            certificate_type="CentralSystemRootCertificate", certificate=pem(ca[0])
        ),
    )
    assert conf.status == "Accepted"
    nothing_asked = pem(sign(ec.generate_private_key(ec.SECP256R1()), ca))
    assert await certificate_signed(rig, nothing_asked) == "Rejected"  # no request pending
    csr = await signing_request(rig)
    other_key = ec.generate_private_key(ec.SECP256R1())
    refused: dict[str, str] = {
        "another key": pem(sign(other_key, ca)),
        "expired": pem(sign(csr, ca, expired=True)),
        "unknown CA": pem(sign(csr, stranger)) + pem(stranger[0]),
        "garbage": "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
        "too long": pem(sign(csr, ca)) + pem(ca[0]) * 6,  # over 2000 bytes
    }
    mark = len(rig.csms.received)
    for chain in refused.values():
        assert await certificate_signed(rig, chain) == "Rejected"
    expected = len(refused)
    await rig.csms.wait_for(
        "SecurityEventNotification",
        lambda p: (
            sum(
                r.action == "SecurityEventNotification"
                and r.payload["type"] == "InvalidChargePointCertificate"
                for r in rig.csms.received[mark:]
            )
            >= expected
        ),
        after=mark,
    )
    infos = [
        r.payload.get("techInfo", "")
        for r in rig.csms.received[mark:]
        if r.action == "SecurityEventNotification"
    ]
    assert any("not for the key" in i for i in infos)
    assert any("expired" in i for i in infos)
    assert any("does not chain to a trusted root" in i for i in infos)
    assert any("CertificateSignedMaxChainSize" in i for i in infos)
    # the right one still goes through: the pending request was not used up
    assert await certificate_signed(rig, pem(sign(csr, ca)) + pem(ca[0])) == "Accepted"
    assert await certificate_signed(rig, pem(sign(csr, ca))) == "Rejected"  # nothing pending


async def test_no_signing_request_without_a_cpo_name(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await started(make_rig)
    sent: list[dict[str, Any]] = []
    rig.csms.set_response("SignCertificate", lambda request: sent.append(request))
    with caplog.at_level(logging.WARNING):
        assert not await rig.adapter._services.certificates.request_signing()
    assert sent == [] and "CpoName" in caplog.text
    changed = await rig.csms.call(CP_ID, call.ChangeConfiguration(key="CpoName", value="Acme"))
    assert changed.status == "Accepted"
    rig.csms.set_response("SignCertificate", lambda request: {"status": "Rejected"})
    assert not await rig.adapter._services.certificates.request_signing()  # the CSMS said no
    conf = await rig.csms.call(CP_ID, call.GetConfiguration(key=["CpoName"]))
    assert conf.configuration_key == [{"key": "CpoName", "readonly": False, "value": "Acme"}]
