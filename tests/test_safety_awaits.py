"""Hazards at every await of the contactor path: the coil never energizes for a session the
connector state machine has given up.

The machine decides synchronously, but closing is async (controller/supervisor.py
``_close_contactor``): the transaction's record is written, the RCM is self-tested, the
contactor driver waits out the open settle time, and only then is the coil energized. At
each of those awaits the world may change: a fault, an unplug, a stop from the CSMS, a limit
below 6 A. These tests run the whole controller on simulated hardware (as ``picharge run
--sim`` does), hold the close path at one await through a gate wrapped around the real
object it awaits (the journal, the RCM driver, the contactor driver: each gate only waits,
then calls the real thing), inject one hazard there, wait until the machine has reacted,
release the gate, and read the simulated coil pin: every level the driver put on it is
recorded by the simulated contactor, so even a momentary energizing is seen. A case with no
hazard (and one whose hazard is legitimately deferred: an availability change is Scheduled
during a transaction) shows that the same harness does see the coil energize.

The same for the open path (the driver's ``verify_open`` held while the car asks again) and
for the recovery at start (held while the car of an interrupted transaction asks for energy).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.app import ChargePointApp, RunOptions
from controller.config import parse_config
from controller.connector_types import ConnectorStatus
from controller.domain import Answer
from controller.outbox import Outbox
from controller.supervisor import ConnectorRuntime, Supervisor
from drivers.contactor import GpioContactor
from drivers.errors import FaultKind
from hw_sim.charger import SimConnector

#: Each session taps a card of its own: a reader reports a card once while it stays in the
#: field, and the sessions here follow each other faster than a card is taken away.
CARDS = [f"04A1B2{n:02X}" for n in range(256)]
WAIT_S = 5.0  # conditions are awaited, never slept for; this only bounds a hung case


class Gate:
    """Holds every caller of one awaited call until :meth:`release` (then passes through)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.reached = asyncio.Event()
        self._open = asyncio.Event()
        self.armed = True

    def wrap(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.reached.set()
                await self._open.wait()
            return await call(*args, **kwargs)

        return gated

    async def wait_reached(self) -> None:
        async with asyncio.timeout(WAIT_S):
            await self.reached.wait()

    def release(self) -> None:
        self.armed = False
        self._open.set()


class Charger:
    """The controller and its simulated hardware, with the coil's every level recorded."""

    def __init__(self, app: ChargePointApp) -> None:
        self.app = app
        self.coil: list[bool] = []  # every change of the simulated coil, in order
        self._cards = iter(CARDS)
        self.sim_c1.contactor.add_coil_listener(self.coil.append)

    @property
    def supervisor(self) -> Supervisor:
        assert self.app.supervisor is not None
        return self.app.supervisor

    @property
    def rt(self) -> ConnectorRuntime:
        return self.supervisor.connectors[1]

    @property
    def sim_c1(self) -> SimConnector:
        connector: SimConnector = self.app.sim.connector(1)
        return connector

    async def act(self, action: str, **extra: Any) -> None:
        await self.app.sim.handle({"action": action, "connector": 1, **extra})

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT_S):
                while not predicate():  # noqa: ASYNC110 - polls simulated physics
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def energized_since(self, mark: int) -> bool:
        return True in self.coil[mark:] or self.sim_c1.contactor.coil_energized

    async def close_tasks_done(self) -> None:
        """Wait for every close and verify task of connector 1 (each is one await path)."""
        names = {"close-1", "verify-open-1", "rcm-test-1"}
        tasks = [t for t in asyncio.all_tasks() if t.get_name() in names]
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def start_session(self) -> None:
        await self.act("plug")
        await self.act("charge")
        # The reader polls fast only while a car waits for a card (Preparing).
        await self.until(
            lambda: self.rt.machine.status.status is ConnectorStatus.PREPARING, "Preparing"
        )
        await self.tap()

    async def tap(self) -> None:
        await self.act("tap", uid=next(self._cards))

    async def idle(self) -> None:
        """Back to a free connector with the car gone and no fault: ready for the next case."""
        for kind in FaultKind:
            self.supervisor.set_fault(kind, False)
        self.supervisor.set_current_limit(1, None)
        await self.act("fault", fault="clear")
        await self.act("unplug")
        await self.supervisor.change_availability(1, True)
        await self.until(
            lambda: (
                self.rt.machine.status.status is ConnectorStatus.AVAILABLE
                and not self.sim_c1.contactor.coil_energized
            ),
            "the connector to be Available again",
        )


@contextlib.asynccontextmanager
async def running(state_dir: Path, *, crash: bool = False) -> AsyncIterator[Charger]:
    config = dataclasses.replace(
        parse_config({"authorization": {"cards": CARDS}}), state_dir=state_dir
    )
    app = ChargePointApp(config, RunOptions(sim=True, sim_speed=30.0))
    stop = asyncio.Event()
    await app.start()
    task = asyncio.create_task(app.run(stop))
    try:
        charger = Charger(app)
        await charger.until(
            lambda: (
                app.supervisor is not None
                and charger.rt.machine.status.status is ConnectorStatus.AVAILABLE
            ),
            "the connector to be Available",
        )
        yield charger
    finally:
        try:
            if crash:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            else:
                stop.set()
                await asyncio.wait_for(task, 10)
        finally:
            await app.close()


