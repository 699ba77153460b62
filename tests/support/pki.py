"""Certificates for the tests, made with ``cryptography`` (EC P-256, so making them is quick).

- :func:`issue` writes a key and its certificate to files (for TLS servers and clients);
  :class:`Pki` is the set the security tests use, :func:`server_context` a CSMS's TLS.
- :func:`make_cert` makes one in memory (for the certificate store), :func:`pem` its text.
- :func:`sign_csr` is a CA answering SignCertificate: the leaf for a charger's CSR.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


@dataclasses.dataclass(frozen=True)
class Pem:
    """A certificate and its private key as PEM files."""

    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(
    directory: Path,
    stem: str,
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    expired: bool = False,
    server: bool = False,
) -> tuple[Pem, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new EC P-256 key and its certificate for ``subject``, written as ``stem.crt`` and
    ``stem.key`` in ``directory``; self-signed unless ``issuer`` (cert, key) is given;
    ``server``: valid for 127.0.0.1, as the loopback CSMS is reached."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (
            now - dt.timedelta(minutes=5),
            now + dt.timedelta(days=1),
        )
    )
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_cert.subject if issuer_cert is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer_key, hashes.SHA256())
    files = Pem(directory / f"{stem}.crt", directory / f"{stem}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files, cert, key


@dataclasses.dataclass(frozen=True)
class Pki:
    """The TLS world of the security tests: two unrelated CAs, a CSMS server certificate
    (and an expired one) and a client certificate, all signed by ``ca``."""

    ca: Pem
    other_ca: Pem
    server: Pem
    expired_server: Pem
    client: Pem


def server_context(server: Pem, *, client_ca: Pem | None = None) -> ssl.SSLContext:
    """The CSMS's TLS: its certificate; with ``client_ca`` a client certificate is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.cert)
    return context


def make_cert(
    subject: str,
    *,
    issuer: tuple[x509.Certificate, Key] | None = None,
    ca: bool | None = True,
    serial: int | None = None,
    expired: bool = False,
    key: Key | None = None,
) -> tuple[x509.Certificate, Key]:
    """A certificate for a new key (or ``key``); self-signed unless ``issuer`` is given;
    ``ca`` None leaves basicConstraints out."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(minutes=5), now + dt.timedelta(days=30))
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    signer_cert, signer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    return builder.sign(signer_key, hashes.SHA256()), key


def sign_csr(
    csr: x509.CertificateSigningRequest,
    issuer: tuple[x509.Certificate, Key],
    *,
    days: int = 30,
) -> x509.Certificate:
    """The client certificate a CA (``issuer``: certificate and key) issues for ``csr``,
    valid for ``days`` from now; ``days`` <= 0: one that is not valid now (it began 30 days
    ago and ended ``-days`` days ago)."""
    issuer_cert, issuer_key = issuer
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(minutes=5) if days > 0 else now - dt.timedelta(days=30)
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(issuer_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .sign(issuer_key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> str:
    """``cert`` as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode()
