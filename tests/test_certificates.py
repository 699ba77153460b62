"""The CA store of the OCPP 1.6 security whitepaper over the real adapter and LocalCsms:
InstallCertificate, GetInstalledCertificateIds and DeleteCertificate, what is refused, the
store's bound, AdditionalRootCertificateCheck, and the files it keeps across restarts.

Certificates are made here with ``cryptography`` (EC P-256); the hash data the charger
reports is checked against values computed here from the keys themselves.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ocpp.v16 import call

from controller.csms.certificate_store import CaStore, CertificateUse
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, MakeRig, started
from tests.support.pki import make_cert, pem

CSMS_ROOT = "CentralSystemRootCertificate"
MANUFACTURER_ROOT = "ManufacturerRootCertificate"
Key = ec.EllipticCurvePrivateKey


def expected_hash_data(cert: x509.Certificate, issuer_key: Key) -> dict[str, str]:
    """CertificateHashData as OCSP's CertID: the issuer's DER name and the issuer's EC
    point (the public key's bit string), SHA-256; the serial number in hex. Keys as the
    ocpp library hands a payload over (snake_case; the schemas checked the wire's camelCase)."""
    point = issuer_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    issuer_der = cert.issuer.public_bytes(serialization.Encoding.DER)
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashlib.sha256(issuer_der).hexdigest(),
        "issuer_key_hash": hashlib.sha256(point).hexdigest(),
        "serial_number": hex(cert.serial_number)[2:],
    }


async def install(rig: AdapterRig, kind: str, text: str) -> str:
    conf = await rig.csms.call(
        CP_ID, call.InstallCertificate(certificate_type=kind, certificate=text)
    )
    status: str = conf.status
    return status


async def installed(rig: AdapterRig, kind: str) -> tuple[str, list[dict[str, str]]]:
    conf = await rig.csms.call(CP_ID, call.GetInstalledCertificateIds(certificate_type=kind))
    return conf.status, conf.certificate_hash_data or []


async def delete(rig: AdapterRig, data: dict[str, Any]) -> str:
    conf = await rig.csms.call(CP_ID, call.DeleteCertificate(certificate_hash_data=data))
    status: str = conf.status
    return status


async def test_installed_roots_are_listed_with_their_hash_data_and_deleted_by_it(
    make_rig: MakeRig,
) -> None:
    rig = await started(make_rig)
    assert await installed(rig, CSMS_ROOT) == ("NotFound", [])
    root, root_key = make_cert("csms root", serial=0x0ABC)  # a leading zero nibble
    vendor, vendor_key = make_cert("firmware root")
    sub, _ = make_cert("firmware sub-CA", issuer=(vendor, vendor_key))
    assert await install(rig, CSMS_ROOT, pem(root)) == "Accepted"
    assert await install(rig, CSMS_ROOT, pem(root)) == "Accepted"  # again: stored once
    assert await install(rig, MANUFACTURER_ROOT, pem(vendor)) == "Accepted"
    assert await install(rig, MANUFACTURER_ROOT, pem(sub)) == "Accepted"

    status, csms_roots = await installed(rig, CSMS_ROOT)
    assert status == "Accepted"
    assert csms_roots == [expected_hash_data(root, root_key)]
    assert csms_roots[0]["serial_number"] == "abc"
    status, vendor_roots = await installed(rig, MANUFACTURER_ROOT)
    # a sub-CA is named by its issuer's key, as OCSP names it
    expected = [expected_hash_data(vendor, vendor_key), expected_hash_data(sub, vendor_key)]
    assert sorted(vendor_roots, key=str) == sorted(expected, key=str)
    assert rig.adapter._services.certificates.roots(CertificateUse.MANUFACTURER_ROOT) != []

    asked = dict(expected_hash_data(vendor, vendor_key))
    asked["serial_number"] = asked["serial_number"].upper()  # hex in any case
    assert await delete(rig, asked) == "Accepted"
    assert await delete(rig, asked) == "NotFound"
    _, vendor_roots = await installed(rig, MANUFACTURER_ROOT)
    assert vendor_roots == [expected_hash_data(sub, vendor_key)]
    other = dict(csms_roots[0], issuer_key_hash="00" * 32)
    assert await delete(rig, other) == "NotFound"
    zeros = dict(csms_roots[0], serial_number="0ABC")  # leading zeros do not matter
    assert await delete(rig, zeros) == "Accepted"  # no TLS link relies on it
    assert await installed(rig, CSMS_ROOT) == ("NotFound", [])


async def test_garbage_a_non_ca_and_an_expired_certificate_are_rejected(
    make_rig: MakeRig,
) -> None:
    rig = await started(make_rig)
    leaf, _ = make_cert("not a CA", ca=False)
    bare, _ = make_cert("no basic constraints", ca=None)
    expired, _ = make_cert("expired root", expired=True)
    assert await install(rig, CSMS_ROOT, "-----BEGIN CERTIFICATE-----\nAAAA\n") == "Rejected"
    assert await install(rig, CSMS_ROOT, "hello") == "Rejected"
    assert await install(rig, CSMS_ROOT, pem(leaf)) == "Rejected"
    assert await install(rig, MANUFACTURER_ROOT, pem(bare)) == "Rejected"
    assert await install(rig, CSMS_ROOT, pem(expired)) == "Rejected"
    assert await installed(rig, CSMS_ROOT) == ("NotFound", [])
    assert await installed(rig, MANUFACTURER_ROOT) == ("NotFound", [])


async def test_a_full_store_rejects_another_certificate(make_rig: MakeRig) -> None:
    rig = await started(make_rig, CertificateStoreMaxLength="2")
    conf = await rig.csms.call(CP_ID, call.GetConfiguration(key=["CertificateStoreMaxLength"]))
    assert conf.configuration_key == [
        {"key": "CertificateStoreMaxLength", "readonly": True, "value": "2"}
    ]
    first, second, third = (make_cert(f"root {n}")[0] for n in range(3))
    assert await install(rig, CSMS_ROOT, pem(first)) == "Accepted"
    assert await install(rig, MANUFACTURER_ROOT, pem(second)) == "Accepted"
    assert await install(rig, CSMS_ROOT, pem(third)) == "Rejected"
    assert await install(rig, CSMS_ROOT, pem(first)) == "Accepted"  # already there
    _, listed = await installed(rig, CSMS_ROOT)
    assert len(listed) == 1


async def test_with_additional_root_check_a_new_csms_root_must_be_signed_by_the_old_one(
    make_rig: MakeRig,
) -> None:
    rig = await started(make_rig, AdditionalRootCertificateCheck="true")
    old, old_key = make_cert("csms root 2026")
    new, new_key = make_cert("csms root 2027", issuer=(old, old_key))  # cross-signed
    stranger, _ = make_cert("someone else's root")
    assert await install(rig, CSMS_ROOT, pem(old)) == "Accepted"  # the first: nothing to check
    assert await install(rig, CSMS_ROOT, pem(stranger)) == "Rejected"
    assert await install(rig, CSMS_ROOT, pem(new)) == "Accepted"
    _, listed = await installed(rig, CSMS_ROOT)
    assert listed == [expected_hash_data(new, old_key)]  # one root; the old is a fallback
    certificates = rig.adapter._services.certificates
    assert certificates.roots(CertificateUse.CENTRAL_SYSTEM_ROOT) == [new]
    assert pem(old) in certificates.csms_roots_pem()  # still trusted until the new one works
    # the same key under a renewed certificate replaces it too
    renewed, _ = make_cert("csms root 2027", key=new_key)
    assert await install(rig, CSMS_ROOT, pem(renewed)) == "Accepted"
    assert certificates.roots(CertificateUse.CENTRAL_SYSTEM_ROOT) == [renewed]


async def test_the_store_survives_a_restart_with_private_files_and_skips_a_corrupt_one(
    make_rig: MakeRig, tmp_path: Path
) -> None:
    rig = await started(make_rig)
    root, _ = make_cert("csms root")
    assert await install(rig, CSMS_ROOT, pem(root)) == "Accepted"
    certs = tmp_path / "state0" / "certs"
    files = list((certs / CSMS_ROOT).glob("*.pem"))
    assert len(files) == 1 and files[0].read_text() == pem(root)
    assert stat.S_IMODE(certs.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o644
    assert not [p for p in (certs / CSMS_ROOT).iterdir() if p.name.startswith(".")]
    (certs / CSMS_ROOT / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n")

    store = CaStore(certs)  # what the next start reads
    await store.load()
    assert store.installed(CertificateUse.CENTRAL_SYSTEM_ROOT) == [root]
    assert store.installed(CertificateUse.MANUFACTURER_ROOT) == []
