"""Connector availability that survives a restart (OCPP 1.6 §5.2 ChangeAvailability: the
Inoperative and Operative states are "persistent states": a reset, a crash or a power cut
does not change them).

Stored per connector in the state database's settings table (namespace ``availability``,
key the connector id, value ``Inoperative``); an Operative connector has no row. The app
reads it before the supervisor builds its connector state machines, so an Inoperative
connector starts Unavailable and never offers itself in between. A database that cannot be
read or written is logged and the charge point goes on with what it knows (every connector
Operative at start): the database failure itself faults the charger (controller.recovery).
Loop thread only.
"""

from __future__ import annotations

import logging

from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)

NAMESPACE = "availability"
INOPERATIVE = "Inoperative"
OPERATIVE = "Operative"


async def load_inoperative(storage: Storage) -> frozenset[int]:
    """The connectors a ChangeAvailability left Inoperative in an earlier run."""
    try:
        stored = await storage.load_settings(NAMESPACE)
    except StorageError as exc:
        log.error("connector availability not read (%s): every connector Operative", exc)
        return frozenset()
    return frozenset(int(k) for k, v in stored.items() if k.isdigit() and v == INOPERATIVE)


class AvailabilityStore:
    """Writes each connector's availability as ChangeAvailability sets it."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def save(self, connector_id: int, available: bool) -> None:
        """Durable when this returns (or logged when the database fails)."""
        try:
            await self._storage.save_setting(
                NAMESPACE, str(connector_id), OPERATIVE if available else INOPERATIVE
            )
        except StorageError as exc:
            log.error("connector %d availability not stored: %s", connector_id, exc)
