"""The certificates are used: installed CSMS roots verify real TLS servers from the next
connection, and a client certificate signed through SignCertificate / CertificateSigned
connects at security profile 3, while a refused one gives way to the one that worked.

The charge point is the production :class:`Ocpp16Adapter` with :class:`LinkSecurity`; the
CSMS is :class:`LocalCsms` over wss:// whose server context the tests switch between
certificates (new handshakes take the new one) and which records each client certificate
it was shown.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ocpp.v16 import call

from controller.csms.security import LinkSecurity, TlsFiles
from controller.ocpp16.keys import OcppConfig
from controller.ocpp16.settings import SECURITY_KEYS
from controller.storage import Storage
from tests.support.csms import MakeCsms
from tests.support.ocpp16_adapter import CP_ID, AdapterRig, FakeControl, build_adapter
from tests.support.pki import Pem, issue, pem, sign_csr
from tests.support.security import PASSWORD
from tests.support.wait import until

CPO = "Test CPO"
Key = ec.EllipticCurvePrivateKey


class RecordingContext(ssl.SSLContext):
    """The CSMS's TLS context; keeps each connection's SSL object to read the client
    certificate it was shown."""

    seen: list[ssl.SSLObject]

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        sslobj = super().wrap_bio(*args, **kwargs)
        self.seen.append(sslobj)
        return sslobj

    def client_serials(self) -> list[int]:
        serials = []
        for sslobj in self.seen:
            try:
                der = sslobj.getpeercert(binary_form=True)
            except ValueError:  # handshake not done
                continue
            if der:
                serials.append(x509.load_der_x509_certificate(der).serial_number)
        return serials


def serving(server: Pem, client_ca: Pem | None = None) -> RecordingContext:
    context = RecordingContext(ssl.PROTOCOL_TLS_SERVER)
    context.seen = []
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_OPTIONAL  # profile 2 (no certificate) works too
        context.load_verify_locations(client_ca.cert)
    return context


@dataclass
class Ca:
    pem: Pem
    cert: x509.Certificate
    key: Key

    def sign(self, csr: x509.CertificateSigningRequest, *, days: int = 30) -> x509.Certificate:
        return sign_csr(csr, (self.cert, self.key), days=days)


@dataclass
class Pki:
    ca: Ca  # [ocpp] ca_file; signs server and client certificates
    other: Ca  # installed with InstallCertificate
    server: Pem  # signed by ca
    other_server: Pem  # signed by other


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = Ca(*issue(d, "ca", "picharge test CA", None, ca=True))
    other = Ca(*issue(d, "other", "the new CSMS CA", None, ca=True))
    server, _, _ = issue(d, "server", "csms", (ca.cert, ca.key), server=True)
    other_server, _, _ = issue(d, "other-server", "csms", (other.cert, other.key), server=True)
    return Pki(ca, other, server, other_server)


MakeTlsRig = Callable[..., Awaitable[AdapterRig]]


@pytest.fixture(name="make_tls_rig")
async def make_tls_rig_fixture(
    make_csms: MakeCsms, tmp_path: Path, pki: Pki
) -> AsyncIterator[MakeTlsRig]:
    """An adapter at security profile 2 with ``[ocpp] ca_file`` = the test CA against a
    wss:// LocalCsms serving ``context``."""
    rigs: list[AdapterRig] = []

    async def make(context: ssl.SSLContext, **keys: str) -> AdapterRig:
        csms = await make_csms(basic_auth={CP_ID: PASSWORD}, ssl_context=context)
        storage = await Storage.open(tmp_path / "state")
        defaults = {"SecurityProfile": "2", "AuthorizationKey": PASSWORD, **keys}
        config = OcppConfig(storage, number_of_connectors=1, defaults=defaults)
        await config.load()
        security = LinkSecurity(
            config,
            names=SECURITY_KEYS,
            chargepoint_id=CP_ID,
            url=csms.url,
            files=TlsFiles(ca_file=pki.ca.pem.cert),
        )
        control = FakeControl((1,))
        adapter = build_adapter(csms, control, config, storage, security=security)
        task = asyncio.create_task(adapter.run(), name="adapter")
        rig = AdapterRig(csms, adapter, control, config, storage, task)
        rigs.append(rig)
        await rig.registered()
        return rig

    yield make
    for rig in rigs:
        await rig.stop_adapter()
        await rig.storage.close()


def use(context: ssl.SSLContext, server: Pem) -> None:
    """The CSMS shows ``server`` from its next handshake."""
    context.load_cert_chain(server.cert, server.key)


async def reconnected(rig: AdapterRig) -> None:
    mark = len(rig.csms.received)
    await rig.csms.drop_connections()
    await rig.registered(after=mark, timeout_s=5)


async def refused_again(rig: AdapterRig, caplog: pytest.LogCaptureFixture) -> None:
    """Drop the link and wait for the charger to refuse the CSMS certificate."""
    caplog.clear()
    await rig.csms.drop_connections()
    await until(lambda: "CSMS certificate was refused" in caplog.text)
    assert rig.csms.connected == []


