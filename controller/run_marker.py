"""How the last run of the controller ended, as the state directory records it.

At start (:func:`begin`) the state database notes that a run is under way, with the
operating system's boot id (``/proc/sys/kernel/random/boot_id``); a run that ends on
purpose (a stop or a reset the controller carried out) notes so at its end (:func:`end`).
The next start reads the note:

- no note: the state directory is new (:attr:`LastRun.FIRST`);
- ended on purpose: :attr:`LastRun.CLEAN`;
- still "running" with the same boot id: the process died while the machine kept running
  (a crash, or systemd's watchdog killed a stalled controller and restarted it):
  :attr:`LastRun.CRASHED`;
- still "running" with another boot id, or no boot id to compare: the machine itself went
  down (a power cut, a kernel reboot): :attr:`LastRun.POWER_LOST`.

OCPP 2.0.1's BootNotification says Watchdog after a crash (:mod:`controller.ocpp201.
boot_reason`). The verdict is kept under :data:`PREVIOUS` for the whole run, so every part
built after :func:`begin` reads the same answer (:func:`previous`). Loop thread only.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from pathlib import Path

from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

NAMESPACE = "run"
_STATE, PREVIOUS = "state", "previous"
_CLEAN = "clean"
_RUNNING = "running:"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


class LastRun(StrEnum):
    FIRST = "first"
    CLEAN = "clean"
    CRASHED = "crashed"
    POWER_LOST = "power_lost"


def boot_id(path: Path = BOOT_ID) -> str:
    """This operating system boot's id ("" where the system has none)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return ""


def judge(note: str | None, this_boot: str) -> LastRun:
    """How the run that left ``note`` ended, seen from the OS boot ``this_boot``."""
    if not note:
        return LastRun.FIRST
    if note == _CLEAN:
        return LastRun.CLEAN
    noted_boot = note.removeprefix(_RUNNING)
    if this_boot and noted_boot == this_boot:
        return LastRun.CRASHED
    return LastRun.POWER_LOST


async def begin(storage: Storage, this_boot: str | None = None) -> LastRun:
    """Judge the last run, then note this one as running; the verdict (also stored)."""
    this_boot = boot_id() if this_boot is None else this_boot
    notes = await storage.load_settings(NAMESPACE)
    verdict = judge(notes.get(_STATE), this_boot)
    try:
        await storage.save_setting(NAMESPACE, PREVIOUS, verdict.value)
        await storage.save_setting(NAMESPACE, _STATE, f"{_RUNNING}{this_boot}")
    except StorageError as exc:  # an unusable database: the run goes on, unrecorded
        log.error("run marker not recorded: %s", exc)
    if verdict is LastRun.CRASHED:
        log.warning("the last run of the controller ended without stopping (crash or watchdog)")
    return verdict


async def end(storage: Storage) -> None:
    """This run ends on purpose (a stop, a reset); logged, not raised, when unrecorded."""
    try:
        await storage.save_setting(NAMESPACE, _STATE, _CLEAN)
    except StorageError as exc:
        log.error("clean end of the run not recorded: %s", exc)


async def previous(storage: Storage) -> LastRun:
    """The verdict :func:`begin` reached on this run's start (FIRST before any)."""
    value = (await storage.load_settings(NAMESPACE)).get(PREVIOUS, "")
    try:
        return LastRun(value)
    except ValueError:
        return LastRun.FIRST
