"""A03: the charging station renews its client certificate before it expires.

Under security profile 3 the link shows a client certificate; once it has expired the CSMS
refuses every connection and only a visit renews it. A03 has the station notice that the
certificate "is due to expire" and start SignCertificate itself (A03.FR.01, the same request
and retries as A02's: :class:`~controller.csms.certificate_retries.SigningRetries`). What
"due" means the specification leaves to the station: here, less than
``SecurityCtrlr.CertRenewalMarginDays`` days (a vendor variable of ours, default 30, 0: never
on its own) of validity left.

The certificate looked at is the one the next connection shows: the signed one
(the candidate while it waits for its first connection, else the current one) or the
operator's ``[ocpp] cert_file``. It is checked when the link is registered and every
:data:`CHECK_INTERVAL_S` after, so a station whose link stays up for months still renews in
time. A certificate the station asked to renew is not asked for again within
:data:`ASK_AGAIN_S` (the CSMS answered, refused or never signed: the next try is a day
later). The renewed certificate is used from the next connection (A02.FR.11 through the
certificate manager). Loop thread; the file is read on a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from controller.csms.calls import Spawn
from controller.csms.certificate_retries import SigningRetries
from controller.csms.certificates import CertificateManager
from controller.ocpp201.device_model import DeviceModel

log = logging.getLogger(__name__)

MARGIN_DAYS = "SecurityCtrlr.CertRenewalMarginDays"
PROFILE = "SecurityCtrlr.SecurityProfile"
#: How often a running link's certificate is looked at (seconds, before the test scale).
CHECK_INTERVAL_S = 6 * 3600.0
#: A certificate asked to be renewed is not asked for again sooner (seconds).
ASK_AGAIN_S = 24 * 3600.0


def _not_after(path: Path) -> tuple[int, dt.datetime] | None:
    """(serial, notAfter) of the first certificate in ``path`` (None: none readable)."""
    try:
        cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        log.warning("client certificate %s unreadable: %s", path, exc)
        return None
    return cert.serial_number, cert.not_valid_after_utc


class CertificateRenewal:
    """Starts SignCertificate when the client certificate in use is about to expire.

    ``configured`` is ``[ocpp] cert_file`` (None: only a certificate signed through the
    CSMS can be in use).
    """

    def __init__(
        self,
        *,
        certificates: CertificateManager,
        signing: SigningRetries,
        model: DeviceModel,
        configured: Path | None,
        spawn: Spawn,
        clock: Callable[[], dt.datetime],
        interval_scale: float,
    ) -> None:
        self._certificates = certificates
        self._signing = signing
        self._model = model
        self._configured = configured
        self._spawn = spawn
        self._clock = clock
        self._scale = interval_scale
        self._asked: dict[int, dt.datetime] = {}  # serial -> when its renewal was asked

    def registered(self) -> None:
        """The link is registered: look at the certificate now (in a task)."""
        self._spawn(self.check(), "ocpp201-cert-renewal-check")

    async def run(self) -> None:
        """Look at the certificate every :data:`CHECK_INTERVAL_S`; until cancelled."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S * self._scale)
            await self.check()

    async def check(self) -> bool:
        """Start the renewal (in a task) when the certificate in use has less than the
        margin left; True when it did."""
        margin_days = self._model.get_int(MARGIN_DAYS)
        path = self._certificates.client_pem() or self._configured
        if margin_days <= 0 or self._model.get_int(PROFILE) < 3 or path is None:
            return False
        found = await asyncio.to_thread(_not_after, path)
        if found is None:
            return False
        serial, not_after = found
        now = self._clock()
        left = not_after - now
        if left >= dt.timedelta(days=margin_days):
            log.info(
                "client certificate %x valid until %s: not due for renewal (margin %d days)",
                serial,
                not_after.isoformat(),
                margin_days,
            )
            return False
        asked = self._asked.get(serial)
        if asked is not None and now - asked < dt.timedelta(seconds=ASK_AGAIN_S * self._scale):
            return False
        self._asked[serial] = now
        log.warning(
            "client certificate %x expires %s (in %.1f days, margin %d): renewing it (A03)",
            serial,
            not_after.isoformat(),
            left.total_seconds() / 86400,
            margin_days,
        )
        self._spawn(self._signing.run(), "ocpp201-cert-renewal")
        return True
