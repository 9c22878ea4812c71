"""The PostgreSQL store's device provisioning: one table, one row a group or device."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from citytwin.store.postgres_schema import affected
from citytwin.store.sqlite_devices import VERSION


class DevicesMixin:
    pool: asyncpg.Pool

    async def provisioned(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT tenant, key, doc FROM provisioned WHERE kind = $1 ORDER BY tenant, key", kind
        )
        return [(tenant, key, orjson.loads(doc)) for tenant, key, doc in rows]

    async def provision(
        self, kind: str, items: list[tuple[str, str, dict[str, Any]]], create: bool
    ) -> bool:
        """Store (tenant, key, doc) items in one transaction; with `create`, none may exist
        (False and nothing stored otherwise)."""
        if create:
            sql = ("INSERT INTO provisioned (doc, kind, tenant, key)"
                   " VALUES (as_jsonb($1), $2, $3, $4) ON CONFLICT DO NOTHING")  # fmt: skip
        else:
            sql = ("UPDATE provisioned SET doc = as_jsonb($1)"
                   " WHERE kind = $2 AND tenant = $3 AND key = $4")  # fmt: skip
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            done = 0
            for tenant, key, doc in items:
                status = await conn.execute(sql, orjson.dumps(doc).decode(), kind, tenant, key)
                done += affected(status)
            if done != len(items):
                await transaction.rollback()
                return False
            await bump(conn)
            await transaction.commit()
            return True

    async def unprovision(self, kind: str, tenant: str, keys: list[str]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "DELETE FROM provisioned WHERE kind = $1 AND tenant = $2 AND key = ANY($3::text[])",
                kind,
                tenant,
                keys,
            )
            await bump(conn)
        return affected(status)

    async def provisioning_version(self) -> int:
        """A number that changes with every provisioning write (other workers' too)."""
        seq = await self.pool.fetchval("SELECT seq FROM cursors WHERE name = $1", VERSION)
        return int(seq) if seq is not None else 0


async def bump(conn: asyncpg.Connection, name: str = VERSION) -> None:
    """Change a version number other processes read (a row of the cursors table)."""
    await conn.execute(
        "INSERT INTO cursors (name, seq) VALUES ($1, 1)"
        " ON CONFLICT (name) DO UPDATE SET seq = cursors.seq + 1",
        name,
    )
