"""Standalone cards kept in the state database: added, named, disabled and given an
expiry from the local web page, without editing the configuration.

A charger without a CSMS accepts the cards of ``[authorization] cards`` (fixed, from the
configuration) and the enabled, unexpired cards of this store. UIDs are kept in upper case
and compared without case, as OCPP idTags are. Every method runs on the loop thread and
awaits the storage thread (:class:`controller.storage.Storage`).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from controller.domain import utc_now
from controller.storage import Storage

#: The longest UID (an OCPP 1.6 idTag is at most 20 characters).
MAX_UID = 20
MAX_NAME = 40


@dataclass(frozen=True, slots=True)
class StoredCard:
    """One card of the store; ``expires_at`` None means it never expires."""

    uid: str
    name: str
    enabled: bool
    expires_at: dt.datetime | None
    added_at: dt.datetime

    def allows(self, now: dt.datetime) -> bool:
        """Whether this card may start a session at ``now``."""
        return self.enabled and (self.expires_at is None or now < self.expires_at)


def check_card(uid: str, name: str) -> None:
    """Raise ValueError naming the field unless ``uid`` and ``name`` fit the store."""
    if not 1 <= len(uid) <= MAX_UID or not uid.isascii() or not uid.isprintable():
        raise ValueError(f"uid: must be 1-{MAX_UID} printable ASCII characters, got {uid!r}")
    if len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"name: must be at most {MAX_NAME} printable characters")


def _card(row: tuple[object, ...]) -> StoredCard:
    expires = None if row[3] is None else dt.datetime.fromisoformat(str(row[3]))
    return StoredCard(
        uid=str(row[0]),
        name=str(row[1]),
        enabled=bool(row[2]),
        expires_at=expires,
        added_at=dt.datetime.fromisoformat(str(row[4])),
    )


_COLUMNS = "uid, name, enabled, expires_at, added_at"


class CardStore:
    """The ``local_cards`` table. Loop thread only."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def get(self, uid: str) -> StoredCard | None:
        key = uid.upper()

        def job(conn: sqlite3.Connection) -> tuple[object, ...] | None:
            row: tuple[object, ...] | None = conn.execute(
                f"SELECT {_COLUMNS} FROM local_cards WHERE uid = ?", (key,)
            ).fetchone()
            return row

        row = await self._storage.run(job)
        return None if row is None else _card(row)

    async def all(self) -> list[StoredCard]:
        def job(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
            return conn.execute(f"SELECT {_COLUMNS} FROM local_cards ORDER BY uid").fetchall()

        return [_card(row) for row in await self._storage.run(job)]

    async def put(
        self, uid: str, name: str, *, enabled: bool = True, expires_at: dt.datetime | None = None
    ) -> StoredCard:
        """Add the card or change it (its ``added_at`` stays); raises ValueError on bad
        input, naming the field."""
        check_card(uid, name)
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at: must carry a time zone")
        card = StoredCard(
            uid.upper(),
            name,
            enabled,
            None if expires_at is None else expires_at.astimezone(dt.UTC),
            utc_now(),
        )
        values = (
            card.uid,
            card.name,
            int(card.enabled),
            None if card.expires_at is None else card.expires_at.isoformat(),
            card.added_at.isoformat(),
        )

        def job(conn: sqlite3.Connection) -> tuple[object, ...]:
            conn.execute(
                f"INSERT INTO local_cards ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (uid) DO UPDATE SET name = excluded.name,"
                " enabled = excluded.enabled, expires_at = excluded.expires_at",
                values,
            )
            row: tuple[object, ...] = conn.execute(
                f"SELECT {_COLUMNS} FROM local_cards WHERE uid = ?", (card.uid,)
            ).fetchone()
            return row

        return _card(await self._storage.run(job))

    async def delete(self, uid: str) -> bool:
        """Remove the card; False when there was none."""
        key = uid.upper()

        def job(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM local_cards WHERE uid = ?", (key,)).rowcount

        return await self._storage.run(job) > 0
