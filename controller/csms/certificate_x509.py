"""X.509 helpers for the OCPP 1.6 security whitepaper's certificate messages: parsing PEM,
CA and validity checks, chain checks against trust anchors, and CertificateHashData as
OCSP's CertID names a certificate (RFC 6960 4.1.1). Pure functions, no I/O; safe on any
thread (the certificates a charger handles are small).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

#: Hash algorithms of CertificateHashDataType (wire name -> hashlib name).
HASH_ALGORITHMS: Mapping[str, str] = {"SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
#: Certificates a chain may have between the leaf and the trust anchor.
MAX_CHAIN_DEPTH = 5


def parse_pem_chain(text: str) -> list[x509.Certificate]:
    """Every certificate of a PEM text, in order; ValueError when there is none or one is
    malformed."""
    certs = x509.load_pem_x509_certificates(text.encode("ascii", errors="replace"))
    if not certs:
        raise ValueError("no certificate in the PEM text")
    return certs


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, hex: a certificate's identity (and file name)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def is_ca(cert: x509.Certificate) -> bool:
    """True when basicConstraints says CA (a certificate without it is no CA)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def validity_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    """Why ``cert`` is not valid at ``now`` (expired, not yet valid), or None."""
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if now < cert.not_valid_before_utc:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``cert`` (names match and the signature verifies)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chain_problem(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Iterable[x509.Certificate],
    now: dt.datetime,
) -> str | None:
    """Why ``leaf`` does not chain (through CA ``intermediates`` valid at ``now``) to one of
    the ``anchors`` (valid at ``now``), or None. Name constraints and policies are not
    checked: the anchors are the operator's own roots, not the web's."""
    trusted = [a for a in anchors if validity_problem(a, now) is None]
    current = leaf
    for _ in range(MAX_CHAIN_DEPTH + 1):
        if any(current == a or issued_by(current, a) for a in trusted):
            return None
        step = next(
            (
                c
                for c in intermediates
                if c != current
                and is_ca(c)
                and validity_problem(c, now) is None
                and issued_by(current, c)
            ),
            None,
        )
        if step is None:
            return f"{current.subject.rfc4514_string()} does not chain to a trusted root"
        current = step
    return f"the chain is longer than {MAX_CHAIN_DEPTH} certificates"


def _der_item(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``at``."""
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        length = int.from_bytes(data[at : at + count], "big")
        at += count
    return tag, at, at + length


def public_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING's bytes (unused-bits octet dropped), which OCSP's
    CertID hashes (RFC 6960 4.1.1): the EC point, the PKCS#1 RSAPublicKey, ..."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, body, _ = _der_item(spki, 0)  # SubjectPublicKeyInfo SEQUENCE
    _, _, algorithm_end = _der_item(spki, body)  # AlgorithmIdentifier
    tag, start, end = _der_item(spki, algorithm_end)
    if tag != 0x03:
        raise ValueError("SubjectPublicKeyInfo without a BIT STRING")
    return spki[start + 1 : end]


@dataclass(frozen=True, slots=True)
class HashData:
    """CertificateHashDataType: a certificate named the way OCSP's CertID names it."""

    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str

    def wire(self) -> dict[str, str]:
        """The snake_case dict the ocpp library turns into the wire's camelCase."""
        return {
            "hash_algorithm": self.hash_algorithm,
            "issuer_name_hash": self.issuer_name_hash,
            "issuer_key_hash": self.issuer_key_hash,
            "serial_number": self.serial_number,
        }

    def matches(self, asked: Mapping[str, str]) -> bool:
        """Compare with a DeleteCertificate's hash data (snake_case keys; hex in any case,
        a serial number's leading zeros ignored)."""
        try:
            return (
                asked["hash_algorithm"] == self.hash_algorithm
                and asked["issuer_name_hash"].lower() == self.issuer_name_hash
                and asked["issuer_key_hash"].lower() == self.issuer_key_hash
                and asked["serial_number"].lower().lstrip("0") == self.serial_number.lstrip("0")
            )
        except (KeyError, AttributeError):
            return False


def hash_data(
    cert: x509.Certificate, issuer: x509.Certificate | None, algorithm: str = "SHA256"
) -> HashData:
    """``cert``'s hash data: the hash of its DER issuer name, the hash of its issuer's
    public key bits (``issuer`` None: its own, right for a self-signed root) and its serial
    number in hex without leading zeros."""
    name = HASH_ALGORITHMS[algorithm]
    key_owner = issuer if issuer is not None else cert
    return HashData(
        hash_algorithm=algorithm,
        issuer_name_hash=hashlib.new(name, cert.issuer.public_bytes()).hexdigest(),
        issuer_key_hash=hashlib.new(name, public_key_bits(key_owner)).hexdigest(),
        serial_number=format(cert.serial_number, "x"),
    )
