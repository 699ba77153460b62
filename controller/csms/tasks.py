"""Background tasks a CSMS adapter starts and must not lose: tracked, logged, cancelled.

:meth:`TaskSet.spawn` is the one :data:`~controller.csms.calls.Spawn` every service gets. A
task that fails is logged with its traceback (nobody awaits it); :meth:`TaskSet.cancel_all`
ends what is left when the adapter stops. Loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """The adapter's fire-and-forget tasks."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        """Run ``coro`` as a tracked task named ``name``."""
        self.track(asyncio.create_task(coro, name=name))

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` until it ends; log it if it fails."""
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def cancel_all(self) -> None:
        """Cancel every tracked task and wait until they have ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
