"""SignedUpdateFirmware (OCPP 1.6 security whitepaper) over the adapter against the local CSMS:
a picharge wheel signed in the test (RSA and EC keys, certificates issued by a root CA made
here and configured as ``firmware_signing_ca``) fetched from real local HTTP and FTP servers,
its signature checked, installed and restarted into, each SignedFirmwareStatusNotification
carrying the requestId; Installed and FirmwareUpdated only once the restarted charger
registers. An untrusted or expired signing certificate is answered InvalidCertificate, a bad
signature ends in InvalidSignature, both with their security events and nothing installed."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from ocpp.v16 import call

from controller.config import ConfigError, parse_config
from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.firmware_signature import CertificateRefused, trusted_signing_certificate
from controller.domain import ResetKind
from controller.firmware_install import VerificationFailed
from tests.support.file_servers import FtpFiles, HttpFiles
from tests.support.firmware_packages import build_wheel
from tests.support.firmware_rig import FwRig, MakeFwRig, now_iso
from tests.support.ocpp16_adapter import CP_ID, AdapterRig
from tests.support.wait import until

SIGNED = "SignedFirmwareStatusNotification"
FINAL = {"DownloadFailed", "InvalidSignature", "InstallationFailed", "Installed"}
OK = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "InstallRebooting"]

Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _certificate(
    name: str,
    key: Key,
    issuer: tuple[x509.Certificate, Key] | None,
    *,
    ca: bool,
    expired: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signing_key = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (
            now - dt.timedelta(hours=1),
            now + dt.timedelta(days=30),
        )
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def sign(data: bytes, key: Key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


@dataclass(frozen=True)
class Pki:
    """A firmware signing root (its PEM file is the charger's ``firmware_signing_ca``), an RSA
    and an EC signing certificate it issued, one it issued that has expired, and an EC
    signing certificate from a CA the charger does not know."""

    ca_file: Path
    rsa: tuple[x509.Certificate, Key]
    ec: tuple[x509.Certificate, Key]
    expired: tuple[x509.Certificate, Key]
    stranger: tuple[x509.Certificate, Key]


@pytest.fixture(name="pki", scope="module")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("picharge firmware root", root_key, None, ca=True)
    ca_file = tmp_path_factory.mktemp("pki") / "firmware-ca.pem"
    ca_file.write_text(pem(root))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = _certificate("someone else's root", other_key, None, ca=True)
    return Pki(
        ca_file,
        (_certificate("signer rsa", rsa_key, (root, root_key), ca=False), rsa_key),
        (_certificate("signer ec", ec_key, (root, root_key), ca=False), ec_key),
        (_certificate("old", ec_key, (root, root_key), ca=False, expired=True), ec_key),
        (_certificate("stranger", ec_key, (other_root, other_key), ca=False), ec_key),
    )


async def signed_update(
    rig: AdapterRig,
    location: str,
    signer: tuple[x509.Certificate, Key],
    data: bytes,
    *,
    request_id: int = 7,
    retrieve_in_s: float = 0.0,
    install_in_s: float | None = None,
    signature: str | None = None,
    **kwargs: Any,
) -> tuple[str, int]:
    """Send SignedUpdateFirmware; returns the answer's status and the mark from before it."""
    mark = len(rig.csms.received)
    firmware = {
        "location": location,
        "retrieveDateTime": now_iso(retrieve_in_s),
        "signingCertificate": pem(signer[0]),
        "signature": sign(data, signer[1]) if signature is None else signature,
    }
    if install_in_s is not None:
        firmware["installDateTime"] = now_iso(install_in_s)
    request = call.SignedUpdateFirmware(request_id=request_id, firmware=firmware, **kwargs)
    answer = await rig.csms.call(CP_ID, request)
    return answer.status, mark


def sent(rig: AdapterRig, after: int, request_id: int = 7) -> list[str]:
    statuses = []
    for r in rig.csms.received[after:]:
        if r.action == SIGNED:
            assert r.payload["requestId"] == request_id
            statuses.append(r.payload["status"])
    return statuses


async def ended(
    rig: AdapterRig, after: int, final: set[str] = FINAL, request_id: int = 7
) -> list[str]:
    """The statuses of ``request_id`` from ``after`` on, once one of ``final`` arrived."""
    await rig.csms.wait_for(SIGNED, lambda p: p["status"] in final, after=after, timeout_s=8)
    return sent(rig, after, request_id)


async def rebooting(fw: FwRig, after: int, request_id: int = 7) -> list[str]:
    """The statuses sent until the charger asked for the restart into the new version."""
    await until(lambda: fw.rig.control.named("reset") == [(ResetKind.HARD,)], 8)
    # nothing more comes before the restart: nothing may happen here; the charger acts within tens
    # of ms, so 50 ms is a wide margin on a loaded machine, and a late wake-up only widens the
    # window
    await asyncio.sleep(0.05)
    return sent(fw.rig, after, request_id)


def events(rig: AdapterRig, after: int = 0) -> list[str]:
    return [
        r.payload["type"]
        for r in rig.csms.received[after:]
        if r.action == "SecurityEventNotification"
    ]


async def test_a_correctly_signed_wheel_is_verified_installed_and_reported_after_the_restart(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", pki.rsa, wheel)
        assert status == "Accepted"
        assert await rebooting(fw, mark) == OK
    assert [p.version for p in fw.installer.installed] == ["9.9.9"]
    assert fw.installer.restarts == 1
    assert "FirmwareUpdated" not in events(fw.rig)  # not before the new version runs

    restarted = await make_fw_rig(restart=fw, wait=False)
    rig = restarted.rig
    assert await ended(rig, mark) == [*OK, "Installed"]
    actions = rig.actions(mark)
    boot = actions.index("BootNotification")
    assert actions.index(SIGNED, boot) > boot  # Installed came after the registration
    await rig.csms.wait_for(
        "SecurityEventNotification", lambda p: p["type"] == "FirmwareUpdated", after=mark
    )

    # ExtendedTriggerMessage's view: Idle, with the last requestId
    after = len(rig.csms.received)
    trigger = call.ExtendedTriggerMessage(requested_message="FirmwareStatusNotification")
    assert (await rig.csms.call(CP_ID, trigger)).status == "Accepted"
    last = await rig.csms.wait_for(SIGNED, lambda p: True, after=after)
    assert last == {"status": "Idle", "requestId": 7}


async def test_an_ec_signed_wheel_over_ftp_is_installed(
    make_fw_rig: MakeFwRig, pki: Pki, tmp_path: Path
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    root = tmp_path / "ftp"
    root.mkdir()
    name, wheel = build_wheel("9.9.11")
    (root / name).write_bytes(wheel)
    with FtpFiles(root) as ftp:
        status, mark = await signed_update(fw.rig, ftp.url(f"/{name}"), pki.ec, wheel)
        assert status == "Accepted"
        assert await rebooting(fw, mark) == OK
    assert [p.version for p in fw.installer.installed] == ["9.9.11"]


@pytest.mark.parametrize("problem", ["another file's signature", "not base64", "other key"])
async def test_a_bad_signature_is_refused_and_reported_and_nothing_is_installed(
    make_fw_rig: MakeFwRig, pki: Pki, problem: str
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    signature = {
        "another file's signature": sign(build_wheel("9.9.8")[1], pki.ec[1]),
        "not base64": "this is no signature!",
        "other key": sign(wheel, pki.rsa[1]),  # RSA signature, EC certificate
    }[problem]
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(
            fw.rig, f"{server.base}/fw.whl", pki.ec, wheel, signature=signature
        )
        assert status == "Accepted"
        assert await ended(fw.rig, mark) == ["Downloading", "Downloaded", "InvalidSignature"]
    await fw.rig.csms.wait_for(
        "SecurityEventNotification", lambda p: p["type"] == "InvalidFirmwareSignature", after=mark
    )
    assert fw.installer.installed == [] and fw.rig.control.named("reset") == []


@pytest.mark.parametrize("which", ["untrusted CA", "expired", "garbage"])
async def test_a_signing_certificate_we_cannot_trust_is_answered_invalid_certificate(
    make_fw_rig: MakeFwRig, pki: Pki, which: str
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        signer = {"untrusted CA": pki.stranger, "expired": pki.expired, "garbage": pki.ec}[which]
        if which == "garbage":
            request = call.SignedUpdateFirmware(
                request_id=7,
                firmware={
                    "location": f"{server.base}/fw.whl",
                    "retrieveDateTime": now_iso(),
                    "signingCertificate": "-----BEGIN CERTIFICATE-----\nAAAA\n",
                    "signature": sign(wheel, signer[1]),
                },
            )
            mark = len(fw.rig.csms.received)
            status = (await fw.rig.csms.call(CP_ID, request)).status
        else:
            status, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", signer, wheel)
        assert status == "InvalidCertificate"
        await fw.rig.csms.wait_for(
            "SecurityEventNotification",
            lambda p: p["type"] == "InvalidFirmwareSigningCertificate",
            after=mark,
        )
        # nothing may happen here; the charger acts within tens of ms, so 0.2 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.2)
        assert server.requests == [] and SIGNED not in fw.rig.actions(mark)
    assert fw.installer.installed == []


async def test_without_a_configured_signing_root_every_signed_update_is_refused(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(policy=FirmwarePolicy())
    status, _ = await signed_update(fw.rig, "http://127.0.0.1:1/fw.whl", pki.rsa, b"x")
    assert status == "InvalidCertificate"


async def install_manufacturer_root(rig: AdapterRig, pki: Pki) -> None:
    install = call.InstallCertificate(
        certificate_type="ManufacturerRootCertificate", certificate=pki.ca_file.read_text()
    )
    assert (await rig.csms.call(CP_ID, install)).status == "Accepted"


async def test_a_manufacturer_root_installed_by_the_csms_does_not_vouch_for_firmware(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    """Else a CSMS could install a CA of its own and sign whatever it likes."""
    fw = await make_fw_rig()  # the operator trusts the rig's signer, not pki's root
    await install_manufacturer_root(fw.rig, pki)
    _, wheel = build_wheel()
    status, mark = await signed_update(fw.rig, "http://127.0.0.1:1/fw.whl", pki.ec, wheel)
    assert status == "InvalidCertificate"
    await fw.rig.csms.wait_for(
        "SecurityEventNotification",
        lambda p: p["type"] == "InvalidFirmwareSigningCertificate",
        after=mark,
    )


async def test_a_manufacturer_root_vouches_for_firmware_where_the_operator_allows_it(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(policy=FirmwarePolicy(trust_manufacturer_roots=True))
    await install_manufacturer_root(fw.rig, pki)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", pki.ec, wheel)
        assert status == "Accepted"
        assert await rebooting(fw, mark) == OK


async def test_a_signed_older_version_is_refused_and_reported(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel("0.0.1")
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", pki.ec, wheel)
        assert status == "Accepted"
        assert await ended(fw.rig, mark) == [*OK[:3], "InstallationFailed"]
    await fw.rig.csms.wait_for(
        "SecurityEventNotification",
        lambda p: p["type"] == "InvalidFirmwareSignature" and "older" in p.get("techInfo", ""),
        after=mark,
    )
    assert fw.installer.installed == [] and fw.rig.control.named("reset") == []


async def test_an_unsupported_location_is_rejected(make_fw_rig: MakeFwRig, pki: Pki) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    status, mark = await signed_update(fw.rig, "file:///etc/passwd", pki.rsa, b"x")
    assert status == "Rejected"
    # nothing may happen here; the charger acts within tens of ms, so 0.1 s is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.1)
    assert SIGNED not in fw.rig.actions(mark)


async def test_a_download_that_keeps_failing_is_retried_then_download_failed(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}, fail_next=5) as server:
        status, mark = await signed_update(
            fw.rig, f"{server.base}/fw.whl", pki.ec, wheel, retries=2, retry_interval=1
        )
        assert status == "Accepted"
        assert await ended(fw.rig, mark) == ["Downloading", "DownloadFailed"]
    assert len(server.requests) == 3 and fw.installer.installed == []


async def test_retrieve_and_install_times_are_honoured(make_fw_rig: MakeFwRig, pki: Pki) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(
            fw.rig, f"{server.base}/fw.whl", pki.ec, wheel, retrieve_in_s=0.6, install_in_s=1.2
        )
        assert status == "Accepted"
        await ended(fw.rig, mark, {"DownloadScheduled"})
        # nothing before the retrieveDate: nothing may happen here; the charger acts within tens of
        # ms, so 0.3 s is a wide margin on a loaded machine, and a late wake-up only widens the
        # window
        await asyncio.sleep(0.3)
        assert server.requests == [] and sent(fw.rig, mark) == ["DownloadScheduled"]
        await ended(fw.rig, mark, {"InstallScheduled"})
        # TriggerMessage (core) between download and install: Downloaded
        after = len(fw.rig.csms.received)
        trigger = call.TriggerMessage(requested_message="FirmwareStatusNotification")
        assert (await fw.rig.csms.call(CP_ID, trigger)).status == "Accepted"
        core = await fw.rig.csms.wait_for("FirmwareStatusNotification", lambda p: True, after=after)
        assert core == {"status": "Downloaded"} and fw.installer.installed == []
        assert await rebooting(fw, mark) == [
            "DownloadScheduled",
            "Downloading",
            "Downloaded",
            "SignatureVerified",
            "InstallScheduled",
            *OK[3:],
        ]


async def test_a_scheduled_signed_update_survives_a_restart_and_runs(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        status, mark = await signed_update(
            fw.rig, f"{server.base}/fw.whl", pki.ec, wheel, retrieve_in_s=1.0, request_id=42
        )
        assert status == "Accepted"
        await fw.rig.csms.wait_for(SIGNED, lambda p: True, after=mark)
        restarted = await make_fw_rig(restart=fw)
        assert server.requests == []
        await until(lambda: restarted.rig.control.named("reset") == [(ResetKind.HARD,)], 8)
    # told again by the restarted charger, then run at the retrieve time
    assert sent(restarted.rig, mark, 42) == ["DownloadScheduled", "DownloadScheduled", *OK]
    assert len(server.requests) == 1 and [p.version for p in fw.installer.installed] == ["9.9.9"]
    again = await make_fw_rig(restart=restarted)
    assert (await ended(again.rig, mark, FINAL, 42))[-1] == "Installed"


async def test_a_version_that_fell_back_is_reported_installation_failed_for_its_request(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        _, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", pki.ec, wheel)
        assert await rebooting(fw, mark) == OK
    fw.installer.trial = None  # guard rolled the new version back
    restarted = await make_fw_rig(restart=fw)
    assert await ended(restarted.rig, mark) == [*OK, "InstallationFailed"]
    assert "FirmwareUpdated" not in events(restarted.rig, mark)


async def test_an_installed_version_that_fails_its_check_is_install_verification_failed(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    fw.installer.failure = VerificationFailed("import check exited 1")
    _, wheel = build_wheel()
    with HttpFiles(files={"/fw.whl": wheel}) as server:
        _, mark = await signed_update(fw.rig, f"{server.base}/fw.whl", pki.ec, wheel)
        final = await ended(fw.rig, mark, {*FINAL, "InstallVerificationFailed"})
    assert final == [*OK[:4], "InstallVerificationFailed"]
    assert fw.rig.control.named("reset") == []


async def test_a_new_signed_update_cancels_one_waiting_to_download(
    make_fw_rig: MakeFwRig, pki: Pki
) -> None:
    fw = await make_fw_rig(signing_ca=pki.ca_file)
    _, old = build_wheel("9.9.1")
    _, new = build_wheel("9.9.2")
    files = {"/old.whl": old, "/new.whl": new}
    with HttpFiles(files=files) as server:
        status, first = await signed_update(
            fw.rig, f"{server.base}/old.whl", pki.ec, old, request_id=1, retrieve_in_s=30
        )
        assert status == "Accepted"
        await fw.rig.csms.wait_for(SIGNED, lambda p: p["requestId"] == 1, after=first)
        status, second = await signed_update(
            fw.rig, f"{server.base}/new.whl", pki.ec, new, request_id=2
        )
        assert status == "AcceptedCanceled"
        assert await rebooting(fw, second, 2) == OK
        # while it reboots into the new version, another update is Rejected
        status, _ = await signed_update(fw.rig, f"{server.base}/old.whl", pki.ec, old, request_id=3)
        assert status == "Rejected"
    assert server.requests == ["GET /new.whl"]
    assert [p.version for p in fw.installer.installed] == ["9.9.2"]


def test_a_signing_certificate_may_chain_through_an_intermediate_it_carries() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("chain root", root_key, None, ca=True)
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _certificate("intermediate", middle_key, (root, root_key), ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("signer", leaf_key, (middle, middle_key), ca=False)
    now = dt.datetime.now(dt.UTC)
    assert trusted_signing_certificate(pem(leaf) + pem(middle), [root], now) == leaf
    with pytest.raises(CertificateRefused, match="does not chain"):
        trusted_signing_certificate(pem(leaf), [root], now)  # the intermediate is missing
    with pytest.raises(CertificateRefused, match="valid from"):
        trusted_signing_certificate(pem(leaf) + pem(middle), [root], now + dt.timedelta(days=60))


def test_a_certificate_that_is_no_ca_cannot_vouch_for_a_signing_certificate() -> None:
    """Anyone holding an ordinary certificate of the manufacturer's (a signing certificate,
    not a CA) could otherwise mint signing certificates of their own."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("chain root", root_key, None, ca=True)
    ordinary_key = ec.generate_private_key(ec.SECP256R1())
    ordinary = _certificate("an ordinary signer", ordinary_key, (root, root_key), ca=False)
    minted_key = ec.generate_private_key(ec.SECP256R1())
    minted = _certificate("minted", minted_key, (ordinary, ordinary_key), ca=False)
    now = dt.datetime.now(dt.UTC)
    assert trusted_signing_certificate(pem(ordinary), [root], now) == ordinary
    with pytest.raises(CertificateRefused, match="does not chain"):
        trusted_signing_certificate(pem(minted) + pem(ordinary), [root], now)
    with pytest.raises(CertificateRefused, match="does not chain"):
        trusted_signing_certificate(pem(minted), [ordinary], now)  # configured, but no CA


def test_the_configured_certificate_may_be_the_signing_certificate_itself() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("chain root", root_key, None, ca=True)
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _certificate("signer", signer_key, (root, root_key), ca=False)
    now = dt.datetime.now(dt.UTC)
    assert trusted_signing_certificate(pem(signer), [signer], now) == signer
    with pytest.raises(CertificateRefused, match="valid from"):
        trusted_signing_certificate(pem(signer), [signer], now + dt.timedelta(days=60))


def test_the_signing_ca_setting_names_the_key_when_it_is_unusable(tmp_path: Path, pki: Pki) -> None:
    def parsed(value: str) -> Path | None:
        return parse_config({"ocpp": {"firmware_signing_ca": value}}).ocpp_firmware_signing_ca

    assert parsed(str(pki.ca_file)) == pki.ca_file
    assert parse_config({}).ocpp_firmware_signing_ca is None
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("hello")
    for value, problem in [
        (str(tmp_path / "missing.pem"), "no such file"),
        (str(not_pem), "no PEM"),
    ]:
        with pytest.raises(ConfigError, match=f"ocpp.firmware_signing_ca: {problem}"):
            parsed(value)


def test_the_firmware_trust_settings_default_to_trusting_nobody() -> None:
    config = parse_config({})
    assert (
        config.ocpp_firmware_signing_ca,
        config.ocpp_firmware_trust_manufacturer_roots,
        config.ocpp_allow_unsigned_firmware,
        config.ocpp_allow_firmware_downgrade,
        config.ocpp_firmware_max_bytes,
    ) == (None, False, False, False, 64 * 1024 * 1024)
    chosen = parse_config(
        {
            "ocpp": {
                "firmware_trust_manufacturer_roots": True,
                "allow_unsigned_firmware": True,
                "allow_firmware_downgrade": True,
                "firmware_max_bytes": 1_000_000,
            }
        }
    )
    assert chosen.ocpp_firmware_trust_manufacturer_roots and chosen.ocpp_allow_unsigned_firmware
    assert chosen.ocpp_allow_firmware_downgrade and chosen.ocpp_firmware_max_bytes == 1_000_000


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("allow_unsigned_firmware", "yes", "must be bool"),
        ("firmware_trust_manufacturer_roots", 1, "must be bool"),
        ("firmware_max_bytes", 1000, "must be from 65536 to 1073741824 bytes"),
        ("firmware_max_bytes", "64M", "must be int"),
    ],
)
def test_a_bad_firmware_trust_setting_names_its_key(key: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"ocpp.{key}: {problem}"):
        parse_config({"ocpp": {key: value}})
