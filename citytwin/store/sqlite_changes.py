"""The change log and what the notifier keeps: subscriptions and its cursor.

Every write records what it changed (the entity before and after) in the same transaction as the
change itself, so the log is the notifier's outbox: a crash between commit and delivery loses
nothing, and the live stream can resume from any change still kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from citytwin.model.times import now_iso
from citytwin.store.base import ChangeRecord
from citytwin.store.sqlite_devices import bump

SUBSCRIPTIONS = "subscriptions"  # a row of the cursors table, bumped by subscription writes

V3 = """
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    attrs TEXT,
    before TEXT,
    after TEXT,
    at TEXT NOT NULL
);
CREATE TABLE subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""

Row = tuple[str, str, str | None, str | None, str | None, str]


def record(conn: sqlite3.Connection, rows: list[Row]) -> None:
    """(tenant, id, touched attributes as JSON or None for all, before, after, at)."""
    conn.executemany(
        "INSERT INTO changes (tenant, id, attrs, before, after, at) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def since(
    conn: sqlite3.Connection, seq: int, limit: int, before: bool = True
) -> list[ChangeRecord]:
    was = "before" if before else "CASE WHEN after IS NULL THEN before END"
    rows = conn.execute(
        f"SELECT seq, tenant, id, attrs, {was}, after, at FROM changes WHERE seq > ?"
        " ORDER BY seq LIMIT ?",
        (seq, limit),
    ).fetchall()
    return _records(rows)


def touching(
    conn: sqlite3.Connection, seq: int, upto: int, needles: list[str]
) -> list[ChangeRecord]:
    """Changes in (seq, upto] whose touched attributes (or whole new state, when the write did
    not say) hold one of the needles: a cheap filter in SQL, so that only those are parsed."""
    rows = conn.execute(
        "SELECT seq, tenant, id, attrs, before, after, at FROM changes c"
        " WHERE seq > ? AND seq <= ? AND after IS NOT NULL AND EXISTS"
        " (SELECT 1 FROM json_each(?) n WHERE instr(coalesce(c.attrs, c.after), n.value) > 0)"
        " ORDER BY seq",
        (seq, upto, orjson.dumps(needles).decode()),
    ).fetchall()
    return _records(rows)


def _records(rows: list[Any]) -> list[ChangeRecord]:
    return [
        ChangeRecord(
            seq=seq_,
            tenant=tenant,
            entity_id=entity_id,
            attrs=_load(attrs),
            before=_load(before),
            after=_load(after),
            at=at,
        )
        for seq_, tenant, entity_id, attrs, before, after, at in rows
    ]


def _load(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(seq) FROM changes").fetchone()
    return int(row[0] or 0)


PRUNE_CHUNK = 2000  # rows a transaction: a long delete would stall every other writer


def prune(conn: sqlite3.Connection, below: int) -> int:
    """Forget up to PRUNE_CHUNK of the oldest changes at or below `below`."""
    return conn.execute(
        "DELETE FROM changes WHERE seq IN"
        " (SELECT seq FROM changes WHERE seq <= ? ORDER BY seq LIMIT ?)",
        (below, PRUNE_CHUNK),
    ).rowcount


class LogMixin:
    """The SQLite store's change-log, subscription and cursor methods."""

    reader: sqlite3.Connection
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

    async def changes_since(
        self, seq: int, limit: int = 1000, before: bool = True
    ) -> list[ChangeRecord]:
        return since(self.reader, seq, limit, before)

    async def changes_touching(self, seq: int, upto: int, needles: list[str]) -> list[ChangeRecord]:
        return touching(self.reader, seq, upto, needles)

    async def last_change(self) -> int:
        return last_seq(self.reader)

    async def prune_changes(self, below: int, keep: int = 0) -> int:
        """Forget changes up to `below` but the newest `keep`, a chunk a transaction, so
        writers are not held up."""
        kept = self.reader.execute(
            "SELECT seq FROM changes ORDER BY seq DESC LIMIT 1 OFFSET ?", (keep,)
        ).fetchone()
        if kept is None:
            return 0
        below = min(below, kept[0])
        total = 0
        while True:
            done = await self._write(lambda conn: prune(conn, below))
            total += done
            if done < PRUNE_CHUNK:
                return total

    async def cursor(self, name: str) -> int | None:
        row = self.reader.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    async def set_cursor(self, name: str, seq: int) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO cursors (name, seq) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                (name, seq),
            )
        )

    async def put_subscription(
        self, tenant: str, sub_id: str, doc: dict[str, Any], create: bool
    ) -> bool:
        text = orjson.dumps(doc).decode()

        def job(conn: sqlite3.Connection) -> bool:
            if create:
                sql = "INSERT OR IGNORE INTO subscriptions (doc, tenant, id) VALUES (?, ?, ?)"
            else:
                sql = "UPDATE subscriptions SET doc = ? WHERE tenant = ? AND id = ?"
            done = conn.execute(sql, (text, tenant, sub_id)).rowcount == 1
            if done:
                bump(conn, SUBSCRIPTIONS)
            if done and create and tenant:
                conn.execute(
                    "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)",
                    (tenant, now_iso()),
                )
            return done

        return await self._write(job)

    async def save_status(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        rows = [
            (orjson.dumps({"notification": status}).decode(), tenant, sub_id)
            for tenant, sub_id, status in items
        ]
        await self._write(
            lambda conn: conn.executemany(
                "UPDATE subscriptions SET doc = json_patch(doc, ?) WHERE tenant = ? AND id = ?",
                rows,
            )
        )

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        row = self.reader.execute(
            "SELECT doc FROM subscriptions WHERE tenant = ? AND id = ?", (tenant, sub_id)
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    async def subscriptions(self, tenant: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        sql, args = "SELECT tenant, doc FROM subscriptions", ()
        if tenant is not None:
            sql, args = sql + " WHERE tenant = ?", (tenant,)
        rows = self.reader.execute(sql + " ORDER BY tenant, id", args).fetchall()
        return [(t, orjson.loads(doc)) for t, doc in rows]

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        def job(conn: sqlite3.Connection) -> bool:
            sql = "DELETE FROM subscriptions WHERE tenant = ? AND id = ?"
            done = conn.execute(sql, (tenant, sub_id)).rowcount == 1
            if done:
                bump(conn, SUBSCRIPTIONS)
            return done

        return await self._write(job)

    async def subscriptions_version(self) -> int:
        """A number that changes with every subscription write (other workers' too)."""
        row = self.reader.execute(
            "SELECT seq FROM cursors WHERE name = ?", (SUBSCRIPTIONS,)
        ).fetchone()
        return int(row[0]) if row else 0
