"""deploy/sign-release.sh: a release manager signs a package with openssl alone, and the
charger installs it from a plain UpdateFirmware (its `.sig` beside it); a package changed
after signing, or a key that is not the certificate's, is caught."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from ocpp.v16 import call

from controller.csms.firmware_policy import FirmwarePolicy
from controller.csms.firmware_signature import (
    SignatureRefused,
    parse_detached,
    trusted_signing_certificate,
    verify_file,
)
from tests.support.file_servers import HttpFiles
from tests.support.firmware_packages import build_wheel
from tests.support.firmware_rig import MakeFwRig, now_iso
from tests.support.ocpp16_adapter import CP_ID
from tests.support.pki import Pem, issue
from tests.support.wait import until

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "sign-release.sh"


def sign_release(key: Path, cert: Path, package: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(key), str(cert), str(package)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ec_release(directory: Path) -> tuple[Pem, Pem, x509.Certificate]:
    """A root (the chargers' firmware_signing_ca) and an EC signing certificate it issued."""
    root, root_cert, root_key = issue(directory, "root", "release root", None, ca=True)
    signer, _, _ = issue(directory, "signer", "release signer", (root_cert, root_key))
    return root, signer, root_cert


def rsa_release(directory: Path) -> Pem:
    """A self-signed RSA signing certificate made with openssl (configured as it is)."""
    files = Pem(directory / "rsa.crt", directory / "rsa.key")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=rsa release", "-keyout", str(files.key), "-out", str(files.cert)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return files


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_signed_release_verifies_and_a_changed_package_does_not(
    tmp_path: Path, kind: str
) -> None:
    if kind == "ec":
        _, signer, root = ec_release(tmp_path)
    else:
        signer = rsa_release(tmp_path)
        root = x509.load_pem_x509_certificate(signer.cert.read_bytes())
    package = tmp_path / "picharge-9.9.9-py3-none-any.whl"
    package.write_bytes(build_wheel()[1])
    done = sign_release(signer.key, signer.cert, package)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{package}.sig"
    found = parse_detached(Path(f"{package}.sig").read_bytes())
    certificate = trusted_signing_certificate(
        found.certificate_pem, [root], dt.datetime.now(dt.UTC)
    )
    verify_file(package, certificate, found.signature_b64)
    package.write_bytes(package.read_bytes() + b"\0")
    with pytest.raises(SignatureRefused, match="does not match"):
        verify_file(package, certificate, found.signature_b64)


def test_a_key_that_is_not_the_certificates_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    _, signer, _ = ec_release(tmp_path)
    other, _, _ = issue(tmp_path, "other", "someone", None)
    package = tmp_path / "p.whl"
    package.write_bytes(b"wheel")
    done = sign_release(other.key, signer.cert, package)
    assert done.returncode == 2
    assert "is not the key of the certificate" in done.stderr
    assert list(tmp_path.glob("p.whl.sig*")) == []
    assert sign_release(signer.key, signer.cert, tmp_path / "missing.whl").returncode == 2


def released(directory: Path) -> tuple[Path, dict[str, bytes]]:
    """A release signed with the script: (the root's file, the files to serve)."""
    root, signer, _ = ec_release(directory)
    package = directory / "picharge-9.9.9-py3-none-any.whl"
    package.write_bytes(build_wheel()[1])
    assert sign_release(signer.key, signer.cert, package).returncode == 0
    signature = Path(f"{package}.sig").read_bytes()
    return root.cert, {"/r.whl": package.read_bytes(), "/r.whl.sig": signature}


async def test_a_release_signed_with_the_script_is_installed_over_update_firmware(
    make_fw_rig: MakeFwRig, tmp_path: Path
) -> None:
    root, files = released(tmp_path)
    fw = await make_fw_rig(policy=FirmwarePolicy(signing_ca=root))
    with HttpFiles(files=files) as server:
        update = call.UpdateFirmware(location=f"{server.base}/r.whl", retrieve_date=now_iso())
        await fw.rig.csms.call(CP_ID, update)
        await until(lambda: fw.installer.installed != [], 10)
    assert [p.version for p in fw.installer.installed] == ["9.9.9"]
