"""How often the PN532 is polled: fast while a car waits for a card, slowly otherwise.

The reader polls on a thread of its own; the loop only hears of cards and events. Each poll
is an InListPassiveTarget the simulated chip receives, so the chip's command log counts them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable

import pytest

from drivers.base import PollingCardReader
from drivers.errors import ConfigurationError
from drivers.rfid_pn532 import Pn532Reader, from_config
from drivers.rfid_pn532_frame import CMD_IN_LIST_PASSIVE_TARGET
from drivers.rfid_pn532_transport import Pn532UartTransport
from drivers.seams import HardwareSeams
from hw_sim.rfid import SimPn532Uart
from tests.support.card_reader import Harness
from tests.support.wait import until

pytestmark = pytest.mark.timing  # bounds on wall-clock time: run alone, not beside other tests


class Running(Harness):
    """A PN532 reader running on its simulated chip."""

    def __init__(self, sim: SimPn532Uart, reader: Pn532Reader) -> None:
        super().__init__(reader)
        self.sim = sim

    def polls(self) -> int:
        return self.sim.chip.received_commands.count(CMD_IN_LIST_PASSIVE_TARGET)

    async def polls_per_s(self, window_s: float = 0.4) -> float:
        before = self.polls()
        # a rate: polls counted over a window
        await asyncio.sleep(window_s)
        return (self.polls() - before) / window_s


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Running]]:
    running: list[Running] = []

    def _start(**options: float) -> Running:
        sim = SimPn532Uart()
        reader = Pn532Reader(Pn532UartTransport(sim.port_path), **options)
        running.append(Running(sim, reader))
        return running[-1]

    yield _start
    for r in running:
        if not r.task.done():
            await r.stop()
        r.reader.close()
        r.sim.close()


async def test_reader_polls_fast_only_while_a_card_is_expected(
    start: Callable[..., Running],
) -> None:
    r = start(poll_interval_s=0.1, expected_poll_interval_s=0.01)
    assert isinstance(r.reader, PollingCardReader)
    await until(lambda: r.polls() > 0)
    assert await r.polls_per_s() <= 15  # every 100 ms
    r.reader.expect_card(True)
    assert await r.polls_per_s() >= 40  # every 10 ms plus the poll itself
    r.reader.expect_card(False)
    # the reader falls back to its idle rate, then the rate is measured
    await asyncio.sleep(0.15)
    assert await r.polls_per_s() <= 15


async def test_expecting_a_card_ends_the_idle_pause_at_once(
    start: Callable[..., Running],
) -> None:
    r = start(poll_interval_s=5.0, expected_poll_interval_s=0.02)
    await until(lambda: r.polls() == 1)
    await asyncio.sleep(0.05)  # in the 5 s pause now
    r.sim.present(bytes.fromhex("04A1B2C3"), hold_s=0.5)
    tapped = time.monotonic()
    r.reader.expect_card(True)
    await until(lambda: r.cards == ["04A1B2C3"], timeout_s=0.5)
    assert time.monotonic() - tapped < 0.2


async def test_polling_runs_on_its_own_thread_and_cards_reach_the_loop_thread(
    start: Callable[..., Running],
) -> None:
    r = start(poll_interval_s=0.02)
    await until(lambda: r.polls() > 0)
    assert [t for t in threading.enumerate() if t.name == "rfid-pn532"]
    r.sim.present(bytes.fromhex("04A1B2C3"), hold_s=0.2)
    await until(lambda: bool(r.cards))
    assert r.card_threads == {threading.main_thread().name}
    await r.stop()
    assert not [t for t in threading.enumerate() if t.name == "rfid-pn532"]


async def test_a_silent_chip_does_not_delay_cancellation_beyond_one_response_timeout(
    start: Callable[..., Running],
) -> None:
    r = start(poll_interval_s=0.02, response_timeout_s=0.2)
    await until(lambda: r.polls() > 0)
    r.sim.set_silent(True)
    await asyncio.sleep(0.05)  # a poll is waiting for its answer now
    started = time.monotonic()
    await r.stop()
    assert time.monotonic() - started < 0.4


def test_expected_poll_interval_comes_from_configuration() -> None:
    reader = from_config({"type": "pn532_uart"}, HardwareSeams())
    assert (reader.poll_interval_s, reader.expected_poll_interval_s) == (0.2, 0.03)
    reader = from_config({"type": "pn532_uart", "expected_poll_interval_s": 0.05}, HardwareSeams())
    assert reader.expected_poll_interval_s == 0.05
    for bad in (0, -1, "fast", 11):
        with pytest.raises(ConfigurationError) as caught:
            from_config({"type": "pn532_uart", "expected_poll_interval_s": bad}, HardwareSeams())
        assert caught.value.key == "rfid.expected_poll_interval_s"
