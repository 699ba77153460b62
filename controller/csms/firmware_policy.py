"""Whom the charger trusts for firmware: the operator's ``[ocpp]`` firmware keys, in one value.

A firmware package runs as the service user, with the GPIO that drives the contactor, so
the CSMS link alone must never be able to make the charger run code: only a signer the
operator chose can (:mod:`.firmware_signature`). What the operator decides:

- ``signing_ca``: the roots a signing certificate must chain to (``[ocpp]
  firmware_signing_ca``). Without one, every update is refused (unless unsigned ones are
  allowed).
- ``trust_manufacturer_roots``: ManufacturerRootCertificates the CSMS installed
  (InstallCertificate) vouch for firmware too. Off by default: otherwise a CSMS could
  install its own CA and sign whatever it likes.
- ``allow_unsigned``: a plain UpdateFirmware without a detached signature is installed.
  Off by default, and a loud warning at every start when on.
- ``allow_downgrade``: a version lower than the running one is installed.
- ``max_bytes``: a download larger than this is stopped and fails.

Free of OCPP and asyncio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

if TYPE_CHECKING:
    from controller.config import Config

log = logging.getLogger(__name__)

#: Default bound of a firmware download: a picharge wheel is well under 1 MB; 64 MiB leaves
#: room for a future package with vendored libraries and still fits a Pi's SD card and RAM.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: A detached signature file is a few certificates and a signature: a few kB.
MAX_SIGNATURE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FirmwarePolicy:
    """The operator's firmware trust settings (see the module text); the defaults are the
    safe ones: nothing is trusted until a signing CA is configured."""

    signing_ca: Path | None = None
    trust_manufacturer_roots: bool = False
    allow_unsigned: bool = False
    allow_downgrade: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES

    def warn(self) -> None:
        """Log, loudly, what this policy gives away (called at every start)."""
        if self.allow_unsigned:
            log.warning(
                "SECURITY: [ocpp] allow_unsigned_firmware = true: any CSMS that can send "
                "UpdateFirmware can make this charger run its code, with control of the "
                "contactor. Sign releases (deploy/sign-release.sh) and remove this setting."
            )
        if self.trust_manufacturer_roots:
            log.warning(
                "SECURITY: [ocpp] firmware_trust_manufacturer_roots = true: certificates the "
                "CSMS installs as ManufacturerRootCertificate may sign firmware"
            )
        if self.signing_ca is None and not (self.allow_unsigned or self.trust_manufacturer_roots):
            log.info("no [ocpp] firmware_signing_ca: firmware updates will be refused")

    @classmethod
    def of(cls, config: Config) -> FirmwarePolicy:
        """The policy of the ``[ocpp]`` firmware keys (every OCPP version reads the same)."""
        return cls(
            signing_ca=config.ocpp_firmware_signing_ca,
            trust_manufacturer_roots=config.ocpp_firmware_trust_manufacturer_roots,
            allow_unsigned=config.ocpp_allow_unsigned_firmware,
            allow_downgrade=config.ocpp_allow_firmware_downgrade,
            max_bytes=config.ocpp_firmware_max_bytes,
        )

    def signing_roots(
        self,
        file_roots: Callable[[Path | None], list[x509.Certificate]],
        manufacturer_roots: Callable[[], list[x509.Certificate]],
    ) -> Callable[[], list[x509.Certificate]]:
        """The roots a firmware signing certificate may chain to, read at each check: the
        operator's (``file_roots(signing_ca)``, a blocking read); the ManufacturerRoot
        certificates the CSMS installed only when the operator lets them vouch for firmware
        (else a CSMS could install its own CA and sign whatever it likes: issue 12 §1)."""

        def roots() -> list[x509.Certificate]:
            found = file_roots(self.signing_ca)
            if self.trust_manufacturer_roots:
                found += manufacturer_roots()
            return found

        return roots
