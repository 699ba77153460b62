"""The socket's lock actuator driver (drivers.lock) against the simulated actuator and its
feedback contact: a holding solenoid and a motor, locking, unlocking, and jammed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.lock import GpioLock, LockConfig
from hw_sim.pins import SimLockPins


@pytest.fixture(params=["solenoid", "motor"])
def lock(
    request: pytest.FixtureRequest, factory: MockFactory
) -> Iterator[tuple[GpioLock, SimLockPins]]:
    unlock_pin = 6 if request.param == "motor" else None
    actuator = SimLockPins(factory, 5, 13, unlock_pin)
    driver = GpioLock(
        LockConfig(5, unlock_pin, 13, pulse_s=0.01, timeout_s=0.2), pin_factory=factory
    )
    yield driver, actuator
    driver.close()


async def test_lock_and_unlock_follow_the_feedback(lock: tuple[GpioLock, SimLockPins]) -> None:
    driver, actuator = lock
    assert not driver.locked
    await driver.lock()
    assert driver.locked and actuator.engaged
    await driver.unlock()
    assert not driver.locked and not actuator.engaged


async def test_a_jammed_actuator_is_a_lock_failure_both_ways(
    lock: tuple[GpioLock, SimLockPins],
) -> None:
    driver, actuator = lock
    actuator.jammed = True
    with pytest.raises(PermanentFault) as caught:
        await driver.lock()
    assert caught.value.kind is FaultKind.LOCK_FAILURE
    actuator.jammed = False
    await driver.lock()
    actuator.jammed = True
    with pytest.raises(PermanentFault, match="did not unlock"):
        await driver.unlock()


def test_the_configuration_names_a_missing_or_shared_pin() -> None:
    with pytest.raises(ConfigurationError, match=r"connector\.1\.lock_feedback_pin"):
        LockConfig.from_section({"lock_pin": 7}, "connector.1")
    with pytest.raises(ConfigurationError, match="must differ"):
        LockConfig.from_section({"lock_pin": 7, "lock_feedback_pin": 7}, "connector.1")
    config = LockConfig.from_section({"lock_pin": 7, "lock_feedback_pin": 19})
    assert config.unlock_pin is None  # a holding solenoid
