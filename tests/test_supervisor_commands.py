"""The supervisor carries out each command of the connector machine: what reaches the drivers
and the CSMS link.

The machine decides and the supervisor acts (controller/supervisor.py ``_execute``): the
contactor opened or closed (and the CP sensor sampling fast while it is closed, so a car
leaving is seen at once), status changes and transaction stops told to the CSMS, a card that
cannot start a session dropped (and logged: nothing else hears of it), a reservation's end
told to the CSMS; and the close path's own outcomes (controller/supervisor.py
``_close_contactor``, ``_verify_open``): no coil before the session's record is on disk, a
contactor that does not close or is welded at its open faults the connector.

These tests run a Supervisor in process on the simulated hardware (the drivers a Pi uses, on
hw_sim) with a link that records what the supervisor tells the CSMS, and watch the drivers
through the seams they offer (the simulated coil, a call-through recorder around the sensor
and contactor methods). They are fast on purpose: `make mutate-supervisor` runs them against
every mutant of the contactor path.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from controller.config import parse_config
from controller.connector_types import (
    ConnectorSettings,
    ConnectorStatus,
    ReservationEnd,
    StopReason,
)
from controller.domain import Answer, AuthResult, AuthStatus, MeterSample, Transaction
from controller.journal import TransactionJournal
from controller.storage import Storage
from controller.supervisor import ConnectorRuntime, Supervisor
from drivers.errors import FaultKind
from hw_sim.charger import SimCharger
from tests.support.sim_hardware import simulated_hardware
from tests.support.wait import until

CARD = "04A1B2C3"
OTHER_CARD = "04D4E5F6"


class RecordingLink:
    """A CSMS link that accepts every card and records what the supervisor tells it."""

    def __init__(self) -> None:
        self.statuses: list[tuple[int, ConnectorStatus, FaultKind | None]] = []
        self.started: list[Transaction] = []
        self.stopped: list[Transaction] = []
        self.reservations_ended: list[tuple[int, ReservationEnd]] = []
        self.authorized_in: list[str] = []  # the name of the task each authorize() ran in
        self.parents: dict[str, str] = {}  # the parent id the CSMS gives a card, if any

    async def authorize(self, id_tag: str) -> AuthResult:
        task = asyncio.current_task()
        self.authorized_in.append(task.get_name() if task is not None else "")
        return AuthResult(AuthStatus.ACCEPTED, self.parents.get(id_tag))

    def status_changed(
        self, connector_id: int, status: ConnectorStatus, fault: FaultKind | None
    ) -> None:
        self.statuses.append((connector_id, status, fault))

    def transaction_started(self, tx: Transaction) -> None:
        self.started.append(tx)

    def transaction_stopped(self, tx: Transaction) -> None:
        self.stopped.append(tx)

    def meter_sampled(self, sample: MeterSample, tx: Transaction | None) -> None:
        pass

    def reservation_ended(self, reservation_id: int, reason: ReservationEnd) -> None:
        self.reservations_ended.append((reservation_id, reason))

    @property
    def last_status(self) -> ConnectorStatus | None:
        return self.statuses[-1][1] if self.statuses else None


class Charger:
    """The supervisor of one simulated connector, with its driver calls recorded."""

    def __init__(self, sim: SimCharger, supervisor: Supervisor, link: RecordingLink) -> None:
        self.sim = sim
        self.supervisor = supervisor
        self.link = link
        self.coil: list[bool] = []  # every level of the simulated coil, in order
        self.vigilant: list[object] = []  # every set_vigilant() argument, in order
        self.tasks: list[tuple[str, str]] = []  # (contactor call, name of the task it ran in)
        sim.connector(1).contactor.add_coil_listener(self.coil.append)
        sensor = self.rt.hw.pilot.sensor
        contactor = self.rt.hw.contactor
        set_vigilant = sensor.set_vigilant

        def recorded_set_vigilant(vigilant: bool) -> None:
            self.vigilant.append(vigilant)
            set_vigilant(vigilant)

        sensor.set_vigilant = recorded_set_vigilant  # type: ignore[method-assign]
        contactor.close = self._named("close", contactor.close)  # type: ignore[method-assign]
        contactor.verify_open = self._named(  # type: ignore[method-assign]
            "verify_open", contactor.verify_open
        )

    def _named(
        self, call: str, real: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        async def recorded() -> None:
            task = asyncio.current_task()
            self.tasks.append((call, task.get_name() if task is not None else ""))
            await real()

        return recorded

    @property
    def rt(self) -> ConnectorRuntime:
        return self.supervisor.connectors[1]

    @property
    def coil_energized(self) -> bool:
        return bool(self.sim.connector(1).contactor.coil_energized)

    async def act(self, action: str, **extra: Any) -> None:
        await self.sim.handle({"action": action, "connector": 1, **extra})

    async def status(self, status: ConnectorStatus) -> None:
        await until(lambda: self.link.last_status is status, what=f"{status} at the CSMS")

    async def charging(self) -> None:
        """Plug in, ask for energy, tap the card: until the coil is energized."""
        await self.act("plug")
        await self.act("charge")
        await self.status(ConnectorStatus.PREPARING)
        await self.act("tap", uid=CARD)
        await self.status(ConnectorStatus.CHARGING)
        await until(lambda: self.coil_energized, what="the coil energized")


@contextlib.asynccontextmanager
async def charger(state_dir: Path) -> AsyncIterator[Charger]:
    config = parse_config({})
    async with simulated_hardware(config, state_dir, speed=30.0) as (sim, hardware, config):
        settings = {
            c.id: ConnectorSettings(max_current_a=c.max_current_a) for c in config.connectors
        }
        supervisor = Supervisor(hardware, settings)
        link = RecordingLink()
        supervisor.link = link
        c = Charger(sim, supervisor, link)
        task = asyncio.create_task(supervisor.run(), name="supervisor")
        try:
            await c.status(ConnectorStatus.AVAILABLE)
            yield c
        finally:
            supervisor.request_stop()
            await asyncio.wait_for(task, 10)


async def test_while_the_contactor_is_closed_the_cp_is_sampled_fast_and_only_then(
    tmp_path: Path,
) -> None:
    async with charger(tmp_path) as c:
        assert c.vigilant == [False]  # the contactor is opened at start: normal sampling
        await c.charging()
        assert c.vigilant == [False, True]  # set before the close task even starts
        await c.act("pause")  # C->B: the car stops drawing, the contactor opens
        await until(lambda: not c.coil_energized, what="the coil off")
        assert c.vigilant == [False, True, False]
        await c.status(ConnectorStatus.SUSPENDED_EV)


async def test_the_close_and_its_verify_run_in_tasks_named_for_their_connector(
    tmp_path: Path,
) -> None:
    # Task names are how a stuck or failed close is told apart in the logs ("task close-1
    # failed") and how the await harness finds the contactor path's tasks.
    async with charger(tmp_path) as c:
        await c.charging()
        c.supervisor.set_fault(FaultKind.OVERTEMPERATURE, True)
        assert not c.coil_energized  # open() is synchronous: off before set_fault returns
        await until(lambda: ("verify_open", "verify-open-1") in c.tasks)
        assert ("close", "close-1") in c.tasks
        assert {name for call, name in c.tasks} <= {"close-1", "verify-open-1"}


async def test_status_changes_and_the_transaction_stop_reach_the_csms(tmp_path: Path) -> None:
    async with charger(tmp_path) as c:
        await c.charging()
        statuses = [s for _, s, _ in c.link.statuses]
        assert statuses[:2] == [ConnectorStatus.AVAILABLE, ConnectorStatus.PREPARING]
        assert statuses[-1] is ConnectorStatus.CHARGING
        assert {i for i, _, _ in c.link.statuses} == {1}
        assert [tx.id_tag for tx in c.link.started] == [CARD]
        assert c.link.stopped == []
        c.supervisor.set_fault(FaultKind.OVERTEMPERATURE, True)
        await c.status(ConnectorStatus.FAULTED)
        assert c.link.statuses[-1] == (1, ConnectorStatus.FAULTED, FaultKind.OVERTEMPERATURE)
        await c.act("unplug")
        await until(lambda: len(c.link.stopped) == 1, what="the transaction stopped")
        stopped = c.link.stopped[0]
        assert stopped.local_id == c.link.started[0].local_id
        assert stopped.stop_reason is StopReason.EV_DISCONNECTED
        assert c.rt.transaction is None


async def test_a_card_that_cannot_take_over_a_running_session_is_dropped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with charger(tmp_path) as c:
        await c.charging()
        caplog.set_level(logging.INFO, logger="controller.supervisor")
        await c.act("tap", uid=OTHER_CARD)  # no parent id: it cannot stop another's session
        await until(
            lambda: any("dropped" in r.getMessage() for r in caplog.records),
            what="the card dropped",
        )
        dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert [r.getMessage() for r in dropped] == [
            f"connector 1: id {OTHER_CARD} dropped: not_owner"
        ]
        assert dropped[0].levelno == logging.INFO
        assert getattr(dropped[0], "connector", None) == 1
        assert c.coil_energized and c.link.stopped == []  # the session charges on


async def test_a_cancelled_reservation_is_reported_ended_to_the_csms(tmp_path: Path) -> None:
    async with charger(tmp_path) as c:
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert await c.supervisor.reserve(1, CARD, None, expiry, 7) is Answer.ACCEPTED
        await c.status(ConnectorStatus.RESERVED)
        assert c.link.reservations_ended == []
        assert await c.supervisor.cancel_reservation(7) is Answer.ACCEPTED
        assert c.link.reservations_ended == [(7, ReservationEnd.CANCELLED)]
        await c.status(ConnectorStatus.AVAILABLE)


async def test_the_offer_shown_is_the_pwm_offer_and_nothing_below_6_a(tmp_path: Path) -> None:
    async with charger(tmp_path) as c:
        await c.charging()
        assert c.supervisor.view(1).offered_a == 32.0
        c.supervisor.set_current_limit(1, 6.0)  # the lowest offer a car may draw on
        assert c.supervisor.view(1).offered_a == 6.0
        c.supervisor.set_current_limit(1, 5.0)  # below 6 A: the PWM is off, nothing offered
        assert c.supervisor.view(1).offered_a == 0.0
        assert not c.coil_energized
        c.supervisor.set_current_limit(1, None)
        await until(lambda: c.coil_energized, what="the coil energized again")
        assert c.supervisor.view(1).offered_a == 32.0
        await c.act("fault", fault="rcd")  # a charger-side hazard: state F, nothing offered
        await c.status(ConnectorStatus.FAULTED)
        assert c.supervisor.view(1).offered_a == 0.0
        assert not c.coil_energized


async def test_a_contactor_that_does_not_close_faults_the_connector_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The supervisor's errors of this run only, from its start: what else reaches the
    # capture depends on the root logger's level, which a test before may have left lower.
    caplog.set_level(logging.ERROR, logger="controller.supervisor")
    async with charger(tmp_path) as c:
        await c.act("fault", fault="close-fail")  # energized, the contacts stay open
        await c.act("plug")
        await c.act("charge")
        await c.status(ConnectorStatus.PREPARING)
        await c.act("tap", uid=CARD)
        await c.status(ConnectorStatus.FAULTED)
        assert c.link.statuses[-1] == (
            1,
            ConnectorStatus.FAULTED,
            FaultKind.CONTACTOR_FAILED_CLOSE,
        )
        assert not c.coil_energized
        logged = [r for r in caplog.records if r.name == "controller.supervisor"]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert logged[0].levelno == logging.ERROR
        assert logged[0].getMessage().startswith("connector 1: ")
        assert "close" in logged[0].getMessage()
        assert getattr(logged[0], "connector", None) == 1


async def test_a_contactor_welded_when_it_opens_faults_the_connector_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="controller.supervisor")  # as above
    async with charger(tmp_path) as c:
        await c.charging()
        await c.act("fault", fault="weld")  # the contacts stick closed at the next open
        await c.act("pause")  # C->B: the contactor opens, its verify finds the weld
        await c.status(ConnectorStatus.FAULTED)
        assert c.link.statuses[-1] == (1, ConnectorStatus.FAULTED, FaultKind.CONTACTOR_WELDED)
        logged = [r for r in caplog.records if r.name == "controller.supervisor"]
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert logged[0].levelno == logging.CRITICAL
        assert logged[0].getMessage().startswith("connector 1: ")
        assert "weld" in logged[0].getMessage()
        assert getattr(logged[0], "connector", None) == 1


async def test_a_card_is_authorized_in_a_task_named_for_its_connector(tmp_path: Path) -> None:
    async with charger(tmp_path) as c:
        await c.charging()
        assert c.link.authorized_in == ["authorize-1"]


async def test_a_session_whose_start_record_is_refused_never_energizes_the_coil(
    tmp_path: Path,
) -> None:
    # No energy flows before the session is on disk: the close awaits the record of this
    # very transaction, and a record the database refuses keeps the coil off.
    storage = await Storage.open(tmp_path)
    try:
        await storage.run(
            lambda conn: conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON transactions"
                " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        )
        async with charger(tmp_path) as c:
            c.supervisor.journal = TransactionJournal(storage)
            await c.act("plug")
            await c.act("charge")
            await c.status(ConnectorStatus.PREPARING)
            await c.act("tap", uid=CARD)
            # The machine closes (and spawns the close task) in one call: then wait it out.
            await until(lambda: c.rt.machine.contactor_closed, what="the machine closing")
            await until(
                lambda: not any(t.get_name() == "close-1" for t in asyncio.all_tasks()),
                what="the close task done",
            )
            assert True not in c.coil
            assert not c.coil_energized
    finally:
        await storage.close()


async def test_a_card_stop_reaches_the_csms_with_the_card_that_stopped_it(tmp_path: Path) -> None:
    async with charger(tmp_path) as c:
        c.link.parents = {CARD: "FAMILY", OTHER_CARD: "FAMILY"}
        await c.charging()
        await c.act("tap", uid=OTHER_CARD)  # same parent: it may stop this session
        await until(lambda: len(c.link.stopped) == 1, what="the transaction stopped")
        stopped = c.link.stopped[0]
        assert stopped.stop_reason is StopReason.LOCAL
        assert stopped.stop_id_tag == OTHER_CARD  # StopTransaction's idTag: who stopped it
        assert not c.coil_energized