# --- the hazards ----------------------------------------------------------------------------

Hazard = Callable[[Charger], Awaitable[None]]


def _fault(kind: FaultKind) -> Hazard:
    async def inject(c: Charger) -> None:
        c.supervisor.set_fault(kind, True)

    return inject


def _sim(action: str, **extra: Any) -> Hazard:
    async def inject(c: Charger) -> None:
        await c.act(action, **extra)

    return inject


async def _csms_stop(c: Charger) -> None:
    tx = c.rt.transaction
    assert tx is not None
    assert await c.supervisor.remote_stop(tx)


async def _limit_below_6_a(c: Charger) -> None:
    c.supervisor.set_current_limit(1, 5.0)


#: Hazards that must keep the coil off. The fault kinds go in as the drivers report them
#: (``set_fault``, the entry the storage watch uses); the physical ones through the simulator.
#: A welded contactor latches until restart, so it comes last.
HAZARDS: dict[str, Hazard] = {
    **{
        f"fault {kind.value}": _fault(kind)
        for kind in FaultKind
        if kind is not FaultKind.CONTACTOR_WELDED
    },
    "RCD trip on the RCM pin": _sim("fault", fault="rcd"),
    "CP short (E) on the pilot": _sim("fault", fault="cp"),
    "car unplugged": _sim("unplug"),
    "car back to B": _sim("pause"),
    "CSMS RemoteStop": _csms_stop,
    "limit below 6 A": _limit_below_6_a,
    f"fault {FaultKind.CONTACTOR_WELDED.value}": _fault(FaultKind.CONTACTOR_WELDED),
}


async def _machine_gave_up(c: Charger) -> None:
    await c.until(lambda: not c.rt.machine.contactor_closed, "the machine to open")


# --- the close path -------------------------------------------------------------------------

Install = Callable[[Charger, Gate], Iterator[None]]


@contextlib.contextmanager
def _gate_record(c: Charger, gate: Gate) -> Iterator[None]:
    """The transaction record's write (journal.committed) held before it is awaited."""
    journal = c.supervisor.journal
    assert journal is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(journal, "committed", gate.wrap(journal.committed))
        yield


@contextlib.contextmanager
def _gate_rcm_test(c: Charger, gate: Gate) -> Iterator[None]:
    """The RCM self-test (the driver call) held: the close waits for its verdict."""
    rcm = c.rt.hw.rcm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rcm, "self_test", gate.wrap(rcm.self_test))
        yield


@contextlib.contextmanager
def _gate_contactor_settle(c: Charger, gate: Gate) -> Iterator[None]:
    """Inside the driver's close(): the wait for the open settle time, before energizing."""
    contactor = c.rt.hw.contactor
    assert isinstance(contactor, GpioContactor)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(contactor, "_settle_after_open", gate.wrap(contactor._settle_after_open))
        yield


CLOSE_AWAITS: dict[str, Install] = {
    "record write": _gate_record,
    "RCM self-test": _gate_rcm_test,
    "contactor settle": _gate_contactor_settle,
}


async def _one_close_case(c: Charger, install: Install, hazard: Hazard | None) -> bool:
    """Hold the close path at one await, inject ``hazard``; True if the coil energized."""
    gate = Gate("close")
    with install(c, gate):
        await c.start_session()
        await gate.wait_reached()
        await c.until(lambda: c.rt.machine.contactor_closed, "the machine to decide to close")
        mark = len(c.coil)
        assert not c.energized_since(mark)
        if hazard is not None:
            await hazard(c)
            await _machine_gave_up(c)
        gate.release()
        await c.close_tasks_done()
        energized = c.energized_since(mark)
    return energized


@pytest.mark.parametrize("await_point", list(CLOSE_AWAITS))
async def test_no_hazard_at_an_await_of_the_close_path_lets_the_coil_energize(
    tmp_path: Path, await_point: str
) -> None:
    install = CLOSE_AWAITS[await_point]
    energized: list[str] = []
    async with running(tmp_path / "state") as c:
        # The harness sees a close: without a hazard the session charges.
        assert await _one_close_case(c, install, None), "no close seen without a hazard"
        await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "the contacts to close")
        await c.idle()
        for name, hazard in HAZARDS.items():
            if await _one_close_case(c, install, hazard):
                energized.append(name)
            if name != f"fault {FaultKind.CONTACTOR_WELDED.value}":
                await c.idle()
    assert not energized, f"the coil energized at the {await_point} await after: {energized}"


