"""Why this run boots (B01, B11): the reason a BootNotification gives.

A reset the CSMS asked for is noted in the state database before the restart
(:func:`note`), so the next run's BootNotification says RemoteReset; without a note the
station was powered up (PowerUp). The note is taken once (:func:`take`): a power cut
after that boot is a PowerUp again.
"""

from __future__ import annotations

from ocpp.v201.enums import BootReasonEnumType

from controller.storage import Storage

NAMESPACE = "ocpp201.boot"
_KEY = "reason"


async def note(storage: Storage, reason: BootReasonEnumType) -> None:
    """The next boot's reason; durable when this returns."""
    await storage.save_setting(NAMESPACE, _KEY, reason.value)


async def take(storage: Storage) -> BootReasonEnumType:
    """This boot's reason (PowerUp without a note); the note is cleared."""
    noted = (await storage.load_settings(NAMESPACE)).get(_KEY, "")
    if not noted:
        return BootReasonEnumType.power_up
    await storage.save_setting(NAMESPACE, _KEY, "")
    try:
        return BootReasonEnumType(noted)
    except ValueError:
        return BootReasonEnumType.unknown
