"""The state database keeps what it was told across restarts and never blocks the loop."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.storage import DB_NAME, MIGRATIONS, STORAGE_THREAD, Storage, StorageError


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(tmp_path / "state")
    yield store
    await store.close()


def _storage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{STORAGE_THREAD}_")]


async def test_settings_survive_closing_and_reopening(tmp_path: Path) -> None:
    first = await Storage.open(tmp_path)
    await first.save_setting("ocpp16", "HeartbeatInterval", "120")
    await first.save_setting("ocpp16", "HeartbeatInterval", "90")  # the last write wins
    await first.save_setting("other", "HeartbeatInterval", "5")
    await first.close()

    second = await Storage.open(tmp_path)
    try:
        assert await second.load_settings("ocpp16") == {"HeartbeatInterval": "90"}
        assert await second.load_settings("other") == {"HeartbeatInterval": "5"}
        assert await second.load_settings("nothing") == {}
    finally:
        await second.close()


async def test_a_saved_setting_is_committed_when_the_call_returns(storage: Storage) -> None:
    await storage.save_setting("ocpp16", "MeterValueSampleInterval", "15")
    # Another connection (another process, after a power cut) sees it without our help.
    other = sqlite3.connect(storage.path)
    try:
        rows = other.execute("SELECT namespace, key, value FROM settings").fetchall()
    finally:
        other.close()
    assert rows == [("ocpp16", "MeterValueSampleInterval", "15")]


async def test_database_runs_in_wal_mode_with_full_sync(storage: Storage) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return mode, conn.execute("PRAGMA synchronous").fetchone()[0]

    assert await storage.run(pragmas) == ("wal", 2)  # 2 = FULL
    assert storage.path.name == DB_NAME


async def test_a_new_state_dir_is_new_and_a_reopened_one_is_not(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"  # missing parents are created
    first = await Storage.open(state)
    assert first.is_new
    version = await first.run(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
    assert version == len(MIGRATIONS)
    await first.close()
    second = await Storage.open(state)
    assert not second.is_new
    await second.close()


async def test_a_file_that_is_not_a_database_is_refused_by_path_and_left_alone(
    tmp_path: Path,
) -> None:
    garbage = b"this is a meter log, not a database\n" * 200
    (tmp_path / DB_NAME).write_bytes(garbage)
    with pytest.raises(StorageError) as caught:
        await Storage.open(tmp_path)
    assert str(tmp_path / DB_NAME) in str(caught.value)
    assert (tmp_path / DB_NAME).read_bytes() == garbage
    assert not _storage_threads()  # the failed open joined its worker


async def test_a_database_from_a_newer_picharge_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer picharge") as caught:
        await Storage.open(tmp_path)
    assert str(tmp_path / DB_NAME) in str(caught.value)


async def test_a_state_dir_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match="cannot create the state directory"):
        await Storage.open(tmp_path / "file" / "state")


async def test_close_is_idempotent_and_joins_the_storage_thread(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path)
    assert _storage_threads()
    await store.close()
    assert not _storage_threads()
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.load_settings("ocpp16")
    with pytest.raises(StorageError, match="closed"):
        await store.save_setting("ocpp16", "HeartbeatInterval", "1")


async def test_every_sqlite_statement_runs_on_the_storage_thread(storage: Storage) -> None:
    seen: list[tuple[int, str]] = []
    await storage.run(
        lambda c: c.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))
    )
    await storage.save_setting("ns", "k", "v")
    await storage.load_settings("ns")
    await storage.cache_put("TAG1", "Accepted", None, None)
    await storage.cache_get("tag1")
    await storage.cache_clear()
    await storage.run(lambda c: c.set_trace_callback(None))

    assert len(seen) >= 5
    assert {ident for ident, _ in seen} == {_storage_threads()[0].ident}
    assert threading.get_ident() not in {ident for ident, _ in seen}


async def test_the_loop_keeps_running_while_the_database_is_busy(storage: Storage) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            # a 10 ms ticker: it counts while the database is busy
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await storage.run(lambda _conn: time.sleep(0.3))  # a slow SD card, say
    task.cancel()
    assert ticks >= 10


async def test_auth_cache_ignores_the_case_of_id_tags(storage: Storage) -> None:
    expiry = dt.datetime(2031, 5, 4, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    await storage.cache_put("AbCd1234", "Accepted", "Parent1", expiry)

    entry = await storage.cache_get("ABCD1234")
    assert entry is not None
    assert (entry.id_tag, entry.status, entry.parent_id) == ("AbCd1234", "Accepted", "Parent1")
    assert entry.expiry == expiry
    assert entry.expiry is not None and entry.expiry.utcoffset() == dt.timedelta(0)
    assert entry.updated_at.tzinfo is not None

    await storage.cache_put("abcd1234", "Blocked", None, None)  # replaces, whatever the case
    entry = await storage.cache_get("AbCd1234")
    assert entry is not None
    assert (entry.id_tag, entry.status, entry.parent_id, entry.expiry) == (
        "abcd1234",
        "Blocked",
        None,
        None,
    )
    assert await storage.cache_get("unknown") is None


async def test_auth_cache_survives_a_restart_until_cleared(tmp_path: Path) -> None:
    store = await Storage.open(tmp_path)
    await store.cache_put("CARD-1", "Accepted", None, None)
    await store.cache_put("CARD-2", "Expired", None, None)
    await store.close()

    store = await Storage.open(tmp_path)
    try:
        assert (await store.cache_get("card-1")) is not None
        await store.cache_clear()
        assert await store.cache_get("card-1") is None
        assert await store.cache_get("card-2") is None
    finally:
        await store.close()


async def test_a_naive_expiry_is_refused_rather_than_guessed(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.cache_put("TAG", "Accepted", None, dt.datetime(2030, 1, 1))
    assert await storage.cache_get("TAG") is None


async def test_a_failing_statement_is_a_storage_error_and_the_store_goes_on(
    storage: Storage,
) -> None:
    def bad(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(StorageError, match="no_such_table"):
        await storage.run(bad)
    # A write that fails half-way is rolled back: the next one can open its own transaction.
    with pytest.raises(StorageError, match="NOT NULL"):
        await storage.cache_put("TAG", None, None, None)  # type: ignore[arg-type]
    await storage.save_setting("ns", "still", "works")
    assert await storage.load_settings("ns") == {"still": "works"}
    assert await storage.cache_get("TAG") is None
