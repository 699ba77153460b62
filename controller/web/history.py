"""Session history for the page and the API: the journal's transactions as a table, a CSV
file and energy per day or month.

Reads use a read-only SQLite connection of their own on the ``web`` thread, not the
storage thread: a browser paging through years of sessions must never queue ahead of the
journal's writes (the contactor waits for a transaction's start to be on disk). WAL mode
lets this reader and the storage thread's writer run at once. Months and days are the
charger's local calendar; times in answers are UTC (ISO 8601 with offset).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MAX_PAGE = 500
CSV_COLUMNS = (
    "session_id",
    "connector",
    "card",
    "card_name",
    "started_at",
    "stopped_at",
    "meter_start_kwh",
    "meter_stop_kwh",
    "energy_kwh",
    "stop_reason",
)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which sessions: ``month`` "YYYY-MM" (local calendar) and ``card`` (any case)."""

    month: str | None = None
    card: str | None = None

    def __post_init__(self) -> None:
        if self.month is not None and not MONTH.match(self.month):
            raise ValueError(f"month: must be YYYY-MM, got {self.month!r}")
        if self.card is not None and not 1 <= len(self.card) <= 20:
            raise ValueError("card: must be an id tag of 1-20 characters")

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        if self.month is not None:
            year, month = (int(part) for part in self.month.split("-"))
            first = dt.datetime(year, month, 1).astimezone()
            following = dt.datetime(year + month // 12, month % 12 + 1, 1).astimezone()
            clauses.append("started_at >= ? AND started_at < ?")
            params += [_utc(first), _utc(following)]
        if self.card is not None:
            clauses.append("id_tag = ? COLLATE NOCASE")
            params.append(self.card)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()


def _local(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone()


class History:
    """Session history from ``db_path``. Every method blocks: call it on the web thread."""

    def __init__(self, db_path: Path, config_names: Mapping[str, str]) -> None:
        self._path = db_path
        self._config_names = {uid.upper(): name for uid, name in config_names.items()}
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, timeout=5.0)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (call on the web thread); idempotent."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _names(self, conn: sqlite3.Connection) -> dict[str, str]:
        names = {
            str(uid): str(name)
            for uid, name in conn.execute("SELECT uid, name FROM local_cards WHERE name != ''")
        }
        names.update(self._config_names)
        return names

    def sessions(self, which: Filter, limit: int, offset: int) -> dict[str, Any]:
        """One page of sessions, newest first, and how many match in all."""
        conn = self._conn()
        where, params = which.where()
        total = conn.execute(f"SELECT COUNT(*) FROM transactions{where}", params).fetchone()[0]
        rows = conn.execute(
            "SELECT t.local_id, t.connector_id, t.id_tag, t.started_at, t.stopped_at,"
            " t.meter_start_wh, t.meter_stop_wh, t.last_meter_wh, t.stop_reason, o.csms_id"
            f" FROM (SELECT * FROM transactions{where}) t"
            " LEFT JOIN outbox_ids o ON o.local_id = t.local_id"
            " ORDER BY t.started_at DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        names = self._names(conn)
        return {"total": int(total), "sessions": [_session(row, names) for row in rows]}

    def csv_text(self, which: Filter) -> str:
        """Every matching session as CSV (oldest first), for a spreadsheet."""
        page = self.sessions(which, 1_000_000, 0)["sessions"]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for s in reversed(page):
            stop = s["meter_stop_wh"]
            writer.writerow(
                [
                    s["id"],
                    s["connector_id"],
                    _cell(s["id_tag"]),
                    _cell(s["card_name"] or ""),
                    s["started_at"],
                    s["stopped_at"] or "",
                    f"{s['meter_start_wh'] / 1000:.3f}",
                    "" if stop is None else f"{stop / 1000:.3f}",
                    f"{s['energy_wh'] / 1000:.3f}",
                    s["stop_reason"] or "",
                ]
            )
        return out.getvalue()

    def energy(self, by: str, today: dt.date | None = None) -> list[dict[str, Any]]:
        """Energy charged per local day (the last 31) or month (the last 12), oldest first,
        every period listed (0 Wh where nothing was charged)."""
        today = today or dt.datetime.now().astimezone().date()
        if by == "day":
            periods = [(today - dt.timedelta(days=i)).isoformat() for i in range(30, -1, -1)]
            first = dt.datetime.combine(today - dt.timedelta(days=30), dt.time()).astimezone()
        elif by == "month":
            months = [(today.year * 12 + today.month - 1 - i) for i in range(11, -1, -1)]
            periods = [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months]
            first = dt.datetime(months[0] // 12, months[0] % 12 + 1, 1).astimezone()
        else:
            raise ValueError(f"by: must be 'day' or 'month', got {by!r}")
        totals = dict.fromkeys(periods, 0.0)
        counts = dict.fromkeys(periods, 0)
        rows = self._conn().execute(
            "SELECT started_at, meter_start_wh, COALESCE(meter_stop_wh, last_meter_wh)"
            " FROM transactions WHERE started_at >= ?",
            (_utc(first),),
        )
        for started, start_wh, end_wh in rows:
            day = _local(str(started)).date().isoformat()
            key = day if by == "day" else day[:7]
            if key in totals:
                totals[key] += max(0.0, float(end_wh) - float(start_wh))
                counts[key] += 1
        return [
            {"period": p, "energy_wh": round(totals[p], 1), "sessions": counts[p]} for p in periods
        ]


def _session(row: tuple[Any, ...], names: Mapping[str, str]) -> dict[str, Any]:
    local_id, connector, tag, started, stopped, start_wh, stop_wh, last_wh, reason, csms = row
    end_wh = stop_wh if stop_wh is not None else last_wh
    return {
        "id": local_id,
        "transaction_id": csms,
        "connector_id": connector,
        "id_tag": tag,
        "card_name": names.get(str(tag).upper()),
        "started_at": started,
        "stopped_at": stopped,
        "meter_start_wh": round(float(start_wh), 1),
        "meter_stop_wh": None if stop_wh is None else round(float(stop_wh), 1),
        "energy_wh": round(max(0.0, float(end_wh) - float(start_wh)), 1),
        "stop_reason": reason,
    }


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a card named "=1+1")."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
