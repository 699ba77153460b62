"""What the card reader tests share: a stricter leak check for the simulated readers (their
``sim-`` threads and pseudo-terminals) and a harness that runs a reader and records what it
reports. ``no_leaks`` is a fixture (registered in ``tests/conftest.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from drivers.base import DriverEvent


def _pty_fds() -> Counter[str]:
    targets: Counter[str] = Counter()
    for fd in Path("/proc/self/fd").iterdir():
        with suppress(OSError):  # the fd the listing itself used is gone by now
            target = str(fd.readlink())
            if target.startswith(("/dev/pts", "/dev/ptmx")):
                targets[target] += 1
    return targets


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a simulator thread or a pty open behind it."""
    before = _pty_fds()
    yield
    assert [t.name for t in threading.enumerate() if t.name.startswith("sim-")] == []
    assert _pty_fds() == before


class Harness:
    """Runs a reader's ``run`` as a task and records what it reports (and on which thread
    each card was reported)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.cards: list[str] = []
        self.card_threads: set[str] = set()
        self.events: list[DriverEvent] = []
        self.task = asyncio.create_task(reader.run(self._card, self.events.append))

    def _card(self, uid: str) -> None:
        self.card_threads.add(threading.current_thread().name)
        self.cards.append(uid)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]

    async def stop(self) -> None:
        assert not self.task.done(), "the reader stopped by itself"
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task
