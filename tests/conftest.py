"""Fixtures every test shares.

Every test must clean up after itself: a simulated device left running, a pseudo-terminal
left open or a driver thread left behind would leak into the next test and, on a charger,
into the next session. The autouse fixture fails any test that leaves a thread or a file
descriptor behind (threads get a second to finish, as daemon helpers wind down).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import settings

# `make mutate` runs these tests against code behind mutmut's trampolines on a loaded machine:
# a per-example deadline there times the tool, not the charger ([tool.mutmut] selects it).
settings.register_profile("mutmut", deadline=None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run only the test files named in ``PICHARGE_MUTATE_TESTS`` (space-separated), if set.

    `make mutate` and `make mutate-supervisor` share [tool.mutmut]'s one test selection (mutmut
    reads a single configuration), but each wants only its own tests: the await harness
    reaches the connector machine too, and run against every connector mutant it would triple
    `make mutate`. The Makefile names each run's files; unset, nothing is deselected.
    """
    wanted = os.environ.get("PICHARGE_MUTATE_TESTS")
    if not wanted:
        return
    files = set(wanted.split())
    keep = [item for item in items if item.nodeid.split("::")[0] in files]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def _fds() -> set[str]:
    return {p.name for p in Path("/proc/self/fd").iterdir()}


@pytest.fixture(autouse=True)
def no_leaked_threads_or_fds() -> Iterator[None]:
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    for thread in set(threading.enumerate()) - threads:
        thread.join(timeout=1.0)
    leaked = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
    deadline = time.monotonic() + 1.0
    while (extra := _fds() - fds) and time.monotonic() < deadline:
        time.sleep(0.01)  # a closing transport may release its fd a moment later
    assert not extra, f"file descriptors left open: {sorted(extra)}"


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """A fresh gpiozero MockFactory: the simulated Pi header for one test."""
    mock = MockFactory()
    yield mock
    mock.reset()
    mock.close()


# Shared fixtures live in tests/support (see its __init__); loading them here gives every test
# module the same fixtures without importing them: the loopback CSMS (`csms`, `make_csms`),
# the OCPP 1.6 adapter rigs (`make_rig`, `make_fw_rig`, `make_diag_rig`), the card reader
# tests' `no_leaks` and `root_logger` (for tests that configure logging).
pytest_plugins = [
    "tests.support.csms",
    "tests.support.ocpp16_adapter",
    "tests.support.firmware_rig",
    "tests.support.diagnostics",
    "tests.support.card_reader",
    "tests.support.mqtt_broker",
    "tests.support.logs",
]
