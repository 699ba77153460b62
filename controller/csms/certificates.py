"""Certificate management of the OCPP security whitepaper (1.6) / 2.0.1 block A and M:
InstallCertificate, GetInstalledCertificateIds, DeleteCertificate (the CA store,
:mod:`.certificate_store`), SignCertificate and CertificateSigned (the client certificate,
:mod:`.certificate_signing`). Version-neutral: the limits come from
:class:`CertificateSettings` (named below by their 1.6 keys), answers are
:class:`CertOutcome`, and the version sends the CSR (``sign``).

:class:`CertificateManager` is what the rest of the charger uses (``Services.certificates``):

- the link (:class:`~controller.csms.security.LinkSecurity`) verifies the CSMS against
  ``[ocpp] ca_file`` plus every installed CentralSystemRootCertificate, and connects at
  profile 3 with the certificate signed through the CSMS once there is one; changes apply
  from the next connection;
- the firmware updater verifies signing certificates against
  ``roots(CertificateUse.MANUFACTURER_ROOT)`` too, where the operator allows it
  (``[ocpp] firmware_trust_manufacturer_roots``);
- ExtendedTriggerMessage SignChargePointCertificate calls :meth:`request_signing`.

Rules kept (whitepaper M03-M05, A02):

- InstallCertificate: Accepted for a CA certificate (basicConstraints CA) that has not
  expired (one already installed is Accepted again, stored once); Rejected for anything
  else or when ``CertificateStoreMaxLength`` certificates are installed; Failed when it
  cannot be written. With ``AdditionalRootCertificateCheck`` true there is one CSMS root:
  a new one must be signed by the current one (installed, else the ``ca_file`` roots), or
  be the same key under a renewed certificate; it replaces the current one, which is kept
  as a fallback (still trusted for TLS) until a connection verifies under the new root.
- DeleteCertificate: Failed for the CSMS root the current TLS connection was verified with
  (it signed the CSMS certificate; or, when an intermediate signed it, when this is the
  last installed CSMS root and ``ca_file`` gives none), so the charger cannot strand itself.
- CertificateSigned: Accepted when the leaf is for the key of the pending request, valid
  now and chains to an installed CSMS root or ``ca_file``; otherwise Rejected and a
  SecurityEvent InvalidChargePointCertificate is recorded.

Installing or deleting a root raises no security event (the whitepaper has none for it);
it is logged. Loop thread only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography import x509

from controller.csms.calls import CallFailed
from controller.csms.certificate_signing import CLIENT_DIR, ClientCredentials
from controller.csms.certificate_store import CERTS_DIR, CaStore, CertificateUse
from controller.csms.certificate_x509 import (
    HASH_ALGORITHMS,
    HashData,
    fingerprint,
    hash_data,
    is_ca,
    issued_by,
    parse_pem_chain,
    pem_of,
    public_key_bits,
    validity_problem,
)
from controller.csms.security_events import SecurityEvent

if TYPE_CHECKING:
    from controller.csms.security_events import SecurityEvents

log = logging.getLogger(__name__)

__all__ = ["CertificateManager", "CertificateUse"]

CSMS_ROOT = CertificateUse.CENTRAL_SYSTEM_ROOT


class CertOutcome(StrEnum):
    """Answers to the certificate requests, in OCPP spelling (both versions use these)."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    FAILED = "Failed"
    NOT_FOUND = "NotFound"


class CertificateSettings(Protocol):
    """Read at each request; a version adapter maps its keys."""

    @property
    def additional_root_check(self) -> bool:
        """One CSMS root, replaced only by one it signed (AdditionalRootCertificateCheck)."""
        ...

    @property
    def store_max(self) -> int:
        """Certificates the store may hold (CertificateStoreMaxLength)."""
        ...

    @property
    def organization(self) -> str:
        """The O of the charger's CSR, "" when not set (CpoName)."""
        ...

    @property
    def signed_chain_max_bytes(self) -> int:
        """The longest certificate chain taken (CertificateSignedMaxChainSize)."""
        ...


