"""Installed charging profiles on disk, so that they hold again after a restart.

One row per installed profile in the ``charging_profiles`` table (created by the storage
migration ``_v2_charging_profiles``): the profile as the CSMS sent it (JSON) and what the
charger added (its connector, the transaction a TxProfile belongs to, when it was
installed). Rows are keyed by the installation's ``key``, never by the CSMS's profile id,
so a late delete of a replaced profile can never remove its replacement.

Every method awaits :class:`~controller.storage.Storage` (one worker thread; a write is on
disk when it returns) and raises :class:`~controller.storage.StorageError`. Loop thread only.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from controller.storage import Storage


@dataclass(frozen=True, slots=True)
class StoredProfile:
    key: str
    connector_id: int | None
    transaction_key: str | None
    id_tag: str | None
    body: Mapping[str, Any]
    installed_at: dt.datetime
    profile_id: int  # the CSMS's id (1.6 chargingProfileId, 2.0.1 id)


def _write(conn: sqlite3.Connection, statements: list[tuple[str, tuple[object, ...]]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement, params in statements:
            conn.execute(statement, params)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class ProfileStore:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def load(self) -> list[StoredProfile]:
        """Every stored profile in the order they were installed."""
        rows = await self._storage.run(
            lambda conn: conn.execute(
                "SELECT key, connector_id, transaction_key, id_tag, body, installed_at, profile_id"
                " FROM charging_profiles ORDER BY installed_at, rowid"
            ).fetchall()
        )
        return [
            StoredProfile(
                key,
                connector_id,
                transaction_key,
                id_tag,
                json.loads(body),
                dt.datetime.fromisoformat(installed_at).astimezone(dt.UTC),
                profile_id,
            )
            for key, connector_id, transaction_key, id_tag, body, installed_at, profile_id in rows
        ]

    async def install(self, profile: StoredProfile, replaced: Collection[str]) -> None:
        """Store ``profile`` and drop the rows it replaces, in one transaction."""
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("DELETE FROM charging_profiles WHERE key = ?", (key,)) for key in replaced
        ]
        statements.append(
            (
                "INSERT INTO charging_profiles (key, profile_id, connector_id, transaction_key,"
                " id_tag, body, installed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    profile.key,
                    profile.profile_id,
                    profile.connector_id,
                    profile.transaction_key,
                    profile.id_tag,
                    json.dumps(profile.body, separators=(",", ":")),
                    profile.installed_at.astimezone(dt.UTC).isoformat(),
                ),
            )
        )
        await self._storage.run(lambda conn: _write(conn, statements))

    async def delete(self, keys: Collection[str]) -> None:
        statements: list[tuple[str, tuple[object, ...]]] = [
            ("DELETE FROM charging_profiles WHERE key = ?", (key,)) for key in keys
        ]
        await self._storage.run(lambda conn: _write(conn, statements))

    async def bind(self, key: str, connector_id: int, transaction_key: str) -> None:
        """A waiting TxProfile found its transaction."""
        statement = (
            "UPDATE charging_profiles SET connector_id = ?, transaction_key = ? WHERE key = ?",
            (connector_id, transaction_key, key),
        )
        await self._storage.run(lambda conn: _write(conn, [statement]))
