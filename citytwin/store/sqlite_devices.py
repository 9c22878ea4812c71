"""Provisioning of the device gateway (service groups and devices), kept beside the twin."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

VERSION = "provisioning"  # a row of the cursors table, bumped by every provisioning write
V6 = """
CREATE TABLE provisioned (
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, tenant, key)
);
"""


class DevicesMixin:
    """The SQLite store's provisioning methods: one table, one row a group or device."""

    reader: sqlite3.Connection
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

    async def provisioned(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.reader.execute(
            "SELECT tenant, key, doc FROM provisioned WHERE kind = ? ORDER BY tenant, key", (kind,)
        ).fetchall()
        return [(tenant, key, orjson.loads(doc)) for tenant, key, doc in rows]

    async def provision(
        self, kind: str, items: list[tuple[str, str, dict[str, Any]]], create: bool
    ) -> bool:
        """Store (tenant, key, doc) items in one transaction; with `create`, none may exist
        (False and nothing stored otherwise)."""
        rows = [(orjson.dumps(doc).decode(), kind, t, k) for t, k, doc in items]

        def job(conn: sqlite3.Connection) -> bool:
            if create:
                sql = "INSERT OR IGNORE INTO provisioned (doc, kind, tenant, key) VALUES (?,?,?,?)"
            else:
                sql = "UPDATE provisioned SET doc = ? WHERE kind = ? AND tenant = ? AND key = ?"
            done = sum(conn.execute(sql, row).rowcount for row in rows)
            if done != len(rows):
                raise _Conflict
            bump(conn)
            return True

        try:
            return await self._write(job)
        except _Conflict:
            return False

    async def unprovision(self, kind: str, tenant: str, keys: list[str]) -> int:
        args = [(kind, tenant, key) for key in keys]

        def job(conn: sqlite3.Connection) -> int:
            sql = "DELETE FROM provisioned WHERE kind = ? AND tenant = ? AND key = ?"
            done = sum(conn.execute(sql, a).rowcount for a in args)
            bump(conn)
            return done

        return await self._write(job)

    async def provisioning_version(self) -> int:
        """A number that changes with every provisioning write (other workers' too)."""
        row = self.reader.execute("SELECT seq FROM cursors WHERE name = ?", (VERSION,)).fetchone()
        return int(row[0]) if row else 0


def bump(conn: sqlite3.Connection, name: str = VERSION) -> None:
    """Change a version number other processes read (a row of the cursors table)."""
    conn.execute(
        "INSERT INTO cursors (name, seq) VALUES (?, 1)"
        " ON CONFLICT (name) DO UPDATE SET seq = seq + 1",
        (name,),
    )


class _Conflict(Exception):
    """Rolls the savepoint back: one of the items exists (or does not)."""
