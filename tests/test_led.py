"""The status LED driver against a MockFactory pin, timed through gpiozero's pin history."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from drivers.base import LedPattern, StatusIndicator
from drivers.errors import ConfigurationError
from drivers.led import FLASH_STEP_S, GpioStatusLed, from_config
from drivers.seams import HardwareSeams

#: Every test here judges gpiozero's blink timing on the wall clock.
pytestmark = pytest.mark.timing


@pytest.fixture
def led(factory: MockFactory) -> Iterator[GpioStatusLed]:
    led = GpioStatusLed(24, pin_factory=factory)
    yield led
    led.close()


def pin(factory: MockFactory, number: int = 24) -> MockPin:
    found: MockPin = factory.pin(number)
    return found


def levels_after(mock: MockPin, seconds: float) -> list[tuple[float, bool]]:
    """Clear the pin history, wait, and return (seconds since previous change, level)."""
    mock.clear_states()
    # the blink pattern's timing is what is recorded over this window
    time.sleep(seconds)
    return [(s.timestamp, bool(s.state)) for s in mock.states[1:]]


def test_gpio_status_led_is_a_status_indicator(led: GpioStatusLed) -> None:
    _check: StatusIndicator = led
    assert _check is led


def test_led_starts_off(factory: MockFactory, led: GpioStatusLed) -> None:
    assert led.pattern is LedPattern.OFF
    assert pin(factory).function == "output" and pin(factory).state is False


def test_idle_is_steady_on_and_off_is_off(factory: MockFactory, led: GpioStatusLed) -> None:
    led.show(LedPattern.IDLE)
    assert levels_after(pin(factory), 0.15) == []
    assert pin(factory).state is True
    led.show(LedPattern.IDLE)  # idempotent: no flicker
    assert pin(factory).state is True
    led.show(LedPattern.OFF)
    assert pin(factory).state is False


def test_charging_blinks_fast_with_gpiozero_timing(
    factory: MockFactory, led: GpioStatusLed
) -> None:
    led.show(LedPattern.CHARGING)
    changes = levels_after(pin(factory), 0.65)
    assert 2 <= len(changes) <= 3
    for seconds, _ in changes[1:]:
        assert seconds == pytest.approx(0.25, abs=0.05)


def test_waiting_blinks_slower_than_charging(factory: MockFactory, led: GpioStatusLed) -> None:
    led.show(LedPattern.WAITING)
    assert pin(factory).state is True
    assert levels_after(pin(factory), 0.4) == []  # 1 s on: no change yet
    assert led.lit


def test_fault_is_a_double_flash(factory: MockFactory, led: GpioStatusLed) -> None:
    led.show(LedPattern.FAULT)
    changes = levels_after(pin(factory), 8 * FLASH_STEP_S + 0.1)
    levels = [level for _, level in changes]
    gaps = [seconds for seconds, _ in changes]
    # on, off, on, off, then a long pause and the next flash: on 150, off 150, on 150, off 750.
    assert levels[:4] == [False, True, False, True]
    assert gaps[1] == pytest.approx(FLASH_STEP_S, abs=0.05)
    assert gaps[3] == pytest.approx(5 * FLASH_STEP_S, abs=0.07)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (LedPattern.CHARGING, LedPattern.IDLE),
        (LedPattern.FAULT, LedPattern.OFF),
        (LedPattern.FAULT, LedPattern.WAITING),
    ],
)
def test_switching_pattern_stops_the_previous_blinking(
    factory: MockFactory, led: GpioStatusLed, before: LedPattern, after: LedPattern
) -> None:
    baseline = threading.active_count()
    led.show(before)
    assert threading.active_count() == baseline + 1
    # the first pattern runs a while before it is replaced; how long does not matter
    time.sleep(0.05)
    led.show(after)
    expected_threads = baseline + (after is LedPattern.WAITING)
    assert threading.active_count() == expected_threads
    assert levels_after(pin(factory), 0.3) == []  # nothing of the old pattern is left
    assert led.pattern is after


def test_active_low_led_is_lit_by_driving_the_pin_low(factory: MockFactory) -> None:
    led = from_config({"led_pin": 5, "led_active_high": False}, HardwareSeams(pin_factory=factory))
    try:
        assert pin(factory, 5).state is True
        led.show(LedPattern.IDLE)
        assert pin(factory, 5).state is False and led.lit
    finally:
        led.close()


def test_close_stops_blinking_switches_off_and_is_idempotent(factory: MockFactory) -> None:
    led = GpioStatusLed(24, pin_factory=factory)
    led.show(LedPattern.FAULT)
    led.close()
    led.close()
    assert pin(factory).function == "input"
    assert levels_after(pin(factory), 0.2) == []


@pytest.mark.parametrize(
    ("key", "value"), [("led_pin", 99), ("led_pin", "24"), ("led_active_high", "no")]
)
def test_from_config_with_a_bad_value_names_the_key(
    factory: MockFactory, key: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config({key: value}, HardwareSeams(pin_factory=factory), key_prefix="hardware")
    assert caught.value.key == f"hardware.{key}"
