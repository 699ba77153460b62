"""The RCM driver against a simulated RCM (fault output and TEST input) on MockFactory pins."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.base import ResidualCurrentMonitor
from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.rcm import GpioRcm, RcmConfig, from_config
from drivers.seams import HardwareSeams
from hw_sim.pins import SimRcmPins
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

FAST = {"rcm_test_pulse_s": 0.02, "rcm_selftest_timeout_s": 0.1}


@pytest.fixture
def rig(factory: MockFactory) -> Iterator[Callable[..., tuple[GpioRcm, SimRcmPins]]]:
    built: list[tuple[GpioRcm, SimRcmPins]] = []

    def build(response_delay_s: float = 0.005, **overrides: Any) -> tuple[GpioRcm, SimRcmPins]:
        config = RcmConfig.from_section({**FAST, **overrides})
        sim = SimRcmPins.from_config(factory, config, response_delay_s)
        rcm = GpioRcm(config, pin_factory=factory)
        built.append((rcm, sim))
        return rcm, sim

    yield build
    for rcm, sim in built:
        rcm.close()
        sim.close()


class Recorder:
    """A watch() callback that notes each call and the thread it ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, int]] = []
        self.changed = asyncio.Event()

    def __call__(self, tripped: bool) -> None:
        self.calls.append((tripped, threading.get_ident()))
        self.changed.set()

    @property
    def levels(self) -> list[bool]:
        return [tripped for tripped, _ in self.calls]

    async def wait_for(self, count: int, timeout_s: float = 1.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()


def in_another_thread(action: Callable[[], None]) -> None:
    """Play the outside world on its own thread, as gpiozero's edge thread would see it."""
    thread = threading.Thread(target=action)
    thread.start()
    thread.join()


def test_gpio_rcm_is_a_residual_current_monitor(rig: Callable[..., Any]) -> None:
    rcm, _ = rig()
    _check: ResidualCurrentMonitor = rcm
    assert _check is rcm


@pytest.mark.parametrize("active_high", [True, False], ids=["active-high", "active-low"])
async def test_trip_and_clear_reach_the_watcher_on_the_loop_thread(
    rig: Callable[..., Any], active_high: bool
) -> None:
    rcm, sim = rig(rcm_fault_active_high=active_high)
    recorder = Recorder()
    rcm.watch(recorder)
    assert not rcm.tripped
    in_another_thread(sim.trip)
    await recorder.wait_for(1)
    assert rcm.tripped
    in_another_thread(sim.clear)
    await recorder.wait_for(2)
    loop_thread = threading.get_ident()
    assert recorder.calls == [(True, loop_thread), (False, loop_thread)]
    assert sim.fault_pin.state is (not active_high)  # back to the idle level


async def test_a_short_trip_is_not_lost_even_if_cleared_before_the_loop_runs(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig()
    recorder = Recorder()
    rcm.watch(recorder)
    # one loop turn: the watch is armed before the edges come
    await asyncio.sleep(0)

    def blip() -> None:
        sim.trip()
        sim.clear()

    in_another_thread(blip)
    await recorder.wait_for(2)
    assert recorder.levels == [True, False]


async def test_watcher_registered_during_a_trip_hears_it(rig: Callable[..., Any]) -> None:
    rcm, sim = rig()
    sim.trip()
    recorder = Recorder()
    rcm.watch(recorder)
    await recorder.wait_for(1)
    assert recorder.levels == [True]


async def test_a_failing_watcher_does_not_keep_the_trip_from_the_others(
    rig: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    rcm, sim = rig()

    def broken(tripped: bool) -> None:
        raise ValueError("watcher bug")

    recorder = Recorder()
    rcm.watch(broken)
    rcm.watch(recorder)
    sim.trip()
    await recorder.wait_for(1)
    assert recorder.levels == [True]
    assert "watcher bug" in caplog.text


async def test_self_test_passes_and_does_not_report_the_test_trip(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig(response_delay_s=0.01)
    recorder = Recorder()
    rcm.watch(recorder)
    started = time.monotonic()
    await rcm.self_test()
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.03)  # let any late edge reach the loop
    assert recorder.calls == []
    assert not rcm.tripped and not rcm.self_testing
    assert [s.state for s in sim.test_pin.states] == [False, True, False]
    test_high_s = sim.test_pin.states[2].timestamp
    assert test_high_s >= 0.02  # held for rcm_test_pulse_s
    assert elapsed < 0.1


async def test_self_test_fails_when_the_rcm_does_not_answer_test(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig()
    sim.set_selftest_broken(True)
    recorder = Recorder()
    rcm.watch(recorder)
    started = time.monotonic()
    with pytest.raises(PermanentFault) as caught:
        await rcm.self_test()
    assert caught.value.kind is FaultKind.RCD_SELFTEST
    assert "did not go active" in caught.value.detail
    assert 0.1 <= time.monotonic() - started < 0.2
    assert not sim.test_active  # TEST dropped
    # nothing may happen here; the charger acts within tens of ms, so 10 ms is a wide margin on a
    # loaded machine, and a late wake-up only widens the window
    await asyncio.sleep(0.01)
    assert recorder.calls == []


async def test_residual_current_lasting_past_the_self_test_fails_it_and_is_reported_as_a_trip(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig(response_delay_s=0.01, rcm_test_pulse_s=0.05)
    recorder = Recorder()
    rcm.watch(recorder)
    testing = asyncio.create_task(rcm.self_test())
    await until(lambda: rcm.self_testing and rcm.tripped, what="the self-test's own trip")
    sim.trip()  # a real residual current while TEST is high
    with pytest.raises(PermanentFault) as caught:
        await testing
    assert caught.value.kind is FaultKind.RCD_SELFTEST
    assert "still active" in caught.value.detail
    await recorder.wait_for(1)
    assert recorder.levels == [True]


async def test_self_test_refuses_while_the_fault_output_is_already_active(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig()
    sim.trip()
    with pytest.raises(PermanentFault) as caught:
        await rcm.self_test()
    assert caught.value.kind is FaultKind.RCD_SELFTEST
    assert not sim.test_active
    assert not any(state for _, state in sim.test_pin.states)  # TEST never raised


async def test_cancelled_self_test_drops_test_hides_its_own_pulse_and_reports_again(
    rig: Callable[..., Any],
) -> None:
    rcm, sim = rig(response_delay_s=0.01, rcm_test_pulse_s=0.5)
    recorder = Recorder()
    rcm.watch(recorder)
    testing = asyncio.create_task(rcm.self_test())
    # Cancelled while TEST is raised: also right as the RCD's answer arrives, which once let
    # the cancelled self-test run on to the end (see tests/test_gpio_bridge.py).
    await until(lambda: sim.fault_active, what="the RCD answering TEST")
    assert sim.test_active
    testing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await testing
    assert not sim.test_active
    assert rcm.self_testing  # quiet until the test's own fault pulse has cleared
    # the pulse's own fault clears 10 ms after TEST drops; then nothing may be reported of it
    await asyncio.sleep(0.03)
    assert not rcm.tripped and not rcm.self_testing
    assert recorder.calls == []
    sim.trip()
    await recorder.wait_for(1)
    assert recorder.levels == [True]


async def test_close_is_idempotent_and_releases_the_pins(
    factory: MockFactory, rig: Callable[..., Any]
) -> None:
    rcm, sim = rig()
    rcm.close()
    rcm.close()
    assert sim.test_pin.output_level is None
    GpioRcm(rcm.config, pin_factory=factory).close()


def test_from_config_defaults(factory: MockFactory) -> None:
    sim = SimRcmPins(factory)
    rcm = from_config({}, HardwareSeams(pin_factory=factory))
    try:
        assert rcm.config == RcmConfig(22, True, 23, True, 0.05, 1.0)
        assert not rcm.tripped
    finally:
        rcm.close()
        sim.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rcm_fault_pin", 28),
        ("rcm_fault_pin", "22"),
        ("rcm_test_pin", 22),  # same as the fault pin
        ("rcm_fault_active_high", "true"),
        ("rcm_test_active_high", None),
        ("rcm_test_pulse_s", -0.05),
        ("rcm_selftest_timeout_s", 60),
    ],
)
def test_from_config_with_a_bad_value_names_the_key(
    factory: MockFactory, key: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config({key: value}, HardwareSeams(pin_factory=factory), key_prefix="connector.2")
    assert caught.value.key == f"connector.2.{key}"