#: Send a CSR (PEM) to the CSMS for signing; the CSMS's status ("Accepted" or another).
#: Raises :class:`CallFailed`.
SignRequest = Callable[[str], Awaitable[str]]


def _read_ca_file(path: Path) -> list[x509.Certificate]:
    try:
        return parse_pem_chain(path.read_text(encoding="ascii", errors="replace"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read the CA file %s for certificate checks: %s", path, exc)
        return []


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.subject == b.subject and public_key_bits(a) == public_key_bits(b)


class CertificateManager:
    """The CA store and the client certificate, under ``<state_dir>/certs``.

    ``ca_file`` is ``[ocpp] ca_file`` (a trust anchor for CertificateSigned and for
    AdditionalRootCertificateCheck); ``sign`` sends a CSR to the CSMS now (raises
    :class:`CallFailed`); ``events`` takes InvalidChargePointCertificate.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        settings: CertificateSettings,
        chargepoint_id: str,
        ca_file: Path | None,
        sign: SignRequest,
        events: SecurityEvents,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.store = CaStore(state_dir / CERTS_DIR)
        self.client = ClientCredentials(state_dir / CERTS_DIR / CLIENT_DIR)
        self._settings = settings
        self._chargepoint_id = chargepoint_id
        self._ca_file = ca_file
        self._sign = sign
        self._events = events
        self._clock = clock
        self._lock = asyncio.Lock()  # one change of the store at a time
        self._signing = asyncio.Lock()  # one key generation at a time
        self._csms_leaf: x509.Certificate | None = None  # what the current link verified
        self._csr: str | None = None  # the CSR sent last, until a CertificateSigned took it
        self._answered = asyncio.Event()  # set by an accepted CertificateSigned

    async def load(self) -> None:
        """Read the store and the client credentials (before the first connection)."""
        await self.store.load()
        await self.client.load()

    # --- the CA store ---------------------------------------------------------------------

    def roots(self, use: CertificateUse) -> list[x509.Certificate]:
        """The installed root certificates of ``use``."""
        return self.store.installed(use)

    def hash_data(self, use: CertificateUse, algorithm: str = "SHA256") -> list[HashData]:
        """GetInstalledCertificateIds: each installed certificate of ``use``."""
        store = self.store
        return [hash_data(c, store.issuer_of(c), algorithm) for c in store.installed(use)]

    def _find_issuer(
        self, cert: x509.Certificate, given: list[x509.Certificate]
    ) -> x509.Certificate | None:
        """Who signed ``cert``: a certificate sent with it or one installed; None for a
        self-signed root or an unknown issuer (the hash data then uses its own key)."""
        if cert.issuer == cert.subject:
            return None
        return next((c for c in given + self.store.every() if issued_by(cert, c)), None)

    async def _ca_file_roots(self) -> list[x509.Certificate]:
        if self._ca_file is None:
            return []
        return await asyncio.to_thread(_read_ca_file, self._ca_file)

    async def install(self, use: CertificateUse, pem: str) -> CertOutcome:
        """InstallCertificate (see the module docstring for the rules)."""
        try:
            certs = parse_pem_chain(pem)
        except ValueError as exc:
            log.warning("InstallCertificate %s Rejected: not a PEM certificate (%s)", use, exc)
            return CertOutcome.REJECTED
        cert = certs[0]
        name = cert.subject.rfc4514_string()
        problem = None if is_ca(cert) else "not a CA certificate (basicConstraints)"
        expired = validity_problem(cert, self._clock())
        if problem is None and expired is not None and expired.startswith("expired"):
            problem = expired
        if problem is not None:
            log.warning("InstallCertificate %s %s Rejected: %s", use, name, problem)
            return CertOutcome.REJECTED
        async with self._lock:
            if self.store.contains(use, cert):
                log.info("InstallCertificate %s %s: installed already", use, name)
                return CertOutcome.ACCEPTED
            replace = use is CSMS_ROOT and self._settings.additional_root_check
            if replace:
                refused = await self._replacement_problem(cert)
                if refused is not None:
                    log.warning("InstallCertificate %s %s Rejected: %s", use, name, refused)
                    return CertOutcome.REJECTED
            elif self.store.count >= self._settings.store_max:
                log.warning("InstallCertificate %s %s Rejected: the store is full", use, name)
                return CertOutcome.REJECTED
            try:
                issuer = self._find_issuer(cert, certs[1:])
                if replace:
                    await self.store.replace_csms_root(cert, issuer)
                else:
                    await self.store.add(use, cert, issuer)
            except OSError as exc:
                log.error("InstallCertificate %s %s Failed: %s", use, name, exc)
                return CertOutcome.FAILED
        log.info("installed %s %s (sha256 %s)", use, name, fingerprint(cert))
        return CertOutcome.ACCEPTED

    async def _replacement_problem(self, new: x509.Certificate) -> str | None:
        """AdditionalRootCertificateCheck: why ``new`` may not replace the CSMS root."""
        current = self.store.installed(CSMS_ROOT) or await self._ca_file_roots()
        if not current:
            return None  # nothing to check against: the first root of a charger without one
        if any(issued_by(new, old) or _same_key(new, old) for old in current):
            return None
        return "AdditionalRootCertificateCheck: not signed by the current CSMS root"

    async def delete(self, asked: Mapping[str, str]) -> CertOutcome:
        """DeleteCertificate by hash data (snake_case keys, as the ocpp library hands them)."""
        algorithm = asked.get("hash_algorithm", "")
        if algorithm not in HASH_ALGORITHMS:
            return CertOutcome.NOT_FOUND
        async with self._lock:
            for use in CertificateUse:
                for cert in self.store.installed(use):
                    if hash_data(cert, self.store.issuer_of(cert), algorithm).matches(asked):
                        return await self._delete(use, cert)
        log.info("DeleteCertificate: no installed certificate matches %s", dict(asked))
        return CertOutcome.NOT_FOUND

    async def _delete(self, use: CertificateUse, cert: x509.Certificate) -> CertOutcome:
        name = cert.subject.rfc4514_string()
        if use is CSMS_ROOT and await self._in_use(cert):
            log.warning("DeleteCertificate %s Failed: the current connection relies on it", name)
            return CertOutcome.FAILED
        try:
            await self.store.remove(use, cert)
        except OSError as exc:
            log.error("DeleteCertificate %s Failed: %s", name, exc)
            return CertOutcome.FAILED
        log.info("deleted %s %s", use, name)
        return CertOutcome.ACCEPTED

    async def _in_use(self, root: x509.Certificate) -> bool:
        leaf = self._csms_leaf
        if leaf is None:
            return False
        if leaf == root or issued_by(leaf, root):
            return True
        # An intermediate signed the CSMS certificate (Python 3.11's ssl does not show the
        # verified chain): refuse only when no other root would be left.
        anchors = self.store.installed(CSMS_ROOT) + self.store.fallback
        ca_roots = await self._ca_file_roots()
        if any(leaf == a or issued_by(leaf, a) for a in anchors + ca_roots):
            return False  # another root signed it directly
        return len(self.store.installed(CSMS_ROOT)) == 1 and not ca_roots

    # --- the link (LinkSecurity's certificate source) -------------------------------------

    def csms_roots_pem(self) -> str:
        """PEM text of the installed CSMS roots (and a fallback) for the TLS context."""
        return "".join(pem_of(c) for c in self.store.installed(CSMS_ROOT) + self.store.fallback)

    def client_pem(self) -> Path | None:
        """The signed client certificate and key file to connect with, or None."""
        return self.client.pem()

    async def link_opened(self, csms_leaf_der: bytes | None) -> None:
        """A connection succeeded (``csms_leaf_der``: the CSMS certificate over TLS)."""
        try:
            self._csms_leaf = (
                None if csms_leaf_der is None else x509.load_der_x509_certificate(csms_leaf_der)
            )
        except ValueError as exc:  # OpenSSL took it; keep going without knowing the root
            log.warning("cannot read the CSMS certificate: %s", exc)
            self._csms_leaf = None
        leaf = self._csms_leaf
        try:
            await self.client.proven()
            if (
                leaf is not None
                and self.store.fallback
                and any(leaf == r or issued_by(leaf, r) for r in self.store.installed(CSMS_ROOT))
            ):
                await self.store.drop_fallback()
                log.info("the new CSMS root verified the CSMS: the fallback root is gone")
        except OSError as exc:
            log.error("certificate store not updated after connecting: %s", exc)

    async def client_refused(self) -> None:
        """The CSMS refused our client certificate: a new, unproven one is dropped."""
        try:
            await self.client.refused()
        except OSError as exc:
            log.error("cannot drop the refused client certificate: %s", exc)

    # --- the client certificate -----------------------------------------------------------

    async def request_signing(self) -> bool:
        """Generate a new key and CSR and send SignCertificate; True when the CSMS Accepted.

        Refused (False, logged) without a CpoName, which the CSR's O must carry.
        """
        organization = self._settings.organization
        if not organization:
            log.warning("SignCertificate not sent: the CpoName configuration key is not set")
            return False
        async with self._signing:
            try:
                csr = await self.client.new_request(self._chargepoint_id, organization)
            except OSError as exc:
                log.error("SignCertificate not sent: cannot store the new key: %s", exc)
                return False
            self._csr = csr
            self._answered.clear()
            try:
                status = await self._sign(csr)
            except CallFailed as exc:
                log.warning("SignCertificate failed: %s", exc)
                return False
        log.info("SignCertificate for %s (O=%s): %s", self._chargepoint_id, organization, status)
        return status == "Accepted"

    async def certificate_signed(self, chain_text: str) -> CertOutcome:
        """CertificateSigned: check the chain and keep it as the next client certificate."""
        limit = self._settings.signed_chain_max_bytes
        size = len(chain_text.encode("utf-8"))
        anchors = self.store.installed(CSMS_ROOT) + await self._ca_file_roots()
        if size > limit:
            problem: str | None = (
                f"the chain is {size} bytes, CertificateSignedMaxChainSize {limit}"
            )
            chain: list[x509.Certificate] = []
        else:
            chain, problem = self.client.check(chain_text, anchors, self._clock())
        if problem is None:
            try:
                await self.client.accept(chain)
            except OSError as exc:
                problem = f"cannot store it: {exc}"
        if problem is not None:
            log.warning("CertificateSigned Rejected: %s", problem)
            self._events.record(
                SecurityEvent.INVALID_CHARGE_POINT_CERTIFICATE, problem, logged=True
            )
            return CertOutcome.REJECTED
        log.info("CertificateSigned Accepted: %s", chain[0].subject.rfc4514_string())
        self._csr = None
        self._answered.set()
        return CertOutcome.ACCEPTED

    async def resend_signing(self) -> bool:
        """Send the last CSR again (the same key: it is still the pending one); True when
        the CSMS Accepted; False without one or when the call failed (logged)."""
        csr = self._csr
        if csr is None:
            return False
        try:
            status = await self._sign(csr)
        except CallFailed as exc:
            log.warning("SignCertificate (again) failed: %s", exc)
            return False
        log.info("SignCertificate sent again: %s", status)
        return status == "Accepted"

    async def signed_within(self, timeout_s: float) -> bool:
        """True once a CertificateSigned took the last CSR, waiting up to ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._answered.wait()
        except TimeoutError:
            return False
        return True
