"""The contactor driver against simulated coil and feedback pins on a gpiozero MockFactory."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.base import Contactor
from drivers.contactor import ContactorConfig, FeedbackType, GpioContactor, from_config
from drivers.errors import ConfigurationError, FaultKind, PermanentFault
from drivers.seams import HardwareSeams
from hw_sim.pins import SimContactorPins
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests

FAST = {"close_settle_s": 0.05, "open_settle_s": 0.03}


@pytest.fixture
def rig(factory: MockFactory) -> Iterator[Callable[..., tuple[GpioContactor, SimContactorPins]]]:
    """Build simulated pins then the driver from one config; release both afterwards."""
    built: list[tuple[GpioContactor, SimContactorPins]] = []

    def build(
        mechanical_delay_s: float = 0.0, **overrides: Any
    ) -> tuple[GpioContactor, SimContactorPins]:
        config = ContactorConfig.from_section({**FAST, **overrides})
        sim = SimContactorPins.from_config(factory, config, mechanical_delay_s)
        contactor = GpioContactor(config, pin_factory=factory)
        built.append((contactor, sim))
        return contactor, sim

    yield build
    for contactor, sim in built:
        contactor.release()
        sim.close()


FEEDBACK_WIRINGS = [
    pytest.param({"feedback_type": "mirror", "feedback_active_low": True}, id="mirror-low"),
    pytest.param({"feedback_type": "mirror", "feedback_active_low": False}, id="mirror-high"),
    pytest.param({"feedback_type": "auxiliary", "feedback_active_low": True}, id="aux-low"),
    pytest.param({"feedback_type": "auxiliary", "feedback_active_low": False}, id="aux-high"),
]


def test_gpio_contactor_is_a_contactor(rig: Callable[..., Any]) -> None:
    contactor, _ = rig()
    _check: Contactor = contactor
    assert _check is contactor


@pytest.mark.parametrize("wiring", FEEDBACK_WIRINGS)
async def test_contactor_starts_open_and_de_energized(
    rig: Callable[..., Any], wiring: dict[str, Any]
) -> None:
    contactor, sim = rig(**wiring)
    assert sim.coil_pin.output_level is False
    assert not contactor.energized
    assert not sim.coil_energized
    assert not sim.main_contacts_closed
    assert contactor.main_contacts_closed is False
    assert not contactor.welded


async def test_active_low_coil_starts_de_energized_without_a_glitch(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig(contactor_active_high=False)
    assert sim.coil_pin.output_level is True  # high = off for an active-low driver stage
    assert not sim.coil_energized
    assert [s.state for s in sim.coil_pin.states] == [False, True]  # floating, then off
    await contactor.close()
    assert sim.coil_pin.output_level is False
    assert sim.main_contacts_closed


@pytest.mark.parametrize("wiring", FEEDBACK_WIRINGS)
async def test_close_energizes_and_is_confirmed_by_the_feedback_contact(
    rig: Callable[..., Any], wiring: dict[str, Any]
) -> None:
    contactor, sim = rig(mechanical_delay_s=0.02, **wiring)
    await asyncio.sleep(FAST["open_settle_s"])  # start-up counts as an open()
    started = time.monotonic()
    await contactor.close()
    elapsed = time.monotonic() - started
    assert contactor.energized
    assert sim.main_contacts_closed
    assert contactor.main_contacts_closed is True
    # Woken by the feedback edge (20 ms mechanics), not by the 50 ms settle timeout.
    assert 0.015 <= elapsed < 0.045


async def test_close_is_idempotent_while_closed(rig: Callable[..., Any]) -> None:
    contactor, sim = rig()
    await contactor.close()
    await contactor.close()
    assert [s.state for s in sim.coil_pin.states][-2:] == [False, True]
    assert sim.main_contacts_closed


@pytest.mark.parametrize("wiring", FEEDBACK_WIRINGS)
async def test_close_that_is_not_confirmed_de_energizes_and_raises_failed_close(
    rig: Callable[..., Any], wiring: dict[str, Any]
) -> None:
    contactor, sim = rig(**wiring)
    sim.set_stuck_open(True)
    started = time.monotonic()
    with pytest.raises(PermanentFault) as caught:
        await contactor.close()
    assert caught.value.kind is FaultKind.CONTACTOR_FAILED_CLOSE
    assert not contactor.energized
    assert sim.coil_pin.output_level is False
    assert [s.state for s in sim.coil_pin.states][-3:] == [False, True, False]
    assert time.monotonic() - started < FAST["open_settle_s"] + FAST["close_settle_s"] + 0.05
    assert not contactor.welded  # a dry contactor is not latched by the driver


@pytest.mark.parametrize("wiring", FEEDBACK_WIRINGS)
async def test_weld_is_detected_after_open_and_latched_until_the_driver_is_recreated(
    rig: Callable[..., Any], wiring: dict[str, Any]
) -> None:
    contactor, sim = rig(**wiring)
    await contactor.close()
    sim.set_welded(True)
    contactor.open()
    assert sim.coil_pin.output_level is False
    assert sim.main_contacts_closed  # welded: still powering the EV
    with pytest.raises(PermanentFault) as caught:
        await contactor.verify_open()
    assert caught.value.kind is FaultKind.CONTACTOR_WELDED
    assert contactor.welded

    sim.set_welded(False)  # somebody freed the contacts, but nobody restarted the controller
    assert not sim.main_contacts_closed
    coil_changes = len(sim.coil_pin.states)
    with pytest.raises(PermanentFault) as caught:
        await contactor.close()
    assert caught.value.kind is FaultKind.CONTACTOR_WELDED
    assert len(sim.coil_pin.states) == coil_changes  # never re-energized
    with pytest.raises(PermanentFault):
        await contactor.verify_open()


async def test_verify_open_passes_after_a_clean_open_and_waits_the_settle_time(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig(mechanical_delay_s=0.01, open_settle_s=0.06)
    await contactor.close()
    contactor.open()
    started = time.monotonic()
    await contactor.verify_open()
    assert time.monotonic() - started >= 0.055
    assert not sim.main_contacts_closed
    assert not contactor.welded


async def test_close_refuses_when_the_feedback_shows_main_contacts_closed_before_energizing(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig()
    await contactor.close()
    sim.set_welded(True)
    contactor.open()  # the caller skips verify_open and closes again
    coil_changes = len(sim.coil_pin.states)
    with pytest.raises(PermanentFault) as caught:
        await contactor.close()
    assert caught.value.kind is FaultKind.CONTACTOR_WELDED
    assert len(sim.coil_pin.states) == coil_changes
    assert contactor.welded


async def test_reclose_right_after_open_waits_for_slow_contacts_instead_of_seeing_a_weld(
    rig: Callable[..., Any],
) -> None:
    # Contacts need 40 ms to drop; a precheck at once would still see them closed.
    contactor, sim = rig(mechanical_delay_s=0.04, open_settle_s=0.08, close_settle_s=0.1)
    await contactor.close()
    contactor.open()
    assert sim.main_contacts_closed
    started = time.monotonic()
    await contactor.close()
    assert time.monotonic() - started >= 0.08
    assert contactor.energized and sim.main_contacts_closed


async def test_open_is_synchronous_idempotent_and_callable_from_another_thread(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig()
    await contactor.close()
    opener = threading.Thread(target=contactor.open)
    opener.start()
    opener.join()
    assert sim.coil_pin.output_level is False  # already low when open() returned
    contactor.open()
    contactor.open()
    assert [s.state for s in sim.coil_pin.states][-3:] == [False, True, False]
    assert not sim.main_contacts_closed
    await contactor.verify_open()


async def test_open_during_a_close_wins_and_close_returns_with_the_contactor_open(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig(mechanical_delay_s=0.05, close_settle_s=0.5)
    # start-up counts as an open(): its settle time must pass before a close; longer is harmless
    await asyncio.sleep(FAST["open_settle_s"])
    closing = asyncio.create_task(contactor.close())
    await until(lambda: contactor.energized)
    threading.Thread(target=contactor.open).start()  # e.g. an RCM trip on another thread
    started = time.monotonic()
    await closing  # no FAILED_CLOSE: open() was on purpose
    assert time.monotonic() - started < 0.1  # woken at once, not after the 0.5 s settle
    assert not contactor.energized
    # past the 50 ms mechanical delay: a coil left energized would have closed the contacts; a late
    # wake-up only gives them longer
    await asyncio.sleep(0.06)
    assert not sim.main_contacts_closed


async def test_verify_open_with_the_coil_energized_is_a_caller_bug(
    rig: Callable[..., Any],
) -> None:
    contactor, _ = rig()
    await contactor.close()
    with pytest.raises(RuntimeError, match="energized"):
        await contactor.verify_open()


async def test_contactor_without_feedback_closes_unconfirmed_and_cannot_see_a_weld(
    rig: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    contactor, sim = rig(feedback_type="none")
    assert "no feedback contact" in caplog.text
    assert contactor.main_contacts_closed is None
    await contactor.close()
    assert contactor.energized and sim.main_contacts_closed
    sim.set_welded(True)
    contactor.open()
    await contactor.verify_open()  # passes: nothing to check against
    assert sim.main_contacts_closed and not contactor.welded


async def test_release_de_energizes_frees_the_pins_and_is_idempotent(
    factory: MockFactory, rig: Callable[..., Any]
) -> None:
    contactor, sim = rig()
    await contactor.close()
    contactor.release()
    contactor.release()
    assert sim.coil_pin.output_level is None  # floating: the board's pull-down holds it off
    assert not sim.coil_energized and not sim.main_contacts_closed
    assert not contactor.energized and contactor.main_contacts_closed is None
    with pytest.raises(RuntimeError):
        await contactor.close()
    again = GpioContactor(contactor.config, pin_factory=factory)  # the pins are free again
    again.release()


async def test_sim_reports_coil_and_main_contact_changes_to_listeners(
    rig: Callable[..., Any],
) -> None:
    contactor, sim = rig()
    coil: list[bool] = []
    main: list[bool] = []
    sim.add_coil_listener(coil.append)
    sim.add_listener(main.append)
    await contactor.close()
    contactor.open()
    assert coil == [True, False]
    assert main == [True, False]


def test_from_config_defaults_follow_the_reference_wiring(factory: MockFactory) -> None:
    sim = SimContactorPins(factory)
    contactor = from_config({}, HardwareSeams(pin_factory=factory))
    try:
        assert contactor.config == ContactorConfig(
            coil_pin=17,
            coil_active_high=True,
            feedback_pin=27,
            feedback_type=FeedbackType.MIRROR,
            feedback_active_low=True,
            close_settle_s=0.1,
            open_settle_s=0.25,
        )
        assert contactor.main_contacts_closed is False
    finally:
        contactor.release()
        sim.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("contactor_pin", "GPIO17"),
        ("contactor_pin", 40),
        ("contactor_pin", True),
        ("contactor_active_high", "yes"),
        ("feedback_type", "nc"),
        ("feedback_pin", -1),
        ("feedback_pin", 17),  # the coil's pin
        ("feedback_active_low", 1),
        ("close_settle_s", 100),
        ("close_settle_s", 0),
        ("open_settle_s", "0.25"),
        ("open_settle_s", float("nan")),
    ],
)
def test_from_config_with_a_bad_value_names_the_key(
    factory: MockFactory, key: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config({key: value}, HardwareSeams(pin_factory=factory), key_prefix="connector.1")
    assert caught.value.key == f"connector.1.{key}"


def test_from_config_names_keys_under_connector_by_default(factory: MockFactory) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_config({"contactor_pin": 99}, HardwareSeams(pin_factory=factory))
    assert caught.value.key == "connector.contactor_pin"
    assert not factory.pins or all(p.function == "input" for p in factory.pins.values())


# --- the interlock (issue 12 §2): hazards drop the coil from any thread, open-only ---------


async def test_a_trip_drops_the_coil_on_the_tripping_thread(rig: Callable[..., Any]) -> None:
    contactor, sim = rig(mechanical_delay_s=0.005)
    await contactor.close()
    dropped_on: list[str] = []
    sim.add_coil_listener(
        lambda energized: energized or dropped_on.append(threading.current_thread().name)
    )
    tripper = threading.Thread(
        target=lambda: contactor.interlock.trip("residual current"), name="detector"
    )
    tripper.start()
    tripper.join()  # the loop did not run meanwhile: the trip needs no loop
    assert dropped_on == ["detector"]
    assert not sim.coil_energized


async def test_no_close_while_a_trip_is_outstanding(rig: Callable[..., Any]) -> None:
    contactor, sim = rig(mechanical_delay_s=0.005)
    first = contactor.interlock.trip("CP state B")
    second = contactor.interlock.trip("residual current")
    await contactor.close()
    assert not sim.coil_energized and not contactor.energized
    contactor.interlock.rearm(first)
    await contactor.close()
    assert not sim.coil_energized, "closed with the residual current's trip outstanding"
    contactor.interlock.rearm(second)
    await contactor.close()
    assert sim.coil_energized and contactor.main_contacts_closed


async def test_a_trip_during_a_close_always_wins(rig: Callable[..., Any]) -> None:
    """A trip from a thread at any moment of close(): once trip() returned, the coil is off
    and stays off until re-armed, whichever got the lock first."""
    contactor, sim = rig(mechanical_delay_s=0.002, open_settle_s=0.01)
    for attempt in range(40):
        after_trip: list[bool] = []
        tokens: list[int] = []

        def trip_soon(
            delay_s: float = attempt * 0.0002,
            after_trip: list[bool] = after_trip,
            tokens: list[int] = tokens,
        ) -> None:
            time.sleep(delay_s)
            tokens.append(contactor.interlock.trip("race"))
            after_trip.append(sim.coil_energized)

        thread = threading.Thread(target=trip_soon)
        thread.start()
        await contactor.close()
        await asyncio.to_thread(thread.join)
        assert after_trip == [False], f"attempt {attempt}: coil on after the trip returned"
        assert not sim.coil_energized, f"attempt {attempt}: energized while tripped"
        contactor.interlock.rearm(tokens[0])
        await contactor.verify_open()
