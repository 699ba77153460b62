"""A Type 2 socket's cable lock: a motor or solenoid actuator with a feedback contact.

Sockets such as the Phoenix Contact EV-T2M3S or Mennekes' with "locking actuator" latch the
plug with a small DC motor driven in one direction to lock and the other to unlock, through
an H-bridge or two relays: ``lock_pin`` drives the lock direction, ``unlock_pin`` the unlock
direction, each for ``lock_pulse_s`` (a motor must not stall against its end stop for
longer). Without ``unlock_pin`` the actuator is a holding solenoid: ``lock_pin`` stays
energized while locked and drops to unlock. The actuator's microswitch
(``lock_feedback_pin``) reads active while the latch is engaged
(``lock_feedback_active_high`` is its level at the GPIO).

:meth:`GpioLock.lock` and :meth:`GpioLock.unlock` pulse and then expect the feedback within
``lock_timeout_s``; otherwise ``PermanentFault(LOCK_FAILURE)`` (IEC 61851-1: a socket that
cannot lock must not be energized; OCPP ConnectorLockFailure / UnlockFailed). Both outputs
start and end de-energized, and never both at once.

Keys live in the connector's section; a connector without ``lock_pin`` has no lock (a
tethered cable, or a socket without an actuator).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

#: The ``[[connector]]`` keys :meth:`LockConfig.from_section` reads (strict config knows them).
CONFIG_KEYS = (
    "lock_pin",
    "unlock_pin",
    "lock_feedback_pin",
    "lock_feedback_active_high",
    "lock_pulse_s",
    "lock_timeout_s",
)


@dataclass(frozen=True, slots=True)
class LockConfig:
    """Pins and timing (seconds) of one lock actuator; the simulator reads it too."""

    lock_pin: int
    unlock_pin: int | None  # None: a holding solenoid on lock_pin
    feedback_pin: int
    feedback_active_high: bool = True
    pulse_s: float = 0.3
    timeout_s: float = 1.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any], key_prefix: str = "") -> LockConfig:
        """``lock_pin`` and ``lock_feedback_pin`` (required), ``unlock_pin`` (a motor; unset:
        a holding solenoid), ``lock_feedback_active_high`` (true), ``lock_pulse_s`` (0.3),
        ``lock_timeout_s`` (1.0); errors name ``<key_prefix>.<key>``."""
        names = [k for k in ("lock_pin", "unlock_pin", "lock_feedback_pin") if k in section]
        for key in ("lock_pin", "lock_feedback_pin"):
            if key not in section:
                raise ConfigurationError(key_name(key_prefix, key), "missing (a lock needs it)")
        pins = {key: pin_setting(section, key, 0, key_prefix) for key in names}
        if len(set(pins.values())) < len(pins):
            raise ConfigurationError(
                key_name(key_prefix, "lock_feedback_pin"), f"the lock's pins must differ: {pins}"
            )
        return cls(
            lock_pin=pins["lock_pin"],
            unlock_pin=pins.get("unlock_pin"),
            feedback_pin=pins["lock_feedback_pin"],
            feedback_active_high=flag_setting(
                section, "lock_feedback_active_high", True, key_prefix
            ),
            pulse_s=seconds_setting(section, "lock_pulse_s", 0.3, 5.0, key_prefix),
            timeout_s=seconds_setting(section, "lock_timeout_s", 1.0, 10.0, key_prefix),
        )


class GpioLock:
    """A :class:`drivers.base.ConnectorLock` on gpiozero devices. Loop thread only."""

    def __init__(self, config: LockConfig, *, pin_factory: Any = None, name: str = "lock") -> None:
        self._config = config
        self._name = name
        self._bridge = LoopBridge(name)
        self._edge = asyncio.Event()
        self._busy = asyncio.Lock()
        self._outputs: list[DigitalOutputDevice] = []
        try:
            for pin in (config.lock_pin, config.unlock_pin):
                if pin is None:
                    continue
                self._outputs.append(
                    DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)
                )
            self._feedback = DigitalInputDevice(
                config.feedback_pin,
                pull_up=not config.feedback_active_high,
                pin_factory=pin_factory,
            )
        except BaseException:
            for output in self._outputs:
                output.close()
            raise
        self._feedback.when_activated = lambda: self._bridge.post(self._edge.set)
        self._feedback.when_deactivated = lambda: self._bridge.post(self._edge.set)

    @property
    def config(self) -> LockConfig:
        return self._config

    @property
    def locked(self) -> bool:
        """True while the feedback contact says the latch is engaged."""
        return bool(self._feedback.is_active)

    async def lock(self) -> None:
        """Engage the latch; ``PermanentFault(LOCK_FAILURE)`` when the feedback disagrees."""
        await self._drive(want_locked=True)

    async def unlock(self) -> None:
        """Release the latch; ``PermanentFault(LOCK_FAILURE)`` when it stays engaged."""
        await self._drive(want_locked=False)

    async def _drive(self, *, want_locked: bool) -> None:
        self._bridge.bind()
        async with self._busy:  # one direction at a time: never both outputs on
            self._edge.clear()
            if len(self._outputs) == 1:  # a holding solenoid: on while locked
                self._outputs[0].value = want_locked
            elif self.locked != want_locked:
                output = self._outputs[0 if want_locked else 1]
                output.on()
                try:
                    await asyncio.sleep(self._config.pulse_s)
                finally:
                    output.off()
            engaged = await wait_until(
                lambda: self.locked == want_locked, self._edge, self._config.timeout_s
            )
        if not engaged:
            verb = "lock" if want_locked else "unlock"
            raise PermanentFault(
                FaultKind.LOCK_FAILURE, f"{self._name}: the actuator did not {verb}"
            )

    def close(self) -> None:
        """Both outputs off, every pin released; idempotent."""
        for output in self._outputs:
            output.close()
        self._feedback.close()
