"""Durability end to end: the controller (ChargePointApp on simulated hardware) against the
loopback CSMS, through a crash, a stalled, full or unwritable database, a corrupt one and a
state directory that cannot be used.

A crash here is the run task cancelled with no shutdown (no StopTransaction is made) and the
app closed; tests/test_fault_trials_kill.py does the real thing with SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from controller.app import ChargePointApp
from controller.connector_types import StopReason
from controller.domain import ResetKind
from controller.local_csms import LocalCsms
from controller.storage import DB_NAME
from tests.support.csms import ACCEPTED_TAG
from tests.support.sim_app import AppRig, controller
from tests.support.wait import until

CP_ID = "cp-durable"
KEYS = {
    "HeartbeatInterval": 300,
    "MeterValueSampleInterval": 1,
    "ClockAlignedDataInterval": 0,
    "WebSocketPingInterval": 0,
}
SPEED = 20.0
READING_WH = 3 * 16 * 230 * SPEED / 3600  # the energy of one 1 s meter reading


class RecoveryRig(AppRig):
    async def charging(self) -> dict[str, Any]:
        """Plug in a car that asks for energy, tap, and wait for the current to flow."""
        mark = self.mark()
        await self.act("plug")
        await self.act("charge")
        await self.act("tap", uid=ACCEPTED_TAG)
        start = await self.csms.wait_for("StartTransaction", after=mark)
        await until(lambda: self.hw("contactor_closed") and self.hw("ev_current_a") > 10)
        return start


@contextlib.asynccontextmanager
async def running(
    csms: LocalCsms,
    state_dir: Path,
    before_run: Callable[[ChargePointApp], Awaitable[None]] | None = None,
    *,
    crash: bool = False,
) -> AsyncIterator[RecoveryRig]:
    """The controller running on ``state_dir``, handed over once it booted and told the CSMS
    how connector 1 is; ``crash`` ends it without stopping its transactions."""
    workdir = state_dir.parent
    if not workdir.is_dir():  # the state directory's parent is broken on purpose
        workdir = workdir.parent
    async with controller(
        csms,
        workdir,
        base_keys=KEYS,
        cp_id=CP_ID,
        speed=SPEED,
        state_dir=state_dir,
        before_run=before_run,
        ready_status=None,
        crash=crash,
        rig_type=RecoveryRig,
    ) as rig:
        yield rig


async def test_a_crash_while_charging_is_closed_with_power_loss_at_the_register(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with running(csms, state, crash=True) as rig:
        start = await rig.charging()
        await until(lambda: rig.hw("energy_wh") >= start["meterStart"] + 1.0)
    assert rig.sent("StopTransaction") == []
    register: list[float] = []

    async def car_still_charging(app: ChargePointApp) -> None:
        # The car stayed plugged in and keeps asking for energy through the restart.
        await app.sim.handle({"action": "plug", "connector": 1})
        await app.sim.handle({"action": "charge", "connector": 1})
        register.append(app.sim.connector(1).meter.energy_wh)

    mark = len(csms.received)
    async with running(csms, state, car_still_charging) as rig:
        stop = await csms.wait_for("StopTransaction", after=mark)
        [record] = csms.transactions.values()
        assert stop["transactionId"] == record.transaction_id
        assert stop["reason"] == "PowerLoss"
        assert stop["meterStop"] == round(register[0])
        assert start["meterStart"] < stop["meterStop"]
        # The connector is judged afresh from the hardware: a car in C, nobody authorized.
        await rig.status("Preparing", mark)
        # nothing may happen here; the charger acts within tens of ms, so 0.5 s is a wide margin on
        # a loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("ev_plugged") is True and rig.hw("contactor_closed") is False
        assert rig.sent("StartTransaction", mark) == []


async def test_a_crash_after_a_reset_was_accepted_is_a_reboot(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with running(csms, state, crash=True) as rig:
        await rig.charging()
        assert rig.app.durability is not None
        # the reset was noted, and the power went before its StopTransaction was recorded
        rig.app.durability.journal.note_shutdown(StopReason.SOFT_RESET)
        # the noted shutdown (one small write) reaches the disk before the crash; 0.2 s is ample
        await asyncio.sleep(0.2)
    mark = len(csms.received)
    async with running(csms, state):
        stop = await csms.wait_for("StopTransaction", after=mark)
        assert stop["reason"] == "Reboot"


async def test_the_contactor_waits_until_the_transaction_is_on_disk(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with running(csms, tmp_path / "state") as rig:
        assert rig.app.durability is not None and rig.app.storage is not None
        journal = rig.app.durability.journal
        storage = rig.app.storage
        release = threading.Event()
        started = journal.started

        def slow_card(tx: Any) -> None:
            storage.submit(lambda conn: release.wait(5))  # the SD card stalls right now
            started(tx)

        journal.started = slow_card  # type: ignore[method-assign]
        mark = len(csms.received)
        await rig.act("plug")
        await rig.act("charge")
        await rig.act("tap", uid=ACCEPTED_TAG)
        await until(
            lambda: rig.app.supervisor is not None and bool(rig.app.supervisor.view(1).transaction)
        )
        # no energy and no message before the record: nothing may happen here; the charger acts
        # within tens of ms, so 0.5 s is a wide margin on a loaded machine, and a late wake-up only
        # widens the window
        await asyncio.sleep(0.5)
        assert rig.hw("contactor_closed") is False  # no energy before the record
        assert rig.sent("StartTransaction", mark) == []  # nor a message before its insert
        release.set()
        await csms.wait_for("StartTransaction", after=mark)
        await until(lambda: rig.hw("contactor_closed"))


async def test_an_unwritable_database_faults_with_internal_error_and_recovers(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    async with running(csms, state) as rig:
        assert rig.app.durability is not None and rig.app.storage is not None
        rig.app.durability.watch.probe_interval_s = 0.2
        await rig.charging()
        mark = len(csms.received)
        await rig.app.storage.run(lambda conn: conn.execute("PRAGMA query_only = 1"))
        faulted = await rig.status("Faulted", mark, errorCode="InternalError")
        assert faulted["info"] == "internal_error"
        await until(lambda: not rig.hw("contactor_closed"), 3.0)
        await asyncio.sleep(1.2)  # meter values made meanwhile are kept in memory and sent
        await rig.app.storage.run(lambda conn: conn.execute("PRAGMA query_only = 0"))
        await rig.status("Charging", mark)
        await until(lambda: rig.hw("contactor_closed"), 5.0)
        assert rig.sent("StopTransaction") == []
        # written afresh: a power cut now would still close this transaction
        [entry] = await rig.app.durability.journal.open_transactions()
        assert entry.local_id == rig.app.supervisor.view(1).transaction.local_id  # type: ignore[union-attr]
        await rig.act("unplug")
        await csms.wait_for("StopTransaction", after=mark)
        await until(lambda: rig.app.adapter.queued == 0)


async def test_a_full_disk_faults_with_internal_error_and_no_session_starts(
    csms: LocalCsms, tmp_path: Path
) -> None:
    async with running(csms, tmp_path / "state") as rig:
        assert rig.app.storage is not None
        mark = len(csms.received)

        def fill_the_disk(conn: Any) -> None:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")
            conn.execute("CREATE TABLE IF NOT EXISTS ballast (x BLOB)")

        with contextlib.suppress(Exception):
            await rig.app.storage.run(fill_the_disk)
        with contextlib.suppress(Exception):
            for _ in range(200):
                await rig.app.storage.run(
                    lambda conn: conn.execute("INSERT INTO ballast VALUES (zeroblob(4000))")
                )
        await rig.status("Faulted", mark, errorCode="InternalError")
        await rig.act("plug")
        await rig.act("charge")
        await rig.act("tap", uid=ACCEPTED_TAG)
        # nothing may happen here; the charger acts within tens of ms, so 1 s is a wide margin on a
        # loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(1.0)
        assert rig.sent("StartTransaction", mark) == []
        assert rig.hw("contactor_closed") is False


async def test_a_corrupt_database_is_kept_and_the_charger_still_works(
    csms: LocalCsms, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / DB_NAME).write_bytes(b"\x00garbage" * 512)
    async with running(csms, state) as rig:
        assert rig.app.state_problem is not None
        kept = rig.app.state_problem.kept_as
        assert kept is not None and kept.read_bytes().startswith(b"\x00garbage")
        await rig.status("Available")
        await rig.charging()


async def test_an_unusable_state_directory_faults_and_restarts_once_it_works(
    csms: LocalCsms, tmp_path: Path
) -> None:
    blocker = tmp_path / "mnt"
    blocker.write_text("the state partition is not mounted")

    async def probe_often(app: ChargePointApp) -> None:
        assert app.durability is not None
        app.durability.watch.probe_interval_s = 0.2

    async with running(csms, blocker / "state", probe_often) as rig:
        faulted = await rig.status("Faulted", errorCode="InternalError")
        assert faulted["connectorId"] == 1
        await rig.act("plug")
        await rig.act("charge")
        await rig.act("tap", uid=ACCEPTED_TAG)
        # nothing may happen here; the charger acts within tens of ms, so 1 s is a wide margin on a
        # loaded machine, and a late wake-up only widens the window
        await asyncio.sleep(1.0)
        assert rig.sent("StartTransaction") == [] and rig.hw("contactor_closed") is False
        blocker.unlink()  # the partition is back
        assert await asyncio.wait_for(asyncio.shield(rig.task), 5) is ResetKind.SOFT
