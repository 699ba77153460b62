"""Why this run boots (B01, B11): the reason a BootNotification gives.

A reset the CSMS asked for is noted in the state database before the restart
(:func:`note`), so the next run's BootNotification says RemoteReset; without a note the
station was powered up (PowerUp). The note is taken once (:func:`take`): a power cut
after that boot is a PowerUp again. A firmware update that installed a version and asked
for the restart into it (its stored job is past installing, until the verdict after this
boot's registration) makes the reason FirmwareUpdate.
"""

from __future__ import annotations

from ocpp.v201.enums import BootReasonEnumType

from controller.csms.firmware_job import JobStore, Stage
from controller.storage import Storage

NAMESPACE = "ocpp201.boot"
_KEY = "reason"


async def note(storage: Storage, reason: BootReasonEnumType) -> None:
    """The next boot's reason; durable when this returns."""
    await storage.save_setting(NAMESPACE, _KEY, reason.value)


async def take(storage: Storage) -> BootReasonEnumType:
    """This boot's reason (PowerUp without a note); the note is cleared."""
    noted = (await storage.load_settings(NAMESPACE)).get(_KEY, "")
    if noted:
        await storage.save_setting(NAMESPACE, _KEY, "")
    job, _ = await JobStore(storage).load()
    if job is not None and job.stage is not Stage.SCHEDULED:
        return BootReasonEnumType.firmware_update
    if not noted:
        return BootReasonEnumType.power_up
    try:
        return BootReasonEnumType(noted)
    except ValueError:
        return BootReasonEnumType.unknown
