"""The outbox: transaction messages committed to the state database before they are sent.

Operators bill from what reaches the CSMS, so a StartTransaction, StopTransaction or
transaction MeterValues must survive the link being down and the controller dying. The
protocol adapter's queue (:mod:`controller.csms.queue`) keeps its messages in memory, in
order, and mirrors every change here:

- :meth:`Outbox.append` inserts a message when it is queued; the queue sends nothing before
  that insert has committed (``synchronous=FULL``: it is on the SD card).
- :meth:`Outbox.delete` removes it once the CSMS answered (or the queue gave up on it), in
  the same SQLite transaction as the change it implies to the map from our transaction ids
  to the CSMS's (recorded when a StartTransaction is confirmed, forgotten with the
  StopTransaction). A crash between the answer and the delete sends the message again after
  the restart: delivery is at least once, never at most once.
- :meth:`Outbox.load` gives a new run what an earlier run left behind, oldest first.

Rows keep their order in ``seq`` (AUTOINCREMENT, so never reused). Each row also records the
run (``boot``) that queued it, so a run that queued messages before it loaded the outbox
does not load its own rows twice. Bodies are JSON; the outbox does not interpret them and
knows no OCPP version: ``kind`` is the adapter's name for the message and
``ends_transaction`` marks the message that closes a transaction (power-loss recovery asks
:meth:`Outbox.told` whether the CSMS already has, or will get, one).

Threads: every method is called on the loop thread. Writes are submitted to the storage
thread at once (:meth:`controller.storage.Storage.submit`) and run in call order, which is
the order the queue changed in. ``OutboxEntry.seq`` is written only by storage-thread jobs
and read only by later ones, so a delete always sees the row's current number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.storage import Storage, StorageError

log = logging.getLogger(__name__)


class Told(StrEnum):
    """What the CSMS has been, or will be, told about a transaction."""

    NOTHING = "nothing"  # no message queued and no CSMS id known: the CSMS never hears of it
    STARTED = "started"  # its start is queued or confirmed, nothing ends it yet
    ENDED = "ended"  # a message that ends it is queued


@dataclass(eq=False)
class OutboxEntry:
    """One stored message. ``seq`` is None until its insert ran (storage thread only)."""

    local_id: str
    kind: str
    body: Mapping[str, Any]
    ends_transaction: bool
    seq: int | None = field(default=None)


class Outbox:
    """The ``outbox`` and ``outbox_ids`` tables of the state database (see module docstring)."""

    def __init__(self, storage: Storage, boot: str | None = None) -> None:
        self._storage = storage
        self.boot = boot or uuid.uuid4().hex

    # --- writes, submitted in call order --------------------------------------------------

    def append(self, entry: OutboxEntry) -> asyncio.Future[None]:
        """Insert ``entry`` after every row queued so far; the future says it committed."""
        body = json.dumps(dict(entry.body), separators=(",", ":"))
        boot = self.boot

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                cursor = conn.execute(
                    "INSERT INTO outbox (local_id, kind, body, ends_transaction, boot)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (entry.local_id, entry.kind, body, int(entry.ends_transaction), boot),
                )
            entry.seq = cursor.lastrowid

        return self._submit(job)

    def delete(
        self,
        entry: OutboxEntry,
        *,
        set_id: tuple[str, int] | None = None,
        forget_id: str | None = None,
    ) -> asyncio.Future[None]:
        """Remove ``entry`` and, in the same transaction, record (``set_id``: our id, the
        CSMS's) or forget (``forget_id``) a transaction id."""

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if entry.seq is not None:
                    conn.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
                if set_id is not None:
                    conn.execute(
                        "INSERT INTO outbox_ids (local_id, csms_id) VALUES (?, ?)"
                        " ON CONFLICT (local_id) DO UPDATE SET csms_id = excluded.csms_id",
                        set_id,
                    )
                if forget_id is not None:
                    conn.execute("DELETE FROM outbox_ids WHERE local_id = ?", (forget_id,))

        return self._submit(job)

    def discard(self, entries: Sequence[OutboxEntry]) -> asyncio.Future[None]:
        """Remove several entries in one transaction (the queue thinning its MeterValues)."""

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "DELETE FROM outbox WHERE seq = ?",
                    [(e.seq,) for e in entries if e.seq is not None],
                )

        return self._submit(job)

    def rewrite(
        self, entries: Sequence[OutboxEntry], ids: Mapping[str, int]
    ) -> asyncio.Future[None]:
        """Replace the whole outbox with ``entries`` (in order) and the id map with ``ids``:
        after the database failed and works again, memory is the truth."""
        rows = [(e, json.dumps(dict(e.body), separators=(",", ":"))) for e in entries]
        id_rows = list(ids.items())
        boot = self.boot

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM outbox")
                conn.execute("DELETE FROM outbox_ids")
                conn.executemany(
                    "INSERT INTO outbox_ids (local_id, csms_id) VALUES (?, ?)", id_rows
                )
                seqs = []
                for entry, body in rows:
                    cursor = conn.execute(
                        "INSERT INTO outbox (local_id, kind, body, ends_transaction, boot)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (entry.local_id, entry.kind, body, int(entry.ends_transaction), boot),
                    )
                    seqs.append(cursor.lastrowid)
            for (entry, _), seq in zip(rows, seqs, strict=True):
                entry.seq = seq

        return self._submit(job)

    def _submit(self, job: Callable[[sqlite3.Connection], None]) -> asyncio.Future[None]:
        """Submit ``job``; a closed store gives a failed future instead of raising, so the
        queue keeps the message in memory and sends it all the same."""
        try:
            return self._storage.submit(job)
        except StorageError as exc:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            failed.exception()  # retrieved: a write nobody awaits must not warn
            return failed

    # --- reads ------------------------------------------------------------------------------

    async def load(self) -> tuple[list[OutboxEntry], dict[str, int]]:
        """What earlier runs queued and did not finish (oldest first), and the id map.

        A row whose body is not valid JSON is logged and left out (and deleted): it cannot
        be sent, and keeping it would block every message behind it.
        """
        boot = self.boot

        def job(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            rows = conn.execute(
                "SELECT seq, local_id, kind, body, ends_transaction FROM outbox"
                " WHERE boot != ? ORDER BY seq",
                (boot,),
            ).fetchall()
            ids = conn.execute("SELECT local_id, csms_id FROM outbox_ids").fetchall()
            return rows, ids

        rows, id_rows = await self._storage.run(job)
        entries: list[OutboxEntry] = []
        broken: list[OutboxEntry] = []
        for seq, local_id, kind, body, ends in rows:
            entry = OutboxEntry(str(local_id), str(kind), {}, bool(ends), int(seq))
            try:
                parsed = json.loads(body)
                if not isinstance(parsed, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                log.error(
                    "outbox row %d (%s of %s) unreadable: %s; dropped", seq, kind, local_id, exc
                )
                broken.append(entry)
                continue
            entry.body = parsed
            entries.append(entry)
        if broken:
            await self.discard(broken)
        if entries:
            log.info("outbox: %d message(s) from before the restart to send", len(entries))
        return entries, {str(k): int(v) for k, v in id_rows}

    async def told(self, local_id: str) -> Told:
        """Whether the CSMS has heard (or will hear) of transaction ``local_id``, and whether
        a message ending it is already queued."""

        def job(conn: sqlite3.Connection) -> Told:
            ended = conn.execute(
                "SELECT 1 FROM outbox WHERE local_id = ? AND ends_transaction = 1 LIMIT 1",
                (local_id,),
            ).fetchone()
            if ended is not None:
                return Told.ENDED
            known = conn.execute(
                "SELECT 1 FROM outbox WHERE local_id = ?"
                " UNION ALL SELECT 1 FROM outbox_ids WHERE local_id = ? LIMIT 1",
                (local_id, local_id),
            ).fetchone()
            return Told.STARTED if known is not None else Told.NOTHING

        return await self._storage.run(job)

    async def size(self) -> int:
        """How many messages the outbox holds (for tests and the bench)."""
        row = await self._storage.run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        )
        return int(row[0])


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK when the body or the COMMIT fails (a full disk
    fails at COMMIT and leaves the transaction open)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
