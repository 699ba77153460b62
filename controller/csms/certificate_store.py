"""The charge point's CA store (OCPP 1.6 security whitepaper, use cases M03-M05): the
installed CentralSystemRootCertificate and ManufacturerRootCertificate PEMs, and under 2.0.1
also V2GRootCertificate and MORootCertificate (the X.509 helpers are in
:mod:`.certificate_x509`).

On disk (under the state directory, see :class:`CaStore`)::

    certs/                                   0700
      CentralSystemRootCertificate/<sha256 of the DER>.pem   0644
      ManufacturerRootCertificate/<sha256 of the DER>.pem    0644
      V2GRootCertificate/, MORootCertificate/                2.0.1 only, the same way
      fallback/<sha256>.pem     the CSMS root replaced under AdditionalRootCertificateCheck

Every file is written atomically (temporary file, fsync, rename, fsync of the directory), so
a power cut leaves the old file or the new one. A file that does not parse is logged and
skipped when the store loads; it stays on disk for someone to look at.

Threads: the file work runs in :func:`asyncio.to_thread`; the in-memory view is changed on
the loop thread only, after the disk says yes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from controller.csms.certificate_x509 import fingerprint, parse_pem_chain, pem_of

log = logging.getLogger(__name__)

#: The store's directory below the state directory.
CERTS_DIR = "certs"
FALLBACK_DIR = "fallback"


class CertificateUse(StrEnum):
    """CertificateUseEnumType: what an installed root certificate is trusted for."""

    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"  # verifies the CSMS (TLS)
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"  # verifies signed firmware
    # 2.0.1 only (InstallCertificateUseEnumType): stored and listed for ISO 15118, which
    # needs a PLC modem this charger does not have; nothing here trusts them for anything.
    V2G_ROOT = "V2GRootCertificate"
    MO_ROOT = "MORootCertificate"


# --- files --------------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with permission ``mode``: a reader (or a power cut) sees
    the old file or the whole new one, never a part. Blocking: call in a worker thread."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # before any byte is written: a key is never readable by others
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory so a rename or unlink in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) and make it 0700."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)


def _read_certs(
    directory: Path, issuers: dict[str, x509.Certificate]
) -> dict[str, x509.Certificate]:
    """The certificates of ``directory``; the issuer a file holds after its certificate
    goes into ``issuers``."""
    found: dict[str, x509.Certificate] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.pem")):
        try:
            cert, *rest = parse_pem_chain(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            log.warning("certificate %s unreadable, skipped: %s", path, exc)
            continue
        found[fingerprint(cert)] = cert
        if rest:
            issuers[fingerprint(cert)] = rest[0]
    return found


class CaStore:
    """The installed root certificates, by use; files under ``directory`` (``<state>/certs``).

    :meth:`load` first; then the other methods keep disk and memory in step (a failed write
    raises OSError and changes nothing in memory). Loop thread only.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._certs: dict[CertificateUse, dict[str, x509.Certificate]] = {
            u: {} for u in CertificateUse
        }
        self._fallback: dict[str, x509.Certificate] = {}
        self._issuers: dict[str, x509.Certificate] = {}  # by fingerprint of the issued

    async def load(self) -> None:
        """Read the store (missing: empty); an unreadable file is logged and skipped."""

        issuers: dict[str, x509.Certificate] = {}

        def read() -> tuple[
            dict[CertificateUse, dict[str, x509.Certificate]], dict[str, x509.Certificate]
        ]:
            return (
                {use: _read_certs(self.directory / use.value, issuers) for use in CertificateUse},
                _read_certs(self.directory / FALLBACK_DIR, issuers),
            )

        self._certs, self._fallback = await asyncio.to_thread(read)
        self._issuers = issuers
        count = sum(len(c) for c in self._certs.values())
        if count:
            log.info("CA store %s: %d certificate(s) installed", self.directory, count)

    def installed(self, use: CertificateUse) -> list[x509.Certificate]:
        return list(self._certs[use].values())

    @property
    def fallback(self) -> list[x509.Certificate]:
        """The CSMS root kept aside after a replacement (AdditionalRootCertificateCheck)."""
        return list(self._fallback.values())

    @property
    def count(self) -> int:
        """Installed certificates of every use (the fallback not counted)."""
        return sum(len(c) for c in self._certs.values())

    def contains(self, use: CertificateUse, cert: x509.Certificate) -> bool:
        return fingerprint(cert) in self._certs[use]

    def every(self) -> list[x509.Certificate]:
        """Every certificate the store knows (issuer lookups)."""
        return [c for certs in self._certs.values() for c in certs.values()] + self.fallback

    def issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The issuer known when ``cert`` was installed (None: self-signed or unknown). It
        is stored with the certificate, so its hash data never changes while installed."""
        return self._issuers.get(fingerprint(cert))

    async def add(
        self, use: CertificateUse, cert: x509.Certificate, issuer: x509.Certificate | None = None
    ) -> None:
        """Install ``cert`` (with the ``issuer`` that names it in hash data); OSError."""
        name = fingerprint(cert)
        await asyncio.to_thread(self._write, self.directory / use.value, name, cert, issuer)
        self._certs[use][name] = cert
        if issuer is not None:
            self._issuers[name] = issuer

    async def remove(self, use: CertificateUse, cert: x509.Certificate) -> None:
        name = fingerprint(cert)
        await asyncio.to_thread(self._unlink, self.directory / use.value / f"{name}.pem")
        self._certs[use].pop(name, None)

    async def replace_csms_root(
        self, new: x509.Certificate, issuer: x509.Certificate | None = None
    ) -> None:
        """AdditionalRootCertificateCheck: ``new`` becomes the only CSMS root; the ones it
        replaces become the fallback (an older fallback goes)."""
        use = CertificateUse.CENTRAL_SYSTEM_ROOT
        old = self.installed(use)
        for cert in self.fallback:
            await asyncio.to_thread(
                self._unlink, self.directory / FALLBACK_DIR / f"{fingerprint(cert)}.pem"
            )
            self._fallback.pop(fingerprint(cert), None)
        for cert in old:
            name = fingerprint(cert)
            await asyncio.to_thread(
                self._write, self.directory / FALLBACK_DIR, name, cert, self.issuer_of(cert)
            )
            self._fallback[name] = cert
            await self.remove(use, cert)
        await self.add(use, new, issuer)

    async def drop_fallback(self) -> None:
        for cert in self.fallback:
            await asyncio.to_thread(
                self._unlink, self.directory / FALLBACK_DIR / f"{fingerprint(cert)}.pem"
            )
            self._fallback.pop(fingerprint(cert), None)

    def _write(
        self, directory: Path, name: str, cert: x509.Certificate, issuer: x509.Certificate | None
    ) -> None:
        make_private_dir(self.directory)
        directory.mkdir(mode=0o755, exist_ok=True)
        text = pem_of(cert) + (pem_of(issuer) if issuer is not None else "")
        write_atomically(directory / f"{name}.pem", text.encode("ascii"), 0o644)

    @staticmethod
    def _unlink(path: Path) -> None:
        if path.parent.is_dir():
            path.unlink(missing_ok=True)
            sync_directory(path.parent)
