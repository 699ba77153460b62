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
does not load its own rows twice. Bodies are JSON; the outbox does not interpret them:
``kind`` is the adapter's name for the message and ``ends_transaction`` marks the message
that closes a transaction (power-loss recovery asks :meth:`Outbox.told` whether the CSMS
already has, or will get, one).

Each row and each ``outbox_ids`` row also records the ``protocol`` (the OCPP version, "1.6"
or "2.0.1") that queued it, because a charger switched from one version to the other keeps
its state directory and a message of one version means nothing to the other's CSMS (issue
14). An :class:`Outbox` is opened for one protocol and loads, thins, rewrites and deletes
only that protocol's rows; the other version's rows stay untouched, in order, until that
version runs again (:meth:`Outbox.waiting_elsewhere` counts them, :func:`export_rows` reads
them for manual billing). An ``outbox_ids`` row says the CSMS has a transaction's start: with
the CSMS's id under 1.6, without one (NULL) under 2.0.1, whose transactions carry our id.

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
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.storage import DB_NAME, Storage, StorageError

if TYPE_CHECKING:
    from controller.domain import Transaction

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


#: Builds, for one protocol, the message that ends ``tx`` (a power-loss recovery of a
#: transaction whose start only that protocol's CSMS knows); the composition root hands
#: recovery one per version (:data:`controller.csms.registry.END_MESSAGES`).
EndMessage = Callable[["Transaction", Storage], Awaitable[OutboxEntry]]


