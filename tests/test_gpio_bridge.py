"""The loop-side wait for pin levels that the contactor and the RCM drivers share."""

from __future__ import annotations

import asyncio

import pytest

from drivers.gpio_bridge import wait_until


async def test_a_cancel_that_meets_the_wakeup_is_not_lost() -> None:
    """A contactor close or an RCM self-test cancelled just as the pin it waits for moves
    must stop there: a lost cancel lets the cancelled operation run on (Python 3.11's
    ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the same
    loop turn as that result)."""
    wakeup = asyncio.Event()
    level = False
    waiting = asyncio.create_task(wait_until(lambda: level, wakeup, timeout_s=5))
    await asyncio.sleep(0)  # the task now waits on the event
    level = True
    wakeup.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_returns_once_the_level_holds() -> None:
    wakeup = asyncio.Event()
    level = False
    waiting = asyncio.create_task(wait_until(lambda: level, wakeup, timeout_s=5))
    await asyncio.sleep(0)
    level = True
    wakeup.set()
    assert await waiting is True


async def test_gives_the_level_at_the_deadline() -> None:
    # A wakeup without the level changing does not end the wait early; the deadline does.
    wakeup = asyncio.Event()
    wakeup.set()
    assert await wait_until(lambda: False, wakeup, timeout_s=0.05) is False
