"""The mains contactor on a GPIO, checked through its feedback contact.

Wiring (hardware-reference section 5): the GPIO drives a transistor/opto stage that drives
the coil; a pull-down on that stage keeps the contactor open while the GPIO floats (boot, a
crash, :meth:`GpioContactor.release`). An auxiliary contact, wetted with 12/24 V and brought
in through an opto-coupler, tells whether the main contacts moved:

* ``mirror`` (recommended): an NC mirror contact per IEC 60947-4-1 Annex F, mechanically
  guaranteed never to be closed while a main contact is; closed means the mains are open.
* ``auxiliary``: a plain NO auxiliary contact that follows the main contacts.

Weld detection: after :meth:`GpioContactor.open` the main contacts must read open once the
settle time (250 ms by default, OpenEVSE's relay settling time) has passed. If they do not,
a weld is latched: :meth:`GpioContactor.close` refuses for the rest of this driver's life.
A welded contactor needs a human to inspect and replace it; only recreating the driver (a
restart of the controller after the repair) clears the latch.

Without a feedback contact (``feedback_type = "none"``) the driver cannot check anything:
``close`` returns once the coil is energized and ``verify_open`` once the settle time has
passed. It logs a warning at start so nobody runs a wallbox like that unknowingly.

Interlock (:mod:`drivers.interlock`): hazard detectors on other threads trip
:attr:`GpioContactor.interlock`, which de-energizes the coil on their thread; :meth:`close`
energizes only through it, so it leaves the coil off while a trip is outstanding (until the
connector machine has heard of the hazard and the deliverer re-armed it).

Threads: :meth:`GpioContactor.open` and the interlock may be used from any thread (the
safety path never waits on the loop); everything else runs on the asyncio loop thread.
Feedback edges reach the loop through :class:`drivers.gpio_bridge.LoopBridge` and only wake
the waiting coroutine, which then reads the pin level itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from gpiozero import DigitalInputDevice, DigitalOutputDevice

from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.gpio_bridge import (
    LoopBridge,
    flag_setting,
    key_name,
    pin_setting,
    seconds_setting,
    wait_until,
)
from drivers.interlock import Interlock
from drivers.seams import HardwareSeams

logger = logging.getLogger(__name__)


class FeedbackType(StrEnum):
    """How the feedback contact relates to the main contacts."""

    MIRROR = "mirror"  # NC mirror contact: closed <=> main contacts open
    AUXILIARY = "auxiliary"  # NO auxiliary contact: closed <=> main contacts closed


#: Configuration value of ``feedback_type`` for a contactor without any feedback contact.
NO_FEEDBACK = "none"


@dataclass(frozen=True, slots=True)
class ContactorConfig:
    """Pins and timing of one contactor; the simulated pins read the same object.

    ``feedback_pin`` None means no feedback contact. ``feedback_active_low`` True means the
    opto pulls the input low while the feedback contact is closed (internal pull-up on);
    False means it drives it high (pull-down on). Times are in seconds.
    """

    coil_pin: int = 17
    coil_active_high: bool = True
    feedback_pin: int | None = 27
    feedback_type: FeedbackType = FeedbackType.MIRROR
    feedback_active_low: bool = True
    close_settle_s: float = 0.1
    open_settle_s: float = 0.25

    @classmethod
    def from_section(cls, section: Mapping[str, Any], key_prefix: str = "") -> ContactorConfig:
        """Validate the keys below; a ``ConfigurationError`` names ``<key_prefix>.<key>``.

        ``contactor_pin`` (17), ``contactor_active_high`` (true), ``feedback_type``
        ("mirror" | "auxiliary" | "none"), ``feedback_pin`` (27), ``feedback_active_low``
        (true), ``close_settle_s`` (0.1), ``open_settle_s`` (0.25). Keys this driver does not
        know are left alone: the section is shared with the connector's other devices.
        """
        coil_pin = pin_setting(section, "contactor_pin", 17, key_prefix)
        kind = section.get("feedback_type", str(FeedbackType.MIRROR))
        choices = [*(str(f) for f in FeedbackType), NO_FEEDBACK]
        if kind not in choices:
            raise ConfigurationError(
                key_name(key_prefix, "feedback_type"),
                f"must be one of {', '.join(choices)}; got {kind!r}",
            )
        feedback_pin: int | None = None
        if kind != NO_FEEDBACK:
            feedback_pin = pin_setting(section, "feedback_pin", 27, key_prefix)
            if feedback_pin == coil_pin:
                raise ConfigurationError(
                    key_name(key_prefix, "feedback_pin"),
                    f"GPIO{feedback_pin} is already the contactor_pin",
                )
        return cls(
            coil_pin=coil_pin,
            coil_active_high=flag_setting(section, "contactor_active_high", True, key_prefix),
            feedback_pin=feedback_pin,
            feedback_type=FeedbackType.MIRROR if kind == NO_FEEDBACK else FeedbackType(kind),
            feedback_active_low=flag_setting(section, "feedback_active_low", True, key_prefix),
            close_settle_s=seconds_setting(section, "close_settle_s", 0.1, 2.0, key_prefix),
            open_settle_s=seconds_setting(section, "open_settle_s", 0.25, 5.0, key_prefix),
        )


#: Every key :meth:`ContactorConfig.from_section` reads from a ``[[connector]]`` table.
CONFIG_KEYS: Final = (
    "contactor_pin",
    "contactor_active_high",
    "feedback_type",
    "feedback_pin",
    "feedback_active_low",
    "close_settle_s",
    "open_settle_s",
)


class GpioContactor:
    """A :class:`drivers.base.Contactor` on gpiozero devices.

    The coil output starts de-energized. Resources are released by :meth:`release`, not
    ``close``: in the :class:`~drivers.base.Contactor` interface ``close()`` means "close the
    main contacts", so a generic "close every device at shutdown" loop must not reach it.
    """

    def __init__(
        self,
        config: ContactorConfig | None = None,
        *,
        pin_factory: Any = None,
        name: str = "contactor",
    ) -> None:
        self._config = config = config or ContactorConfig()
        self._name = name
        self._bridge = LoopBridge(name)
        self._wakeup = asyncio.Event()  # set (on the loop) at each feedback edge and open()
        self._welded = False
        self._released = False
        self._close_count = 0  # bumped each time close() energizes: verify_open sees a re-close
        self._open_count = 0  # bumped at each open(): a close() waiting to energize gives up
        # Count start-up as an open(): the coil may have been energized until a moment ago
        # (a restart), so the contacts get their settle time before anybody judges them.
        self._opened_at = time.monotonic()
        self._interlock = Interlock(name, self.open)
        self._coil = DigitalOutputDevice(
            config.coil_pin,
            active_high=config.coil_active_high,
            initial_value=False,
            pin_factory=pin_factory,
        )
        self._feedback: DigitalInputDevice | None = None
        if config.feedback_pin is None:
            logger.warning(
                "%s: no feedback contact configured; closing is not confirmed and a welded "
                "contactor cannot be detected",
                name,
            )
            return
        try:
            self._feedback = DigitalInputDevice(
                config.feedback_pin, pull_up=config.feedback_active_low, pin_factory=pin_factory
            )
        except BaseException:
            self._coil.close()
            raise
        self._feedback.when_activated = self._on_feedback_edge
        self._feedback.when_deactivated = self._on_feedback_edge

    @property
    def config(self) -> ContactorConfig:
        return self._config

    @property
    def interlock(self) -> Interlock:
        """What hazard detectors trip (any thread): it drops the coil and blocks closing
        until re-armed; see :mod:`drivers.interlock`."""
        return self._interlock

    @property
    def energized(self) -> bool:
        """True while the coil output is driven; False once released."""
        return not self._released and bool(self._coil.value)

    @property
    def main_contacts_closed(self) -> bool | None:
        """What the feedback contact says about the main contacts; None without feedback."""
        if self._feedback is None or self._released:
            return None
        contact_closed = bool(self._feedback.is_active)
        if self._config.feedback_type is FeedbackType.AUXILIARY:
            return contact_closed
        return not contact_closed

    @property
    def welded(self) -> bool:
        """True once a weld was detected; stays True until the driver is recreated."""
        return self._welded

    def open(self) -> None:
        """De-energize the coil now. Any thread; idempotent; never blocks on the loop.

        The settle time for :meth:`verify_open` starts at the open() that actually dropped
        the coil, so repeating open() as a safety assertion does not postpone the check.
        """
        with self._interlock.lock:  # never between close()'s trip check and its pin write
            if self._released:
                return
            was_energized = bool(self._coil.value)
            self._coil.off()
            self._open_count += 1
            if was_energized:
                self._opened_at = time.monotonic()
        if was_energized:
            logger.info("%s: coil de-energized", self._name)
        self._bridge.post(self._wakeup.set)  # a close() waiting for confirmation gives up

    async def close(self) -> None:
        """Energize and confirm through the feedback within ``close_settle_s``.

        Raises ``PermanentFault``: ``CONTACTOR_WELDED`` when a weld is latched or the
        feedback already shows the main contacts closed before energizing (the coil is not
        touched); ``CONTACTOR_FAILED_CLOSE`` when the feedback does not confirm in time (the
        coil is de-energized again first). Waits out the rest of ``open_settle_s`` first if
        the coil dropped less than that ago. If :meth:`open` is called while this waits
        (to energize or for the feedback), open() wins: close() returns with the contactor
        open; so does a tripped :attr:`interlock` (the machine is about to hear of the
        hazard). Idempotent when closed.
        """
        self._check_usable()
        self._bridge.bind()
        if not self.energized:
            open_count = self._open_count
            await self._settle_after_open()
            self._check_usable()  # release() may have run meanwhile (shutdown)
            if self._open_count != open_count:
                # open() came while the contacts settled: the caller no longer wants them
                # closed (a fault, an unplug...); energizing now would undo that open().
                logger.info("%s: open() while close() waited to energize; left open", self._name)
                return
            if self._welded:
                raise PermanentFault(
                    FaultKind.CONTACTOR_WELDED,
                    f"{self._name}: weld latched earlier; a human must inspect the contactor "
                    "and restart the controller",
                )
            if self.main_contacts_closed:
                raise self._weld_fault("feedback shows the main contacts closed, coil off")
            if not self._interlock.energize(self._energize_unless_opened(open_count)):
                return
            if not self.energized:
                logger.info("%s: open() while close() energized; left open", self._name)
                return
            logger.info("%s: coil energized", self._name)
        if self._feedback is None:
            return
        await wait_until(
            lambda: not self.energized or bool(self.main_contacts_closed),
            self._wakeup,
            self._config.close_settle_s,
        )
        if not self.energized:
            logger.info("%s: open() while close() waited for the feedback; left open", self._name)
            return
        if not self.main_contacts_closed:
            self.open()
            raise PermanentFault(
                FaultKind.CONTACTOR_FAILED_CLOSE,
                f"{self._name}: feedback did not show the main contacts closed within "
                f"{self._config.close_settle_s * 1000:.0f} ms of energizing; coil "
                "de-energized",
            )

    async def verify_open(self) -> None:
        """After :meth:`open`, wait until ``open_settle_s`` has passed and check the feedback.

        Raises ``PermanentFault(CONTACTOR_WELDED)`` and latches the weld when the main contacts
        still read closed, or when a weld was latched before. If :meth:`close` re-energizes
        meanwhile, returns without a verdict: close() made the same check before energizing.
        Raises ``RuntimeError`` when called with the coil energized (a caller bug).
        """
        self._check_usable()
        self._bridge.bind()
        if self.energized:
            raise RuntimeError(f"{self._name}: verify_open() with the coil energized")
        close_count = self._close_count
        await self._settle_after_open()
        if self._close_count != close_count:
            return
        if self._welded:
            raise PermanentFault(FaultKind.CONTACTOR_WELDED, f"{self._name}: weld latched")
        if self.main_contacts_closed:
            raise self._weld_fault(
                f"main contacts still closed {self._config.open_settle_s * 1000:.0f} ms after "
                "the coil was de-energized"
            )

    def release(self) -> None:
        """De-energize and give the pins back (they float; the driver's pull-down keeps the
        contactor open). Idempotent; the driver is unusable afterwards."""
        if self._released:
            return
        self.open()
        self._released = True
        if self._feedback is not None:
            self._feedback.close()
        self._coil.close()

    def __enter__(self) -> GpioContactor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _energize_unless_opened(self, open_count: int) -> Callable[[], None]:
        """The pin write of close(), run under the interlock's lock: an open() from another
        thread since ``open_count`` was read wins (the coil stays off)."""

        def coil_on() -> None:
            if self._open_count == open_count and not self._released:
                self._coil.on()
                self._close_count += 1

        return coil_on

    def _on_feedback_edge(self) -> None:
        # gpiozero's thread: only wake the loop; the waiter reads the pin level itself.
        self._bridge.post(self._wakeup.set)

    async def _settle_after_open(self) -> None:
        """Sleep until ``open_settle_s`` has passed since the coil last dropped.

        One sleep of exactly the remaining time; it repeats only if a close() and open() by
        another task moved the deadline meanwhile, so this is no polling loop.
        """
        while True:
            remaining = self._opened_at + self._config.open_settle_s - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    def _weld_fault(self, detail: str) -> PermanentFault:
        """Latch the weld and return the fault for the caller to raise."""
        self._welded = True
        logger.error("%s: WELDED main contacts: %s; latched until restart", self._name, detail)
        return PermanentFault(FaultKind.CONTACTOR_WELDED, f"{self._name}: {detail}")

    def _check_usable(self) -> None:
        if self._released:
            raise RuntimeError(f"{self._name}: used after release()")


def from_config(
    section: Mapping[str, Any],
    seams: HardwareSeams,
    *,
    key_prefix: str = "connector",
    name: str = "contactor",
) -> GpioContactor:
    """Build a :class:`GpioContactor` from a connector section (keys: ContactorConfig).

    A ``ConfigurationError`` names ``<key_prefix>.<key>``; pass e.g. ``key_prefix="connector.1"``
    so the message points at the exact setting in the file.
    """
    config = ContactorConfig.from_section(section, key_prefix)
    return GpioContactor(config, pin_factory=seams.pin_factory, name=name)