class Outbox:
    """The ``outbox`` and ``outbox_ids`` tables of the state database (see module docstring),
    as seen by the queue of ``protocol`` (the OCPP version string)."""

    def __init__(self, storage: Storage, boot: str | None = None, *, protocol: str) -> None:
        self._storage = storage
        self.boot = boot or uuid.uuid4().hex
        self.protocol = protocol

    @property
    def storage(self) -> Storage:
        return self._storage

    # --- writes, submitted in call order --------------------------------------------------

    def append(self, entry: OutboxEntry) -> asyncio.Future[None]:
        """Insert ``entry`` after every row queued so far; the future says it committed."""
        body = json.dumps(dict(entry.body), separators=(",", ":"))
        boot, protocol = self.boot, self.protocol

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                cursor = conn.execute(
                    "INSERT INTO outbox (local_id, kind, body, ends_transaction, boot, protocol)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.local_id, entry.kind, body, int(entry.ends_transaction), boot, protocol),
                )
            entry.seq = cursor.lastrowid

        return self._submit(job)

    def delete(
        self,
        entry: OutboxEntry,
        *,
        set_id: tuple[str, int | None] | None = None,
        forget_id: str | None = None,
    ) -> asyncio.Future[None]:
        """Remove ``entry`` and, in the same transaction, record (``set_id``: our id, the
        CSMS's, None when the CSMS knows it by ours) or forget (``forget_id``) that the CSMS
        has a transaction's start."""
        protocol = self.protocol

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if entry.seq is not None:
                    conn.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))
                if set_id is not None:
                    conn.execute(
                        "INSERT INTO outbox_ids (local_id, csms_id, protocol) VALUES (?, ?, ?)"
                        " ON CONFLICT (local_id) DO UPDATE SET csms_id = excluded.csms_id,"
                        " protocol = excluded.protocol",
                        (*set_id, protocol),
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
        self, entries: Sequence[OutboxEntry], ids: Mapping[str, int | None]
    ) -> asyncio.Future[None]:
        """Replace this protocol's rows with ``entries`` (in order) and its id map with
        ``ids`` (None: the CSMS knows the transaction by our id): after the database failed
        and works again, memory is the truth. The other protocols' rows stay."""
        rows = [(e, json.dumps(dict(e.body), separators=(",", ":"))) for e in entries]
        protocol = self.protocol
        id_rows = [(local_id, csms_id, protocol) for local_id, csms_id in ids.items()]
        boot = self.boot

        def job(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM outbox WHERE protocol = ?", (protocol,))
                conn.execute("DELETE FROM outbox_ids WHERE protocol = ?", (protocol,))
                conn.executemany(
                    "INSERT INTO outbox_ids (local_id, csms_id, protocol) VALUES (?, ?, ?)",
                    id_rows,
                )
                seqs = []
                for entry, body in rows:
                    cursor = conn.execute(
                        "INSERT INTO outbox (local_id, kind, body, ends_transaction, boot,"
                        " protocol) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            entry.local_id,
                            entry.kind,
                            body,
                            int(entry.ends_transaction),
                            boot,
                            protocol,
                        ),
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

    async def load(self) -> tuple[list[OutboxEntry], dict[str, int | None]]:
        """What earlier runs of this protocol queued and did not finish (oldest first), and
        its id map.

        A row whose body is not valid JSON is logged and left out (and deleted): it cannot
        be sent, and keeping it would block every message behind it.
        """
        boot, protocol = self.boot, self.protocol

        def job(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            rows = conn.execute(
                "SELECT seq, local_id, kind, body, ends_transaction FROM outbox"
                " WHERE boot != ? AND protocol = ? ORDER BY seq",
                (boot, protocol),
            ).fetchall()
            ids = conn.execute(
                "SELECT local_id, csms_id FROM outbox_ids WHERE protocol = ?", (protocol,)
            ).fetchall()
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
        return entries, {str(k): None if v is None else int(v) for k, v in id_rows}

    async def told(self, local_id: str) -> Told:
        """Whether a CSMS (of any protocol) has heard (or will hear) of transaction
        ``local_id``, and whether a message ending it is already queued."""
        return (await self.told_by(local_id))[0]

    async def told_by(self, local_id: str) -> tuple[Told, str | None]:
        """:meth:`told`, and the protocol whose CSMS that is (None with Told.NOTHING)."""

        def job(conn: sqlite3.Connection) -> tuple[Told, str | None]:
            ended = conn.execute(
                "SELECT protocol FROM outbox WHERE local_id = ? AND ends_transaction = 1 LIMIT 1",
                (local_id,),
            ).fetchone()
            if ended is not None:
                return Told.ENDED, str(ended[0])
            known = conn.execute(
                "SELECT protocol FROM outbox WHERE local_id = ?"
                " UNION ALL SELECT protocol FROM outbox_ids WHERE local_id = ? LIMIT 1",
                (local_id, local_id),
            ).fetchone()
            return (Told.STARTED, str(known[0])) if known is not None else (Told.NOTHING, None)

        return await self._storage.run(job)

    async def waiting_elsewhere(self) -> dict[str, int]:
        """Messages queued by other protocols than this one, by protocol: they wait for
        their version to run again (see the module docstring)."""
        protocol = self.protocol
        rows = await self._storage.run(
            lambda conn: conn.execute(
                "SELECT protocol, COUNT(*) FROM outbox WHERE protocol != ? GROUP BY protocol"
                " ORDER BY protocol",
                (protocol,),
            ).fetchall()
        )
        return {str(p): int(n) for p, n in rows}

    async def size(self) -> int:
        """How many messages the outbox holds (for tests and the bench)."""
        row = await self._storage.run(
            lambda conn: conn.execute("SELECT COUNT(*) FROM outbox").fetchone()
        )
        return int(row[0])


def export_rows(state_dir: Path) -> list[dict[str, Any]]:
    """Every message in the outbox of ``state_dir``'s database, oldest first, as JSON-ready
    objects (``picharge outbox``: for billing by hand what waits for another OCPP version).

    Read-only and safe while the controller runs: the database is opened ``mode=ro`` and
    read in one snapshot (WAL lets a reader see the last commit without blocking the
    writer). Raises :class:`sqlite3.Error` when the database cannot be read.
    """
    path = state_dir / DB_NAME
    if not path.exists():
        raise sqlite3.OperationalError(f"no state database at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        ids = dict(conn.execute("SELECT local_id, csms_id FROM outbox_ids").fetchall())
        rows = conn.execute(
            "SELECT seq, protocol, local_id, kind, ends_transaction, boot, body FROM outbox"
            " ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    exported = []
    for seq, protocol, local_id, kind, ends, boot, body in rows:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body  # kept as the text it is: a human reads this
        exported.append(
            {
                "seq": seq,
                "protocol": protocol,
                "transaction": local_id,
                "csms_transaction_id": ids.get(local_id),
                "kind": kind,
                "ends_transaction": bool(ends),
                "boot": boot,
                "body": parsed,
            }
        )
    return exported


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