async def install(rig: AdapterRig, ca: Ca) -> str:
    conf = await rig.csms.call(
        CP_ID,
        call.InstallCertificate(
            certificate_type="CentralSystemRootCertificate", certificate=pem(ca.cert)
        ),
    )
    status: str = conf.status
    return status


async def delete(rig: AdapterRig) -> str:
    listed = await rig.csms.call(
        CP_ID, call.GetInstalledCertificateIds(certificate_type="CentralSystemRootCertificate")
    )
    (data,) = listed.certificate_hash_data
    conf = await rig.csms.call(CP_ID, call.DeleteCertificate(certificate_hash_data=data))
    status: str = conf.status
    return status


async def test_an_installed_csms_root_verifies_the_csms_until_it_is_deleted(
    make_tls_rig: MakeTlsRig, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    context = serving(pki.server)
    rig = await make_tls_rig(context)
    use(context, pki.other_server)  # a CSMS certificate from a CA the charger does not know
    await refused_again(rig, caplog)
    assert "unable to get local issuer certificate" in caplog.text

    use(context, pki.server)
    await rig.registered(after=len(rig.csms.received), timeout_s=5)
    assert await install(rig, pki.other) == "Accepted"
    use(context, pki.other_server)
    await reconnected(rig)  # verified by the installed root
    assert await delete(rig) == "Failed"  # the link relies on it

    use(context, pki.server)
    await reconnected(rig)
    assert await delete(rig) == "Accepted"  # verified by ca_file now: it may go
    use(context, pki.other_server)
    await refused_again(rig, caplog)


async def sign_through_the_csms(
    rig: AdapterRig, ca: Ca, **sign: Any
) -> tuple[str, x509.Certificate]:
    """request_signing (as ExtendedTriggerMessage SignChargePointCertificate does): the CSMS
    takes the CSR, ``ca`` signs it, CertificateSigned carries it; (its answer, the leaf)."""
    csrs: list[str] = []
    rig.csms.set_response("SignCertificate", lambda request: csrs.append(request["csr"]))
    assert await rig.adapter._services.certificates.request_signing()
    (text,) = csrs
    csr = x509.load_pem_x509_csr(text.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CP_ID
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    leaf = ca.sign(csr, **sign)
    chain = pem(leaf) + pem(ca.cert)
    conf = await rig.csms.call(CP_ID, call.CertificateSigned(certificate_chain=chain))
    return conf.status, leaf


async def test_a_certificate_signed_through_the_csms_connects_at_profile_3(
    make_tls_rig: MakeTlsRig, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    context = serving(pki.server, client_ca=pki.ca.pem)
    rig = await make_tls_rig(context, CpoName=CPO)
    refused = await rig.csms.call(CP_ID, call.ChangeConfiguration(key="SecurityProfile", value="3"))
    assert refused.status == "Rejected"  # no client certificate yet

    status, leaf = await sign_through_the_csms(rig, pki.ca)
    assert status == "Accepted"
    client_dir = tmp_path / "state" / "certs" / "client"
    assert stat.S_IMODE((client_dir / "candidate.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(client_dir.stat().st_mode) == 0o700
    context.verify_mode = ssl.CERT_REQUIRED  # from now on only a client certificate gets in
    rig.csms.basic_auth = None  # profile 3 proves itself by its certificate alone

    mark = len(rig.csms.received)
    raised = await rig.csms.call(CP_ID, call.ChangeConfiguration(key="SecurityProfile", value="3"))
    assert raised.status == "Accepted"  # the link closes and comes back at profile 3
    await rig.registered(after=mark, timeout_s=5)
    assert context.client_serials()[-1] == leaf.serial_number
    await until(lambda: (client_dir / "current.pem").exists())  # proven: it stays
    assert not (client_dir / "candidate.pem").exists()

    # A second renewal signed by a CA the CSMS does not take for clients: CertificateSigned
    # accepts it (it chains to an installed root), the CSMS refuses it, the charger goes
    # back to the certificate that worked.
    assert await install(rig, pki.other) == "Accepted"
    status, refused_leaf = await sign_through_the_csms(rig, pki.other)
    assert status == "Accepted"
    mark = len(rig.csms.received)
    await rig.csms.drop_connections()
    await rig.registered(after=mark, timeout_s=5)
    assert refused_leaf.serial_number not in context.client_serials()
    assert context.client_serials()[-1] == leaf.serial_number
    assert not (client_dir / "candidate.pem").exists()
    assert "the new client certificate was refused" in caplog.text

    conf = await rig.csms.call(CP_ID, call.GetConfiguration())
    shown = "".join(str(k) for k in conf.configuration_key)
    key_lines = (client_dir / "current.pem").read_text().split("PRIVATE KEY-----")[1]
    secret = key_lines.strip().splitlines()[0]
    assert secret not in shown and secret not in caplog.text
    assert "PRIVATE KEY" not in caplog.text
    frames = "".join(f.text for f in rig.csms.raw_received)
    assert secret not in frames and "PRIVATE KEY" not in frames
