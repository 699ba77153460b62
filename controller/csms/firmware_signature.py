"""Signed firmware (SignedUpdateFirmware of the OCPP 1.6 security whitepaper, and plain
UpdateFirmware with a detached signature): is the signing certificate one we trust, and is
the downloaded file signed by it?

- The signing certificate (PEM; intermediates may follow it in the same text) must parse, be
  valid now, and chain to one of the trusted firmware-signing roots (the configured
  ``[ocpp] firmware_signing_ca`` file, and the installed ManufacturerRootCertificates only
  where the operator allows it: :mod:`.firmware_policy`):
  each certificate's signature is checked against its issuer's key, every issuer on the way
  must be a CA (basicConstraints CA, and keyCertSign when it states its key usage: a
  manufacturer's ordinary signing certificate cannot mint others), and every certificate
  of the chain, root included, must be valid now. A signing certificate that is itself one
  of the trusted ones (the configured file may hold the signing certificate rather than its
  CA) is trusted as it is. Path-length limits and name constraints are not checked.
- The signature is base64 of the signature over the file's SHA-256 digest with the signing
  certificate's key: RSA PKCS#1 v1.5 or ECDSA (DER), the forms the whitepaper's CSMSs send.
- A plain UpdateFirmware carries neither: its signature is a detached file next to the
  package, at the package's URL with ``.sig`` appended to the path (:func:`signature_url`),
  holding the signing certificate (and any intermediates) as PEM followed by the signature
  as a PEM-style block (:func:`parse_detached`; ``deploy/sign-release.sh`` writes one)::

      -----BEGIN CERTIFICATE-----
      (the signing certificate, then its intermediates)
      -----END CERTIFICATE-----
      -----BEGIN PICHARGE FIRMWARE SIGNATURE-----
      (base64 of the signature over the SHA-256 of the package, as above)
      -----END PICHARGE FIRMWARE SIGNATURE-----

Free of OCPP and asyncio. Everything here is CPU work on small inputs except
:func:`verify_file` and :func:`load_certificates` (file reads): call those in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

log = logging.getLogger(__name__)

#: Intermediates followed from the signing certificate to a root, at most.
MAX_CHAIN = 5
#: Bytes hashed per read.
CHUNK = 64 * 1024


SIGNATURE_SUFFIX = ".sig"
_SIGNATURE_BLOCK = re.compile(
    r"-----BEGIN PICHARGE FIRMWARE SIGNATURE-----\s*([A-Za-z0-9+/=\s]+?)\s*"
    r"-----END PICHARGE FIRMWARE SIGNATURE-----"
)


class CertificateRefused(Exception):
    """The signing certificate is unusable: unreadable, not valid now or not trusted."""


class SignatureRefused(Exception):
    """The file is not signed by the signing certificate's key (or the signature is garbage)."""


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file (blocking read). An unreadable file raises OSError,
    a file without a certificate ValueError."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def _valid_now(cert: x509.Certificate, now: dt.datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateRefused(
            f"{what} {cert.subject.rfc4514_string()} is valid from "
            f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
        )


def _may_issue(cert: x509.Certificate) -> bool:
    """A CA certificate (basicConstraints CA) whose key usage, if stated, allows signing
    certificates."""
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if not _may_issue(issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trusted_signing_certificate(
    pem: str, roots: list[x509.Certificate], now: dt.datetime
) -> x509.Certificate:
    """The signing certificate of ``pem`` when it chains to one of ``roots`` and every
    certificate on the way is valid at ``now`` (UTC); else :class:`CertificateRefused`."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("ascii", "replace"))
    except ValueError as exc:
        raise CertificateRefused(f"signing certificate unreadable: {exc}") from None
    signer = chain[0]
    _valid_now(signer, now, "signing certificate")
    if not roots:
        raise CertificateRefused("no firmware signing root is installed or configured")
    if signer in roots:
        return signer  # the trusted certificate itself, not one it vouches for
    intermediates = chain[1:]
    cert = signer
    for _ in range(MAX_CHAIN + 1):
        root = next((r for r in roots if _issued_by(cert, r)), None)
        if root is not None:
            _valid_now(root, now, "signing root")
            return signer
        parent = next((i for i in intermediates if i is not cert and _issued_by(cert, i)), None)
        if parent is None:
            break
        _valid_now(parent, now, "intermediate certificate")
        cert = parent
    raise CertificateRefused(
        f"signing certificate {signer.subject.rfc4514_string()} (issuer "
        f"{signer.issuer.rfc4514_string()}) does not chain to a trusted firmware signing root"
    )


def _digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(CHUNK), b""):
            digest.update(block)
    return digest.digest()


def verify_file(path: Path, signer: x509.Certificate, signature_b64: str) -> None:
    """Check that ``signature_b64`` signs the SHA-256 of the file at ``path`` with the key of
    ``signer`` (blocking: reads the file). Raises :class:`SignatureRefused`."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRefused("the signature is not base64") from None
    digest = _digest(path)
    key = signer.public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
        else:
            raise SignatureRefused(f"unsupported signing key {type(key).__name__}")
    except InvalidSignature:
        raise SignatureRefused("the signature does not match the file") from None


def file_roots(path: Path | None) -> list[x509.Certificate]:
    """The certificates of the configured firmware signing CA file (``[ocpp]
    firmware_signing_ca``; blocking read); none without one. A file that went missing or
    unreadable since the configuration was checked is logged and trusts nothing."""
    if path is None:
        return []
    try:
        return load_certificates(path)
    except (OSError, ValueError) as exc:
        log.error("firmware signing CA %s unusable: %s", path, exc)
        return []


@dataclass(frozen=True, slots=True)
class DetachedSignature:
    """A detached signature file: the signing certificate chain (PEM) and the signature
    (base64), the two things a SignedUpdateFirmware carries in its request."""

    certificate_pem: str
    signature_b64: str


def signature_url(location: str) -> str:
    """Where the detached signature of the package at ``location`` is: ``.sig`` appended to
    the URL's path; the query stays (it may be an access token), the fragment (pip's
    ``#sha256=`` of the package) goes."""
    parts = urllib.parse.urlsplit(location)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + SIGNATURE_SUFFIX, fragment=""))


def parse_detached(data: bytes) -> DetachedSignature:
    """The certificate chain and signature of a detached signature file (module text);
    :class:`SignatureRefused` when it holds no certificate or not exactly one signature."""
    text = data.decode("ascii", "replace")
    blocks = _SIGNATURE_BLOCK.findall(text)
    if len(blocks) != 1:
        raise SignatureRefused(
            f"the detached signature holds {len(blocks)} PICHARGE FIRMWARE SIGNATURE blocks"
        )
    certificates = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.DOTALL
    )
    if not certificates:
        raise SignatureRefused("the detached signature holds no signing certificate")
    return DetachedSignature("\n".join(certificates) + "\n", "".join(blocks[0].split()))
