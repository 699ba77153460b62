"""Waiting for a condition, never for a fixed time.

A test that sleeps for a guessed time and then asserts is slow when the guess is generous and
flaky when the machine is loaded (CI, or six suites on two cores). :func:`until` polls the
condition instead: it returns as soon as the condition holds and fails, naming what it waited
for, only when the condition stays false for ``timeout_s``. The timeout is a bound on a hang,
not a specification: a generous one costs nothing while the tests pass.

Where timing *is* the point ("nothing happens for 2 s", a debounce that must not fire early),
a test sleeps on purpose and says in a comment why its bound holds on a loaded machine.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

#: Long enough for a loaded 2-core machine running the suite on two workers beside other
#: work; only a failing test waits it out.
DEFAULT_TIMEOUT_S = 20.0


def _describe(predicate: Callable[[], object], what: str | None) -> str:
    """``what``, or the predicate's own source line (a lambda reads as its condition)."""
    if what is not None:
        return what
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):  # a builtin or a callable object: no source to show
        return repr(predicate)


async def until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    what: str | None = None,
    interval_s: float = 0.01,
) -> T:
    """Poll ``predicate`` on the running loop every ``interval_s`` until it returns something
    true, and return that; fail with an AssertionError naming ``what`` (or the predicate's
    source) when it stays false for ``timeout_s``. For conditions another task or thread
    (simulated hardware, a driver thread, a socket) makes true. ``predicate`` may be a
    coroutine function (a database read, say)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    async def check() -> T:
        result = predicate()
        if inspect.isawaitable(result):
            return await result
        return cast(T, result)

    while not (result := await check()):
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {_describe(predicate, what)}"
            )
        await asyncio.sleep(interval_s)
    return result


def until_sync(
    predicate: Callable[[], T],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    what: str | None = None,
    interval_s: float = 0.01,
) -> T:
    """:func:`until` for a test without an event loop (a subprocess, a thread): blocks the
    calling thread between polls."""
    deadline = time.monotonic() + timeout_s
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {_describe(predicate, what)}"
            )
        time.sleep(interval_s)
    return result
