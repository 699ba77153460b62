"""The home user's current limit (:attr:`~controller.limits.LimitSource.USER`) kept across
restarts.

A limit set on the page or over MQTT is a promise to the house (an undersized cable, a
weak circuit, a neighbour's fuse): a power cut or an update must not lift it. This listener
of the supervisor's broadcast writes the USER source of each connector to the state
database when a :class:`~controller.events.LimitsChanged` shows it changed (a row per
connector, removed when the limit is cleared), and :meth:`UserLimits.restore` sets the
stored ones again at start, before the supervisor runs. The page and MQTT stay as they
are: they set the limit on the supervisor, and this module only remembers it. A
:class:`~controller.events.Resync` (events were dropped) is answered from the snapshot.
Loop thread only.
"""

from __future__ import annotations

import logging

from controller.events import LimitsChanged, Resync, SupervisorEvent
from controller.limits import LimitSource
from controller.storage import Storage, StorageError
from controller.supervisor import Supervisor

log = logging.getLogger(__name__)

NAMESPACE = "user_limit"  # key: the connector id; value: the limit in A


class UserLimits:
    """Remembers each connector's USER limit (see the module docstring)."""

    def __init__(self, storage: Storage, supervisor: Supervisor) -> None:
        self._storage = storage
        self._supervisor = supervisor
        self._saved: dict[int, float] = {}

    async def restore(self) -> None:
        """Set the limits an earlier run stored; a row for a connector that no longer exists
        (or unreadable) is logged and removed."""
        try:
            stored = await self._storage.load_settings(NAMESPACE)
        except StorageError as exc:
            log.error("the user's current limits not read (%s): none applies", exc)
            return
        for key, value in stored.items():
            try:
                connector_id, current_a = int(key), float(value)
                self._supervisor.set_limit(connector_id, LimitSource.USER, current_a)
            except (LookupError, ValueError):
                log.warning("stored user limit %r=%r does not apply here: removed", key, value)
                await self._forget(key)
                continue
            self._saved[connector_id] = current_a
            log.info("connector %d: the user's limit of %.1f A again", connector_id, current_a)

    async def on_event(self, event: SupervisorEvent) -> None:
        if isinstance(event, LimitsChanged):
            await self._keep(event.connector_id, event.limits.get(LimitSource.USER))
        elif isinstance(event, Resync):
            for view in self._supervisor.snapshot().connectors:
                await self._keep(view.id, dict(view.limits).get(LimitSource.USER))

    async def _keep(self, connector_id: int, current_a: float | None) -> None:
        if self._saved.get(connector_id) == current_a:
            return
        try:
            if current_a is None:
                await self._storage.delete_setting(NAMESPACE, str(connector_id))
                self._saved.pop(connector_id, None)
            else:
                await self._storage.save_setting(NAMESPACE, str(connector_id), repr(current_a))
                self._saved[connector_id] = current_a
        except StorageError as exc:  # the storage watch reports the database; try next change
            log.error("connector %d: the user's limit not stored (%s)", connector_id, exc)

    async def _forget(self, key: str) -> None:
        try:
            await self._storage.delete_setting(NAMESPACE, key)
        except StorageError as exc:
            log.error("stored user limit %r not removed (%s)", key, exc)
