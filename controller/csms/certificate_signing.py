"""The charge point's own TLS client certificate (security profile 3) and its renewal
through the CSMS (OCPP 1.6 security whitepaper, use cases A02/A03: SignCertificate and
CertificateSigned).

The charger makes a new key pair (EC P-256) and a certificate signing request for it
(CN = the charge point id, O = CpoName); the key never leaves the charger and is only ever
written 0600. The signed chain that comes back is checked (:meth:`ClientCredentials.check`)
and kept as a *candidate* beside the certificate in use: the next connection tries it, and
only once a connection with it succeeded does it become the *current* one. A candidate the
CSMS refuses is dropped, and the charger goes back to the previous certificate (the one it
stored before, else ``[ocpp] cert_file``): a working certificate is never lost.

On disk, in ``<state>/certs/client/`` (0700), every file 0600 and written atomically::

    pending.key     the key of the last signing request, until its certificate comes
    candidate.pem   a signed chain (leaf first) and its key, not yet proven
    current.pem     the signed chain and key the last good connection used

A chain and its key share one file so that a switch is one rename: a power cut can never
pair a certificate with the wrong key. Loop thread only; key generation and file work run
in :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.csms.certificate_store import make_private_dir, sync_directory, write_atomically
from controller.csms.certificate_x509 import (
    chain_problem,
    parse_pem_chain,
    pem_of,
    validity_problem,
)

log = logging.getLogger(__name__)

CLIENT_DIR = "client"
PENDING_KEY = "pending.key"
CANDIDATE = "candidate.pem"
CURRENT = "current.pem"

_PrivateKey = ec.EllipticCurvePrivateKey


def _key_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    data: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def key_and_csr(common_name: str, organization: str) -> tuple[_PrivateKey, str]:
    """A new EC P-256 key and a PEM CSR for it. CPU work: call in a worker thread."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


class ClientCredentials:
    """The pending key, the candidate and the current client certificate, in ``directory``.

    :meth:`load` first. Loop thread only.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: _PrivateKey | None = None
        self._candidate = False
        self._current = False

    async def load(self) -> None:
        """Find what the last run left; an unreadable pending key is logged and dropped."""

        def read() -> tuple[_PrivateKey | None, bool, bool]:
            pending: _PrivateKey | None = None
            path = self.directory / PENDING_KEY
            if path.is_file():
                try:
                    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                except (OSError, ValueError, TypeError) as exc:
                    log.warning(
                        "pending client key %s unreadable (%s): dropped", path, type(exc).__name__
                    )
                else:
                    pending = key if isinstance(key, ec.EllipticCurvePrivateKey) else None
            return (
                pending,
                (self.directory / CANDIDATE).is_file(),
                (self.directory / CURRENT).is_file(),
            )

        self._pending, self._candidate, self._current = await asyncio.to_thread(read)

    @property
    def pending(self) -> bool:
        """True while a signing request waits for its certificate."""
        return self._pending is not None

    @property
    def candidate(self) -> Path | None:
        return self.directory / CANDIDATE if self._candidate else None

    def pem(self) -> Path | None:
        """The file (chain and key) to connect with: the candidate while there is one, else
        the current signed certificate; None: none was signed (``[ocpp] cert_file``)."""
        if self._candidate:
            return self.directory / CANDIDATE
        if self._current:
            return self.directory / CURRENT
        return None

    async def new_request(self, common_name: str, organization: str) -> str:
        """Make a new key (kept as the pending one, 0600) and return its PEM CSR."""
        key, csr = await asyncio.to_thread(key_and_csr, common_name, organization)

        def store() -> None:
            make_private_dir(self.directory)
            write_atomically(self.directory / PENDING_KEY, _key_pem(key), 0o600)

        await asyncio.to_thread(store)
        self._pending = key
        return csr

    def check(
        self, chain_text: str, anchors: Iterable[x509.Certificate], now: dt.datetime
    ) -> tuple[list[x509.Certificate], str | None]:
        """(the chain, None) when CertificateSigned's chain may be used; else (_, why not):
        no request pending, not PEM, a leaf for another key, not valid at ``now``, or no
        chain to one of ``anchors``."""
        if self._pending is None:
            return [], "no certificate signing request is pending"
        try:
            chain = parse_pem_chain(chain_text)
        except ValueError as exc:
            return [], f"not a PEM certificate chain ({exc})"
        leaf = chain[0]
        if _spki(leaf.public_key()) != _spki(self._pending.public_key()):
            return chain, "the certificate is not for the key of the signing request"
        problem = validity_problem(leaf, now)
        if problem is not None:
            return chain, f"the certificate is {problem}"
        problem = chain_problem(leaf, chain[1:], anchors, now)
        if problem is not None:
            return chain, problem
        return chain, None

    async def accept(self, chain: list[x509.Certificate]) -> None:
        """Store ``chain`` with the pending key as the candidate (raises OSError)."""
        key = self._pending
        if key is None:
            raise RuntimeError("accept() without a pending key")
        data = "".join(pem_of(c) for c in chain).encode("ascii") + _key_pem(key)

        def store() -> None:
            make_private_dir(self.directory)
            write_atomically(self.directory / CANDIDATE, data, 0o600)
            (self.directory / PENDING_KEY).unlink(missing_ok=True)
            sync_directory(self.directory)

        await asyncio.to_thread(store)
        self._pending = None
        self._candidate = True
        log.info("new client certificate stored; the next connection uses it")

    async def proven(self) -> None:
        """A connection with the candidate succeeded: it becomes the current certificate."""
        if not self._candidate:
            return

        def promote() -> None:
            (self.directory / CANDIDATE).replace(self.directory / CURRENT)
            sync_directory(self.directory)

        await asyncio.to_thread(promote)
        self._candidate, self._current = False, True
        log.info("the new client certificate works: it replaces the previous one")

    async def refused(self) -> None:
        """The CSMS refused the candidate: drop it, the previous certificate applies again."""
        if not self._candidate:
            return

        def drop() -> None:
            (self.directory / CANDIDATE).unlink(missing_ok=True)
            sync_directory(self.directory)

        await asyncio.to_thread(drop)
        self._candidate = False
        log.warning("the new client certificate was refused: back to the previous one")
