"""A residual current monitor (RCM14, RCMB104 or similar) on two GPIO lines.

The module's fault output (RCM14: 12 V active-high) reaches a GPIO through an opto-coupler;
``fault_active_high`` is the level *at the GPIO* while the fault output is active (set it
false when the opto stage inverts). Its TEST input is driven from a GPIO through a transistor.

Self-test (hardware-reference 5.3, before each session): raise TEST, expect the fault output
to go active within ``selftest_timeout_s``, hold TEST for at least ``test_pulse_s``, drop it,
and expect the fault output to clear within ``selftest_timeout_s``; otherwise
``PermanentFault(RCD_SELFTEST)``.

Trips caused by the test are not reported: from TEST rising until the fault output has
cleared after TEST fell (or ``selftest_timeout_s`` after TEST fell, whichever is first),
fault edges are kept from the watchers; each edge is marked on gpiozero's thread at the
moment it happens, so a late delivery cannot leak it. A self-test that fails or is
cancelled keeps this quiet period in the background, so the test's own fault pulse is not
reported as a trip then either. When it ends, watchers hear the level the fault output has,
if it differs from what they last heard: a residual current still there after the test (or
a fault output stuck active) is reported as a trip. :attr:`GpioRcm.tripped` always reads the
pin, so it shows the test-induced fault while the test runs; the contactor is open then.

Interlock: once :meth:`GpioRcm.guard` gave it the contactor's interlock, every activating
edge trips it on gpiozero's thread (the coil drops before the loop hears of the residual
current), the self-test's own edges included (the contactor is open while the test runs);
each trip is re-armed on the loop after the watchers heard the edge.

Threads: gpiozero's edge callbacks post to the loop through
:class:`drivers.gpio_bridge.LoopBridge`; watchers are called on the loop thread, each one
hearing every change of level, in order, and never the same level twice in a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class RcmConfig:
    """Pins, levels and self-test timing (seconds) of one RCM; the simulator reads it too."""

    fault_pin: int = 22
    fault_active_high: bool = True
    test_pin: int = 23
    test_active_high: bool = True
    test_pulse_s: float = 0.05
    selftest_timeout_s: float = 1.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any], key_prefix: str = "") -> RcmConfig:
        """Validate ``rcm_fault_pin`` (22), ``rcm_fault_active_high`` (true), ``rcm_test_pin``
        (23), ``rcm_test_active_high`` (true), ``rcm_test_pulse_s`` (0.05) and
        ``rcm_selftest_timeout_s`` (1.0); errors name ``<key_prefix>.<key>``."""
        fault_pin = pin_setting(section, "rcm_fault_pin", 22, key_prefix)
        test_pin = pin_setting(section, "rcm_test_pin", 23, key_prefix)
        if test_pin == fault_pin:
            raise ConfigurationError(
                key_name(key_prefix, "rcm_test_pin"), f"GPIO{test_pin} is already the rcm_fault_pin"
            )
        return cls(
            fault_pin=fault_pin,
            fault_active_high=flag_setting(section, "rcm_fault_active_high", True, key_prefix),
            test_pin=test_pin,
            test_active_high=flag_setting(section, "rcm_test_active_high", True, key_prefix),
            test_pulse_s=seconds_setting(section, "rcm_test_pulse_s", 0.05, 2.0, key_prefix),
            selftest_timeout_s=seconds_setting(
                section, "rcm_selftest_timeout_s", 1.0, 10.0, key_prefix
            ),
        )


#: Every key :meth:`RcmConfig.from_section` reads from a ``[[connector]]`` table.
CONFIG_KEYS: Final = (
    "rcm_fault_pin",
    "rcm_fault_active_high",
    "rcm_test_pin",
    "rcm_test_active_high",
    "rcm_test_pulse_s",
    "rcm_selftest_timeout_s",
)


class _Watcher:
    """One ``watch`` callback and the level it last heard."""

    __slots__ = ("callback", "heard")

    def __init__(self, callback: Callable[[bool], None]) -> None:
        self.callback = callback
        self.heard = False


class GpioRcm:
    """A :class:`drivers.base.ResidualCurrentMonitor` on gpiozero devices; TEST starts off."""

    def __init__(
        self,
        config: RcmConfig | None = None,
        *,
        pin_factory: Any = None,
        name: str = "rcm",
    ) -> None:
        self._config = config = config or RcmConfig()
        self._name = name
        self._bridge = LoopBridge(name)
        self._edge = asyncio.Event()  # set on the loop at each fault edge: self-test wake-up
        self._watchers: list[_Watcher] = []
        self._testing = False  # edges are the test's own; set on the loop, read on any thread
        self._test_dropped_at = 0.0  # loop.time() when TEST last fell
        self._quiet_end: asyncio.TimerHandle | None = None
        self._test_lock = asyncio.Lock()
        self._closed = False
        self._interlock: Interlock | None = None
        self._test = DigitalOutputDevice(
            config.test_pin,
            active_high=config.test_active_high,
            initial_value=False,
            pin_factory=pin_factory,
        )
        try:
            self._fault = DigitalInputDevice(
                config.fault_pin, pull_up=not config.fault_active_high, pin_factory=pin_factory
            )
        except BaseException:
            self._test.close()
            raise
        self._fault.when_activated = self._on_fault_activated
        self._fault.when_deactivated = self._on_fault_deactivated

    @property
    def config(self) -> RcmConfig:
        return self._config

    @property
    def tripped(self) -> bool:
        """True while the fault output is active (including during a self-test)."""
        return bool(self._fault.is_active)

    @property
    def self_testing(self) -> bool:
        """True while :meth:`self_test` runs and fault edges are kept from the watchers."""
        return self._testing

    def watch(self, on_change: Callable[[bool], None]) -> None:
        """Call ``on_change(tripped)`` on the loop thread at each change of the fault output.

        Call on the loop thread. If the output is already active, the watcher hears
        ``True`` soon after registering, so a trip present at start-up is not missed.
        An exception in a watcher is logged and does not stop the other watchers.
        """
        self._bridge.bind()
        self._watchers.append(_Watcher(on_change))
        self._bridge.post(self._catch_up)

    def guard(self, interlock: Interlock) -> None:
        """Trip ``interlock`` at each activating edge from now on (see the module docstring).
        Call on the loop thread, before or after :meth:`watch`."""
        self._bridge.bind()
        self._interlock = interlock

    async def self_test(self) -> None:
        """Pulse TEST and check the fault output follows; see the module docstring.

        Raises ``PermanentFault(RCD_SELFTEST)`` when the output is already active, does not
        rise, or does not clear. TEST is always dropped, also on cancellation. Concurrent
        calls run one after the other.
        """
        self._bridge.bind()
        async with self._test_lock:
            if self.tripped:
                raise PermanentFault(
                    FaultKind.RCD_SELFTEST,
                    f"{self._name}: fault output already active before TEST; cannot test",
                )
            self._cancel_quiet_end()
            self._testing = True
            try:
                await self._pulse_and_check()
            finally:
                self._drop_test()
                self._end_test_when_settled()

    def close(self) -> None:
        """Drop TEST and release both pins; idempotent. Watchers hear nothing more."""
        if self._closed:
            return
        self._closed = True
        self._cancel_quiet_end()
        self._watchers.clear()
        self._test.close()
        self._fault.close()

    def __enter__(self) -> GpioRcm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _pulse_and_check(self) -> None:
        timeout_s = self._config.selftest_timeout_s
        loop = asyncio.get_running_loop()
        raised_at = loop.time()
        self._test.on()
        if not await wait_until(lambda: self.tripped, self._edge, timeout_s):
            raise PermanentFault(
                FaultKind.RCD_SELFTEST,
                f"{self._name}: fault output did not go active within "
                f"{timeout_s * 1000:.0f} ms of TEST",
            )
        hold_s = raised_at + self._config.test_pulse_s - loop.time()
        if hold_s > 0:
            await asyncio.sleep(hold_s)
        self._drop_test()
        if not await wait_until(lambda: not self.tripped, self._edge, timeout_s):
            raise PermanentFault(
                FaultKind.RCD_SELFTEST,
                f"{self._name}: fault output still active {timeout_s * 1000:.0f} ms after TEST "
                "ended",
            )
        logger.info("%s: self-test passed", self._name)

    def _drop_test(self) -> None:
        if not self._closed and self._test.value:
            self._test.off()
            self._test_dropped_at = asyncio.get_running_loop().time()

    def _end_test_when_settled(self) -> None:
        """Loop thread: end the quiet period now if the output is inactive or the timeout since
        TEST fell has passed; otherwise at the clearing edge or the timeout."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        remaining = self._test_dropped_at + self._config.selftest_timeout_s - loop.time()
        if not self.tripped or remaining <= 0:
            self._end_test()
        else:
            self._quiet_end = loop.call_later(remaining, self._end_test)

    def _end_test(self) -> None:
        self._cancel_quiet_end()
        self._testing = False
        if not self._closed:
            self._deliver(self.tripped)

    def _cancel_quiet_end(self) -> None:
        if self._quiet_end is not None:
            self._quiet_end.cancel()
            self._quiet_end = None

    # gpiozero's threads: note whether a self-test was running when the edge happened.
    def _on_fault_activated(self) -> None:
        interlock = self._interlock
        token = None if interlock is None or self._closed else interlock.trip("residual current")
        if not self._bridge.post(self._on_edge, True, self._testing, token) and token:
            # Nobody on a loop can hear of it (shutdown): the coil is open, which is all
            # the trip was for; leaving it outstanding would block a later driver's close.
            assert interlock is not None
            interlock.rearm(token)

    def _on_fault_deactivated(self) -> None:
        self._bridge.post(self._on_edge, False, self._testing, None)

    def _on_edge(self, tripped: bool, during_test: bool, token: int | None) -> None:
        """Loop thread: wake a self-test, tell the watchers unless a test caused it, then
        re-arm the trip of this edge (the watchers, the connector machine among them, know)."""
        try:
            self._heard_edge(tripped, during_test)
        finally:
            if token is not None and self._interlock is not None:
                self._interlock.rearm(token)

    def _heard_edge(self, tripped: bool, during_test: bool) -> None:
        self._edge.set()
        if self._quiet_end is not None and not tripped:
            self._end_test()  # the failed or cancelled test's fault pulse is over
            return
        if during_test or self._testing or self._closed:
            return
        if tripped:
            logger.warning("%s: fault output active: residual current", self._name)
        else:
            logger.info("%s: fault output cleared", self._name)
        self._deliver(tripped)

    def _catch_up(self) -> None:
        if not self._testing and not self._closed:
            self._deliver(self.tripped)

    def _deliver(self, tripped: bool) -> None:
        for watcher in list(self._watchers):
            if watcher.heard == tripped:
                continue
            watcher.heard = tripped
            try:
                watcher.callback(tripped)
            except Exception:
                logger.exception(
                    "%s: watcher %r failed on tripped=%s", self._name, watcher.callback, tripped
                )


def from_config(
    section: Mapping[str, Any],
    seams: HardwareSeams,
    *,
    key_prefix: str = "connector",
    name: str = "rcm",
) -> GpioRcm:
    """Build a :class:`GpioRcm` from a connector section (keys: :class:`RcmConfig`)."""
    return GpioRcm(
        RcmConfig.from_section(section, key_prefix), pin_factory=seams.pin_factory, name=name
    )
