"""The clock-aligned values kept for a transaction's Ended event (AlignedDataCtrlr.
TxEndedInterval with TxEndedMeasurands), kept in the state database as they are taken.

They exist nowhere else: a power cut that lost them would make the Ended event that
:mod:`controller.recovery` sends after the restart (stoppedReason PowerLoss) carry the
register at the end but none of the values the CSMS asked to receive with it. So each
value is one row of the ``settings`` table (namespace :data:`NAMESPACE`, key
``<transactionId>:<number>``, value the meterValue as JSON), inserted when it is kept, and
a transaction's rows are deleted in the storage thread's queue behind the outbox insert of
its Ended event (one FIFO: the Ended is on disk before its values leave). Beyond
:data:`MAX_ENDED_VALUES` every other value is dropped, in memory and on disk, so a long
session's Ended stays bounded. (The ``settings`` table rather than a table of its own: one
row per value needs nothing more, and no schema migration.)

Loaded once before the supervisor runs (:meth:`EndedValues.load`, by the factory), so the
recovery's Ended finds them; what no Ended used by the time the link runs belonged to a
transaction whose Ended was queued already and is deleted (:meth:`EndedValues.forget_stale`).
Loop thread only; writes go to the storage thread in order.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping

from controller.ocpp201.meter_values import WireDict
from controller.storage import Storage

log = logging.getLogger(__name__)

NAMESPACE = "ocpp201.tx-ended-values"
#: Clock-aligned values kept per transaction for its Ended; beyond it every other one goes.
MAX_ENDED_VALUES = 240


class EndedValues:
    """Each running transaction's TxEnded values, by transactionId, mirrored on disk."""

    def __init__(self, storage: Storage, stored: Mapping[str, str] | None = None) -> None:
        self._storage = storage
        #: transactionId -> [(number, value)] in the order taken.
        self._kept: dict[str, list[tuple[int, WireDict]]] = {}
        self._next: dict[str, int] = {}
        for key, text in sorted((stored or {}).items()):
            local_id, _, number = key.rpartition(":")
            try:
                value = json.loads(text)
                self._kept.setdefault(local_id, []).append((int(number), value))
            except ValueError:
                log.error("TxEnded value %s unreadable: dropped", key)
        for local_id, kept in self._kept.items():
            kept.sort(key=lambda item: item[0])
            self._next[local_id] = kept[-1][0] + 1
        self._restored = set(self._kept)

    @classmethod
    async def load(cls, storage: Storage) -> EndedValues:
        return cls(storage, await storage.load_settings(NAMESPACE))

    def keep(self, local_id: str, value: WireDict) -> None:
        """Keep ``value`` for the Ended of transaction ``local_id`` (stored in the
        background, one row)."""
        number = self._next.get(local_id, 0)
        self._next[local_id] = number + 1
        kept = self._kept.setdefault(local_id, [])
        kept.append((number, value))
        row = (NAMESPACE, _key(local_id, number), json.dumps(value, separators=(",", ":")))
        self._storage.submit(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO settings (namespace, key, value) VALUES (?, ?, ?)", row
            )
        )
        if len(kept) > MAX_ENDED_VALUES:
            dropped = [_key(local_id, number) for number, _ in kept[1::2]]
            kept[:] = kept[::2]
            self._delete(dropped)

    def values(self, local_id: str) -> list[WireDict]:
        """The values kept for ``local_id``, oldest first (still kept)."""
        return [value for _, value in self._kept.get(local_id, [])]

    def forget(self, local_id: str) -> None:
        """Drop what was kept for ``local_id``: call once its Ended is queued (the rows are
        deleted after the outbox insert, in the storage thread's order)."""
        kept = self._kept.pop(local_id, [])
        self._next.pop(local_id, None)
        self._restored.discard(local_id)
        self._delete([_key(local_id, number) for number, _ in kept])

    def forget_stale(self) -> None:
        """Delete what the last run kept and no Ended took after the restart (its
        transaction's Ended had been queued before the power cut)."""
        for local_id in list(self._restored):
            log.info("TxEnded values of %s: its Ended was sent already, dropped", local_id)
            self.forget(local_id)

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM settings WHERE namespace = ? AND key = ?",
                [(NAMESPACE, key) for key in keys],
            )

        self._storage.submit(job)


def _key(local_id: str, number: int) -> str:
    """Zero-padded so the stored keys sort in the order taken."""
    return f"{local_id}:{number:08d}"
