"""A03 (issue 14): under security profile 3 the charging station renews its client
certificate on its own before it expires: less than SecurityCtrlr.CertRenewalMarginDays
(default 30) days left and it sends SignCertificate, no TriggerMessage needed; the signed
certificate is shown from the next connection, and a certificate with time left is not
renewed.

The whole controller on simulated hardware against the bundled CSMS over TLS that requires
a client certificate; the operator's certificate (``[ocpp] cert_file``) is a short-lived one
from ``tests/support/pki.py`` (one day). The ``make_csms`` fixture fails the test on any
schema violation of what the station sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from ocpp.v201 import call

from tests.support.csms import MakeCsms
from tests.support.device_model import QUIET_KEYS, V201
from tests.support.pki import issue, pem, server_context, sign_csr
from tests.support.security import CP_ID, client_serial
from tests.support.sim_app import controller
from tests.support.wait import until

CPO = "Test CPO"
KEYS = {**QUIET_KEYS, "SecurityCtrlr": {"OrganizationName": f'"{CPO}"'}}  # TOML text


async def test_a_client_certificate_about_to_expire_is_renewed_by_the_station(
    make_csms: MakeCsms, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="controller.ocpp201.cert_renewal")
    pki = tmp_path / "pki"
    pki.mkdir()
    ca, ca_cert, ca_key = issue(pki, "ca", "renewal test CA", None, ca=True)
    server, _, _ = issue(pki, "server", "csms", (ca_cert, ca_key), server=True)
    client, client_cert, _ = issue(pki, "client", CP_ID, (ca_cert, ca_key))  # one day left
    csms = await make_csms(ssl_context=server_context(server, client_ca=ca))
    ocpp = {
        **V201,
        "security_profile": 3,
        "ca_file": str(ca.cert),
        "cert_file": str(client.cert),
        "key_file": str(client.key),
    }
    state = tmp_path / "state"
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state) as rig:
        assert client_serial(csms) == client_cert.serial_number
        request = await csms.wait_for("SignCertificate")  # nobody asked for it
        csr = x509.load_pem_x509_csr(request["csr"].encode())
        renewed = sign_csr(csr, (ca_cert, ca_key), days=365)
        signed = call.CertificateSigned(
            certificate_chain=pem(renewed), certificate_type="ChargingStationCertificate"
        )
        answer = await rig.cp_call(signed)
    assert request["certificateType"] == "ChargingStationCertificate"
    assert answer.status == "Accepted"
    assert not [r for r in csms.received if r.action == "TriggerMessage"]
    caplog.clear()
    mark = len(csms.received)
    async with controller(csms, tmp_path, KEYS, ocpp=ocpp, cp_id=CP_ID, state_dir=state) as rig:
        assert client_serial(csms) == renewed.serial_number  # the next connection shows it
        await until(lambda: "not due for renewal" in caplog.text, what="the certificate checked")
    assert not rig.sent("SignCertificate", mark)
