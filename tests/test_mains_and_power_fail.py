"""Mains under-/over-voltage judged from the meter's phase voltages, and a UPS HAT's
power-fail warning on a GPIO: the driver-layer halves of the faults of issue 13."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.errors import FaultKind
from drivers.mains import MainsJudge, MainsLimits
from drivers.power_fail import GpioPowerFail, PowerFailConfig
from hw_sim.pins import SimPowerFailPin
from tests.support.wait import until

UNDER, OVER = FaultKind.UNDER_VOLTAGE, FaultKind.OVER_VOLTAGE


def judged(*readings: tuple[float | None, ...]) -> list[FaultKind | None]:
    judge = MainsJudge()
    return [judge.update(reading) for reading in readings]


def test_mains_inside_230_v_plus_minus_10_percent_is_no_fault() -> None:
    assert judged((230, 230, 230), (208, 252, 230), (230, None, None)) == [None, None, None]


@pytest.mark.parametrize(("volts", "fault"), [(195.0, UNDER), (262.0, OVER)])
def test_a_fault_needs_two_readings_in_a_row(volts: float, fault: FaultKind) -> None:
    assert judged((volts,) * 3, (volts,) * 3) == [None, fault]
    assert judged((volts,) * 3, (230,) * 3, (volts,) * 3) == [None, None, None]


def test_one_phase_gone_among_live_ones_is_undervoltage() -> None:
    assert judged((230, 0, 230), (230, 0, 230)) == [None, UNDER]


def test_a_meter_behind_the_open_contactor_reads_no_mains_and_is_not_judged() -> None:
    assert judged((0, 0, 0), (0, 0, 0), (None, None, None)) == [None, None, None]
    judge = MainsJudge()
    for _ in range(2):
        judge.update((195, 195, 195))
    assert judge.update((0, 0, 0)) is UNDER  # no mains to judge: the verdict stands


def test_a_fault_ends_only_past_the_hysteresis_and_after_two_good_readings() -> None:
    judge = MainsJudge(MainsLimits(samples=2, hysteresis_v=4.0))
    for _ in range(2):
        judge.update((200, 230, 230))
    assert judge.update((209, 230, 230)) is UNDER  # inside the band, not past the margin
    assert judge.update((209, 230, 230)) is UNDER
    assert judge.update((215, 230, 230)) is UNDER  # one good reading is not enough
    assert judge.update((215, 230, 230)) is None


def test_under_turning_into_over_is_reported_as_over() -> None:
    assert judged((195,) * 3, (195,) * 3, (262,) * 3, (262,) * 3)[-1] is OVER


# --- the power-fail input -----------------------------------------------------------------


@pytest.fixture
def hat(factory: MockFactory) -> Iterator[tuple[GpioPowerFail, SimPowerFailPin]]:
    ups = SimPowerFailPin(factory, 25)
    driver = GpioPowerFail(PowerFailConfig(pin=25), pin_factory=factory)
    yield driver, ups
    driver.close()


async def test_the_warning_and_its_end_reach_the_watcher_on_the_loop(
    hat: tuple[GpioPowerFail, SimPowerFailPin],
) -> None:
    driver, ups = hat
    heard: list[bool] = []
    driver.watch(heard.append)
    assert not driver.failing
    ups.set(True)
    await until(lambda: heard == [True])
    assert driver.failing
    ups.set(False)
    await until(lambda: heard == [True, False])


async def test_a_warning_present_at_start_is_heard(
    hat: tuple[GpioPowerFail, SimPowerFailPin],
) -> None:
    driver, ups = hat
    ups.set(True)
    heard: list[bool] = []
    driver.watch(heard.append)
    await until(lambda: heard == [True])


def test_a_hat_whose_power_good_line_drops_is_configured_active_low(
    factory: MockFactory,
) -> None:
    ups = SimPowerFailPin(factory, 7, active_high=False)
    driver = GpioPowerFail(
        PowerFailConfig.from_section({"power_fail_pin": 7, "power_fail_active_high": False}),
        pin_factory=factory,
    )
    try:
        assert not driver.failing
        ups.set(True)
        assert driver.failing
    finally:
        driver.close()
