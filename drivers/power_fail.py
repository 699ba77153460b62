"""The power-fail warning of a UPS or supercap HAT on a GPIO input.

HATs such as the Waveshare UPS, PiJuice or the supercap "power guards" raise an output when
the supply is gone and the charger runs on its reserve (seconds to minutes). The controller
uses that time to stop running transactions cleanly (reason PowerLoss) and open the
contactors before the power goes. ``active_high`` is the level at the GPIO while power has
failed (false for the many HATs whose "power good" line drops instead).

Threads: gpiozero's edge callbacks post to the loop through
:class:`drivers.gpio_bridge.LoopBridge`; watchers are called on the loop thread, hearing each
change once and, at registration, a failure already present.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gpiozero import DigitalInputDevice

from drivers.gpio_bridge import LoopBridge, flag_setting, pin_setting

#: The ``[hardware]`` keys :meth:`PowerFailConfig.from_section` reads (strict config knows them).
CONFIG_KEYS = ("power_fail_pin", "power_fail_active_high")


@dataclass(frozen=True, slots=True)
class PowerFailConfig:
    """The input's pin and the level that means "power failed"; the simulator reads it too."""

    pin: int = 25
    active_high: bool = True

    @classmethod
    def from_section(cls, section: Mapping[str, Any], key_prefix: str = "") -> PowerFailConfig:
        """``power_fail_pin`` (25) and ``power_fail_active_high`` (true) of ``[hardware]``."""
        return cls(
            pin=pin_setting(section, "power_fail_pin", 25, key_prefix),
            active_high=flag_setting(section, "power_fail_active_high", True, key_prefix),
        )


class GpioPowerFail:
    """A :class:`drivers.base.PowerFailInput` on one gpiozero input."""

    def __init__(self, config: PowerFailConfig | None = None, *, pin_factory: Any = None) -> None:
        self._config = config = config or PowerFailConfig()
        self._bridge = LoopBridge("power-fail")
        self._watchers: list[Callable[[bool], None]] = []
        self._heard: bool | None = None
        self._input = DigitalInputDevice(
            config.pin, pull_up=not config.active_high, pin_factory=pin_factory
        )
        self._input.when_activated = lambda: self._bridge.post(self._changed)
        self._input.when_deactivated = lambda: self._bridge.post(self._changed)

    @property
    def config(self) -> PowerFailConfig:
        return self._config

    @property
    def failing(self) -> bool:
        """True while the HAT signals that the supply has failed (reads the pin)."""
        return bool(self._input.is_active)

    def watch(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(failing)`` on the loop thread at each change; a failure already
        present is heard soon after registering. Call on the loop thread."""
        self._bridge.bind()
        self._watchers.append(on_change)
        self._bridge.post(self._changed)

    def close(self) -> None:
        """Release the pin; idempotent. Watchers hear nothing more."""
        self._watchers.clear()
        self._input.close()

    def _changed(self) -> None:
        failing = self.failing if not self._input.closed else False
        if failing == self._heard or (self._heard is None and not failing):
            self._heard = failing
            return
        self._heard = failing
        for watcher in list(self._watchers):
            watcher(failing)
