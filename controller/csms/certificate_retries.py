"""A SignCertificate the CSMS accepted but never answered (2.0.1 A02.FR.17-19, A03.FR.17-19).

The CSMS answers SignCertificate at once and sends CertificateSigned later, once its CA has
signed; a CSR lost on the way (a CA outage, a CSMS restart) would leave the charger waiting
forever. :class:`SigningRetries` sends the same CSR again (its key is still the pending one)
when no CertificateSigned took it within CertSigningWaitMinimum seconds, doubling the wait
each time, at most CertSigningRepeatTimes times; after that nothing is sent until the next
trigger (TriggerMessage SignChargingStationCertificate), which starts afresh with a new key.

A new :meth:`SigningRetries.run` supersedes the one under way (which stops at its next
wake-up). Version-neutral: the two settings are callables the version gives. Loop thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from controller.csms.certificates import CertificateManager

log = logging.getLogger(__name__)


class SigningRetries:
    """SignCertificate with its retries over ``certificates``.

    ``wait_minimum_s()`` is CertSigningWaitMinimum in seconds (already scaled; 0: no
    retries), ``repeat_times()`` CertSigningRepeatTimes; both read at each request.
    """

    def __init__(
        self,
        certificates: CertificateManager,
        wait_minimum_s: Callable[[], float],
        repeat_times: Callable[[], int],
    ) -> None:
        self._certificates = certificates
        self._wait_minimum_s = wait_minimum_s
        self._repeat_times = repeat_times
        self._generation = 0  # the run under way; an older one stops

    async def run(self) -> bool:
        """Request a signed certificate (new key and CSR) and send the CSR again while
        unanswered; True once a CertificateSigned took it. Runs until then or until the
        repeats are spent (minutes to hours): call it from a task of its own."""
        self._generation += 1
        generation = self._generation
        if not await self._certificates.request_signing():
            return False
        wait_s, repeats = self._wait_minimum_s(), self._repeat_times()
        if wait_s <= 0:
            return False  # no retries configured: the CSMS answers when it answers
        for attempt in range(1, repeats + 1):
            if await self._certificates.signed_within(wait_s):
                return True
            if generation != self._generation:
                return False  # a newer request took over
            log.info(
                "no CertificateSigned within %.0f s: SignCertificate again (%d/%d)",
                wait_s,
                attempt,
                repeats,
            )
            await self._certificates.resend_signing()
            wait_s *= 2
        if await self._certificates.signed_within(wait_s):
            return True
        if generation == self._generation:
            log.warning(
                "no CertificateSigned after %d repeats: waiting for the next trigger", repeats
            )
        return False
