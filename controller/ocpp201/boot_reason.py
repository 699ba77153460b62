"""Why this run boots (B01, B11): the reason a BootNotification gives.

A reset the CSMS asked for is noted in the state database before the restart
(:func:`note`), so the next run's BootNotification says RemoteReset; without a note the
reason is how the last run ended (:mod:`controller.run_marker`): Watchdog when the process
died while the machine kept running (a crash, or systemd's watchdog restarting a stalled
controller), else PowerUp (a power cut, a stop, a new state directory). The note is taken
once (:func:`take`): a power cut after that boot is a PowerUp again. A firmware update
that installed a version and asked for the restart into it (its stored job is past
installing, until the verdict after this boot's registration) makes the reason
FirmwareUpdate.
"""

from __future__ import annotations

from ocpp.v201.enums import BootReasonEnumType

from controller import run_marker
from controller.csms.firmware_job import JobStore, Stage
from controller.storage import Storage

NAMESPACE = "ocpp201.boot"
_KEY = "reason"


async def note(storage: Storage, reason: BootReasonEnumType) -> None:
    """The next boot's reason; durable when this returns."""
    await storage.save_setting(NAMESPACE, _KEY, reason.value)


async def take(storage: Storage) -> BootReasonEnumType:
    """This boot's reason (without a note: Watchdog after a crash, else PowerUp); the note
    is cleared."""
    noted = (await storage.load_settings(NAMESPACE)).get(_KEY, "")
    if noted:
        await storage.save_setting(NAMESPACE, _KEY, "")
    job, _ = await JobStore(storage).load()
    if job is not None and job.stage is not Stage.SCHEDULED:
        return BootReasonEnumType.firmware_update
    if not noted:
        if await run_marker.previous(storage) is run_marker.LastRun.CRASHED:
            return BootReasonEnumType.watchdog
        return BootReasonEnumType.power_up
    try:
        return BootReasonEnumType(noted)
    except ValueError:
        return BootReasonEnumType.unknown
