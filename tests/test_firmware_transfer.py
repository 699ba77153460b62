"""Firmware and diagnostics files over HTTPS: the server's certificate is verified (a CA the
charger does not trust refuses the transfer), then downloads and uploads work as over HTTP."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from controller.file_transfer import TransferError, download, upload
from tests.support.file_servers import HttpFiles
from tests.support.pki import Pki, issue, server_context


@pytest.fixture(name="certs", scope="module")
def certs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, another CA, a server certificate for 127.0.0.1 and an expired one."""
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = issue(d, "ca", "picharge test CA", None, ca=True)
    other, _, _ = issue(d, "other-ca", "someone else's CA", None, ca=True)
    server, _, _ = issue(d, "server", "files", (ca_cert, ca_key), server=True)
    expired, _, _ = issue(d, "expired", "files", (ca_cert, ca_key), server=True, expired=True)
    client, _, _ = issue(d, "client", "cp", (ca_cert, ca_key))
    return Pki(ca, other, server, expired, client)


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def test_a_download_over_https_checks_the_server_certificate(tmp_path: Path, certs: Pki) -> None:
    with HttpFiles(files={"/fw.whl": b"wheel bytes"}, tls=server_context(certs.server)) as server:
        assert server.base.startswith("https://")
        dest = tmp_path / "download"
        assert download(f"{server.base}/fw.whl", dest, context=trusting(certs.ca.cert)) == 11
        assert dest.read_bytes() == b"wheel bytes"
        with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"):
            download(f"{server.base}/fw.whl", dest, context=trusting(certs.other_ca.cert))


def test_an_upload_over_https_posts_the_file_as_multipart(tmp_path: Path, certs: Pki) -> None:
    archive = tmp_path / "diag.tar.gz"
    archive.write_bytes(b"\x1f\x8b packed log")
    with HttpFiles(tls=server_context(certs.server)) as server:
        upload(f"{server.base}/in/", archive, context=trusting(certs.ca.cert))
        with pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"):
            upload(f"{server.base}/in/", archive, context=trusting(certs.other_ca.cert))
    [sent] = server.uploads
    assert (sent.method, sent.path) == ("POST", "/in/")
    assert sent.form_file() == ("diag.tar.gz", b"\x1f\x8b packed log")


def test_an_expired_server_certificate_is_refused(tmp_path: Path, certs: Pki) -> None:
    with (
        HttpFiles(files={"/f": b"x"}, tls=server_context(certs.expired_server)) as server,
        pytest.raises(TransferError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        download(f"{server.base}/f", tmp_path / "f", context=trusting(certs.ca.cert))
