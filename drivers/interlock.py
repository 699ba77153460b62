"""The coil's interlock: hazard detectors open the contactor without waiting for the loop.

A hazard (a residual current, the car leaving C, a CP error, a diode fault, an
overtemperature, the supervisor's loop no longer alive) is detected on a thread of its
own: the CP sampler, gpiozero's edge thread, a worker reading the thermometer, the loop
watchdog. The asyncio loop may be busy (a CSMS flooding it with calls, a slow handler), so
the detector must not hand the hazard to the loop and hope: it calls :meth:`Interlock.trip`,
which de-energizes the coil at once, on the detector's thread, and then tells the loop as
before. The connector machine, on the loop, does the bookkeeping (status, fault, the
transaction) when it hears.

Trip is open-only. The connector machine remains the only place that decides to close;
the contactor driver's close path energizes only through :meth:`Interlock.energize`, which
refuses while any trip is outstanding. Each trip returns a token; whoever delivers the
hazard to the machine calls :meth:`Interlock.rearm` with it *after* the machine has seen
it (in the same synchronous step on the loop), so a close can never slip in between the
hazard and the machine knowing of it. Several trips may be outstanding at once (the RCM
and the CP in the same millisecond, delivered in any order): the interlock is clear only
when every one was re-armed.

Races: :meth:`trip` and :meth:`energize` hold the same lock around the pin write, so a
close either energized before the trip (and the trip drops the coil) or sees the trip and
leaves the coil alone. There is no moment in which a trip has returned and the coil is on.

Threads: every method may be called from any thread; :meth:`trip` never blocks on the loop
(only on the lock, held for one pin write at most).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Interlock:
    """The trip state of one contactor coil; owned by the contactor driver.

    ``drop_coil`` de-energizes the coil (called with the lock held, on the tripping
    thread); it must be quick and must not wait for the loop.
    """

    def __init__(self, name: str, drop_coil: Callable[[], None]) -> None:
        self._name = name
        self._drop_coil = drop_coil
        #: Held around every coil write: by trip(), by energize() and by the driver's open().
        self.lock = threading.RLock()
        self._outstanding: dict[int, str] = {}
        self._last_token = 0
        self._trips = 0

    @property
    def tripped(self) -> bool:
        """True while some trip has not been re-armed: the coil may not be energized."""
        return bool(self._outstanding)

    @property
    def reasons(self) -> tuple[str, ...]:
        """What tripped it and is not re-armed yet, oldest first (for logs and tests)."""
        with self.lock:
            return tuple(self._outstanding.values())

    @property
    def trips(self) -> int:
        """How many trips happened since the driver was created (a diagnostic)."""
        return self._trips

    def trip(self, reason: str) -> int:
        """De-energize the coil now and block energizing until :meth:`rearm` of the token.

        Any thread; returns the token to hand to :meth:`rearm` once the connector machine
        has seen the hazard. ``reason`` says what was detected, for the log.
        """
        with self.lock:
            self._last_token += 1
            token = self._last_token
            self._outstanding[token] = reason
            self._trips += 1
            self._drop_coil()
        logger.debug("%s: interlock tripped: %s (token %d)", self._name, reason, token)
        return token

    def rearm(self, token: int) -> None:
        """The machine has seen the hazard of ``token``: it no longer blocks a close.

        Any thread; idempotent. Call only after the connector machine was told (the machine
        then keeps the contactor open for as long as the hazard lasts).
        """
        with self.lock:
            self._outstanding.pop(token, None)

    def energize(self, coil_on: Callable[[], None]) -> bool:
        """Call ``coil_on`` unless tripped, atomically with respect to :meth:`trip`.

        Returns False (and leaves the coil alone) while a trip is outstanding. For the
        contactor driver's close path only.
        """
        with self.lock:
            if self._outstanding:
                logger.info(
                    "%s: not energized: interlock tripped (%s)",
                    self._name,
                    ", ".join(self._outstanding.values()),
                )
                return False
            coil_on()
            return True
