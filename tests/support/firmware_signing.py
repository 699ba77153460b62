"""Signing firmware as a release manager does, for the update tests (no tests here).

:class:`Signer` is a firmware signing root (its PEM file is what the operator configures as
``[ocpp] firmware_signing_ca``) and an EC signing certificate it issued; :meth:`Signer.detached`
writes the detached signature file of a plain UpdateFirmware (the format of
:mod:`controller.csms.firmware_signature`, as ``deploy/sign-release.sh`` writes it) and
:func:`signed_files` serves packages with their ``.sig`` beside them.
"""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.pki import Key, make_cert, pem


@dataclass(frozen=True)
class Signer:
    """A signing root (``ca_file``) and a signing certificate it issued, with its key."""

    ca_file: Path
    certificate_pem: str
    key: Key

    def signature(self, data: bytes) -> str:
        """Base64 ECDSA signature over the SHA-256 of ``data`` (SignedUpdateFirmware's form)."""
        return base64.b64encode(self.key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()

    def detached(self, data: bytes) -> bytes:
        """The detached signature file of ``data``: certificate, then the signature block."""
        body = "\n".join(textwrap.wrap(self.signature(data), 64))
        return (
            f"{self.certificate_pem}-----BEGIN PICHARGE FIRMWARE SIGNATURE-----\n{body}\n"
            "-----END PICHARGE FIRMWARE SIGNATURE-----\n"
        ).encode()


def make_signer(directory: Path, name: str = "picharge firmware") -> Signer:
    """A new signing root written to ``directory/<name>-ca.pem`` and a signer it issued."""
    directory.mkdir(parents=True, exist_ok=True)
    root, root_key = make_cert(f"{name} root")
    signer, key = make_cert(f"{name} signer", issuer=(root, root_key), ca=False)
    ca_file = directory / f"{name.replace(' ', '-')}-ca.pem"
    ca_file.write_text(pem(root))
    return Signer(ca_file, pem(signer), key)


def signed_files(signer: Signer, files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` (URL path to content) and, beside each, its detached signature (``.sig``)."""
    served = dict(files)
    for path, data in files.items():
        served[f"{path}.sig"] = signer.detached(data)
    return served
