"""The simulated charger on an event loop of its own, on the thread ``sim-ev-meter``.

On a Pi the meter is another device: its Modbus server does not run on the controller's
event loop. Run as ``picharge run --sim``, the simulator's loop-bound work (every car's
physics step, 20 times a second, and the meters' Modbus servers) therefore gets its own
loop on its own named thread, so ``top -H`` shows what the simulated hardware costs apart
from the controller, and the controller's loop is not slowed by a device it does not have.

:class:`SimChargerOnThread` is a :class:`~hw_sim.charger.SimCharger` whose ``start``, ``stop``
and ``handle`` run on that loop; the caller awaits them from its own loop as before. Its
other members (``status``, ``connector``...) are read from any thread, as the drivers'
threads already read the simulated hardware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from drivers.seams import HardwareSeams
from drivers.threads import NamedThread, named_executor
from hw_sim.charger import SimCharger

T = TypeVar("T")

SIM_LOOP_THREAD = "sim-ev-meter"
SIM_EXECUTOR = "sim-io"


class LoopThread:
    """An asyncio loop running on a named thread of its own until :meth:`close`."""

    def __init__(self, name: str, executor_name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(named_executor(executor_name))
        self._thread = NamedThread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.loop.run_forever()
        finally:  # here: asyncio refuses to run this loop on a thread that runs another
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on this loop; await it from another loop (cancelling it cancels it)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        """Stop the loop and join the thread, which releases the loop; idempotent. Call it
        from another thread, once nothing runs on the loop any more."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()


class SimChargerOnThread(SimCharger):
    """A :class:`SimCharger` whose loop-bound devices run on the ``sim-ev-meter`` thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._thread: LoopThread | None = None

    async def start(self) -> tuple[HardwareSeams, dict[str, Any], dict[str, Any]]:
        self._thread = LoopThread(SIM_LOOP_THREAD, SIM_EXECUTOR)
        return await self._thread.run(SimCharger.start(self))

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:  # never started (or stopped): release what __init__ made
            await SimCharger.stop(self)
            return
        try:
            await thread.run(SimCharger.stop(self))
        finally:
            thread.close()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._thread is None:
            return await SimCharger.handle(self, request)
        return await self._thread.run(SimCharger.handle(self, request))