async def test_availability_change_at_the_record_await_is_scheduled_and_the_session_charges(
    tmp_path: Path,
) -> None:
    """Inoperative during a transaction waits for its end (OCPP: Scheduled): the close goes
    on, and the connector becomes Unavailable only once the session ended."""
    async with running(tmp_path / "state") as c:
        gate = Gate("record")
        with _gate_record(c, gate):
            await c.start_session()
            await gate.wait_reached()
            await c.until(lambda: c.rt.machine.contactor_closed, "the decision to close")
            assert await c.supervisor.change_availability(1, False) is Answer.SCHEDULED
            gate.release()
            await c.close_tasks_done()
        await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "the contacts to close")
        await c.act("unplug")
        await c.until(
            lambda: (
                c.rt.machine.status.status is ConnectorStatus.UNAVAILABLE
                and not c.sim_c1.contactor.coil_energized
            ),
            "Unavailable with the coil off",
        )


async def test_rcm_self_test_failure_at_its_await_keeps_the_coil_off_until_a_test_passes(
    tmp_path: Path,
) -> None:
    async with running(tmp_path / "state") as c:
        gate = Gate("rcm")
        with _gate_rcm_test(c, gate):
            await c.start_session()
            await gate.wait_reached()
            mark = len(c.coil)
            c.sim_c1.rcm.set_selftest_broken(True)  # the RCM no longer answers TEST
            gate.release()
            await c.until(
                lambda: c.rt.machine.status.fault is FaultKind.RCD_SELFTEST,
                "Faulted with RCD_SELFTEST",
            )
            await c.close_tasks_done()
            assert not c.energized_since(mark)
        # The card again: a new attempt tests again; still broken, still no close.
        await c.tap()
        await c.until(lambda: c.rt.rcm_test is not None and c.rt.rcm_test.done(), "the retest")
        await c.close_tasks_done()
        assert c.rt.machine.status.fault is FaultKind.RCD_SELFTEST
        assert not c.energized_since(mark)
        # Repaired: the next attempt passes the test and the session charges.
        c.sim_c1.rcm.set_selftest_broken(False)
        await c.tap()
        await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "the contacts to close")


# --- the open path --------------------------------------------------------------------------


async def test_hazard_while_the_open_is_verified_keeps_the_coil_off_when_the_car_asks_again(
    tmp_path: Path,
) -> None:
    """C -> B opens the contactor and verifies it after the settle time; the car asks again
    (B -> C) meanwhile, so a close waits for the same settle time; a hazard then must win."""
    failures: list[str] = []
    async with running(tmp_path / "state") as c:
        for name, hazard in HAZARDS.items():
            if name == "car back to B":
                continue  # the car is in B already at that moment
            await c.start_session()
            await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "charging")
            contactor = c.rt.hw.contactor
            assert isinstance(contactor, GpioContactor)
            verify, settle = Gate("verify"), Gate("settle")
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(contactor, "verify_open", verify.wrap(contactor.verify_open))
                mp.setattr(
                    contactor, "_settle_after_open", settle.wrap(contactor._settle_after_open)
                )
                await c.act("pause")
                await verify.wait_reached()
                assert not c.sim_c1.contactor.coil_energized
                mark = len(c.coil)
                await c.act("charge")
                await settle.wait_reached()  # the new close waits to energize
                await hazard(c)
                await _machine_gave_up(c)
                verify.release()
                settle.release()
                await c.close_tasks_done()
                if c.energized_since(mark):
                    failures.append(name)
            if name != f"fault {FaultKind.CONTACTOR_WELDED.value}":
                await c.idle()
    assert not failures, f"the coil energized after the open for: {failures}"


# --- the recovery at start ------------------------------------------------------------------


async def test_recovery_at_start_never_energizes_for_the_interrupted_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash while charging; at the restart, recovery is held at its outbox await while
    the car still asks for energy: the coil stays off through recovery and after it, until
    a card starts a new session."""
    state = tmp_path / "state"
    async with running(state, crash=True) as c:
        await c.start_session()
        await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "charging")
    gate = Gate("recovery")
    monkeypatch.setattr(Outbox, "told_by", gate.wrap(Outbox.told_by))  # what recovery awaits
    config = dataclasses.replace(parse_config({"authorization": {"cards": CARDS}}), state_dir=state)
    app = ChargePointApp(config, RunOptions(sim=True, sim_speed=30.0))
    starting = asyncio.create_task(app.start())
    stop = asyncio.Event()
    run: asyncio.Task[Any] | None = None
    try:
        await gate.wait_reached()
        c = Charger(app)  # records the coil from here on, through recovery
        await c.act("plug")
        await c.act("charge")
        gate.release()
        await starting
        run = asyncio.create_task(app.run(stop))
        await c.until(
            lambda: (
                app.supervisor is not None
                and c.rt.machine.cp_state is not None
                and c.rt.machine.status.status is ConnectorStatus.PREPARING
            ),
            "the car seen, waiting for a card",
        )
        await c.close_tasks_done()
        assert not c.energized_since(0), "the coil energized for the interrupted session"
        assert c.rt.transaction is None
        await c.tap()  # a new session: now it closes
        await c.until(lambda: c.sim_c1.contactor.main_contacts_closed, "the new session")
    finally:
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        try:
            if run is not None:
                stop.set()
                await asyncio.wait_for(run, 10)
        finally:
            await app.close()
