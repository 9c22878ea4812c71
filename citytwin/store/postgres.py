"""The PostgreSQL store (issue 8, in progress): asyncpg, JSONB documents, PostGIS geometries.

Built so far: the schema (postgres_schema), entities read and written through the same plan as
the SQLite store (store/plan.py) in one transaction with their geometry index rows, change-log
rows and history; the change log, cursors and subscriptions. Not yet: queries, the temporal
reads, purge, devices, leases, and the serve/CLI wiring (so `open_store` does not offer it yet).

A write locks the rows of the entities it names (in id order, so two writers cannot deadlock)
and works on what it read; a concurrent creation of the same entity makes it start again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from citytwin.model.entity import Entity
from citytwin.store import postgres_history as history
from citytwin.store.base import ChangeRecord, MutateFn
from citytwin.store.plan import Plan
from citytwin.store.postgres_schema import ensure_partitions, migrate

RETRIES = 5  # a write that meets a concurrent creation of the same entity starts again


class PostgresStore:
    """Entities of every tenant in one PostgreSQL database."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._watchers: list[Callable[[], None]] = []
        self._month = ""

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size)
        async with self.pool.acquire() as conn:
            await migrate(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def watch(self, callback: Callable[[], None]) -> None:
        """Call back after each commit of this process."""
        self._watchers.append(callback)

    async def tenant_exists(self, tenant: str) -> bool:
        if tenant == "":
            return True
        return await self.pool.fetchval("SELECT 1 FROM tenants WHERE name = $1", tenant) == 1

    async def get(self, tenant: str, entity_id: str) -> Entity | None:
        raw = await self.pool.fetchval(
            "SELECT raw FROM entities WHERE tenant = $1 AND id = $2", tenant, entity_id
        )
        return orjson.loads(raw) if raw is not None else None

    async def mutate(self, tenant: str, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        ids = sorted(dict.fromkeys(i for i, _ in ops))
        for attempt in range(RETRIES):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    plan = Plan(tenant, await _load(conn, tenant, ids))
                    results = plan.apply(ops)
                    await self._flush(conn, plan)
            except asyncpg.UniqueViolationError:
                if attempt == RETRIES - 1:
                    raise
                continue
            for callback in self._watchers:
                callback()
            return results
        raise AssertionError("unreachable")

    async def _flush(self, conn: asyncpg.Connection, plan: Plan) -> None:
        tenant = plan.tenant
        gone = [i for i, e in plan.final.items() if e is None and plan.existed(i)]
        written = [(i, e) for i, e in plan.final.items() if e is not None]
        if tenant and any(not plan.existed(i) for i, _ in written):
            await conn.execute(
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                tenant,
                _now(),
            )
        if gone:
            await conn.execute(
                "DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, gone
            )
        rows = [(e["type"], plan.doc(i), e["createdAt"], e["modifiedAt"], tenant, i)
                for i, e in written]  # fmt: skip
        await conn.executemany(  # what was not there: a plain insert, so that a concurrent
            "INSERT INTO entities (types, raw, created_at, modified_at, tenant, id)"
            " VALUES ($1, $2, $3, $4, $5, $6)",  # creation fails this write, which starts again
            [r for r in rows if not plan.existed(r[5])],
        )
        await conn.executemany(
            "UPDATE entities SET types = $1, raw = $2, created_at = $3, modified_at = $4"
            " WHERE tenant = $5 AND id = $6",
            [r for r in rows if plan.existed(r[5])],
        )
        await _reindex(conn, tenant, plan.reindexed())
        at = _now()
        await conn.executemany(
            "INSERT INTO changes (tenant, id, attrs, before, after, at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            list(plan.changes(at)),
        )
        await history.forget(conn, tenant, sorted(plan.deleted))
        if at[:7] != self._month:  # a new month: its partition first
            await ensure_partitions(conn, datetime.now(UTC))
            self._month = at[:7]
        await history.append(conn, plan.records())

    # -- the change log, cursors, subscriptions ---------------------------------------------------

    async def changes_since(
        self, seq: int, limit: int = 1000, before: bool = True
    ) -> list[ChangeRecord]:
        was = "before" if before else "CASE WHEN after IS NULL THEN before END"
        rows = await self.pool.fetch(
            f"SELECT seq, tenant, id, attrs, {was}, after, at FROM changes WHERE seq > $1"
            " ORDER BY seq LIMIT $2",
            seq,
            limit,
        )
        return [
            ChangeRecord(s, t, i, _load_json(a), _load_json(b), _load_json(f), at)
            for s, t, i, a, b, f, at in rows
        ]

    async def last_change(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(seq), 0) FROM changes"))

    async def cursor(self, name: str) -> int | None:
        seq = await self.pool.fetchval("SELECT seq FROM cursors WHERE name = $1", name)
        return int(seq) if seq is not None else None

    async def set_cursor(self, name: str, seq: int) -> None:
        await self.pool.execute(
            "INSERT INTO cursors (name, seq) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            name,
            seq,
        )

    async def put_subscription(
        self, tenant: str, sub_id: str, doc: dict[str, Any], create: bool
    ) -> bool:
        text = orjson.dumps(doc).decode()
        async with self.pool.acquire() as conn, conn.transaction():
            if create:
                done = await conn.execute(
                    "INSERT INTO subscriptions (tenant, id, doc) VALUES ($1, $2, $3::jsonb)"
                    " ON CONFLICT DO NOTHING",
                    tenant,
                    sub_id,
                    text,
                )
            else:
                done = await conn.execute(
                    "UPDATE subscriptions SET doc = $3::jsonb WHERE tenant = $1 AND id = $2",
                    tenant,
                    sub_id,
                    text,
                )
            made = done.endswith(" 1")
            if made and create and tenant:
                await conn.execute(
                    "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    tenant,
                    _now(),
                )
        return made

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        doc = await self.pool.fetchval(
            "SELECT doc FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, sub_id
        )
        return orjson.loads(doc) if doc is not None else None

    async def subscriptions(self, tenant: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT tenant, doc FROM subscriptions WHERE $1::text IS NULL OR tenant = $1"
            " ORDER BY tenant, id",
            tenant,
        )
        return [(t, orjson.loads(doc)) for t, doc in rows]

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        done = await self.pool.execute(
            "DELETE FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, sub_id
        )
        return bool(done.endswith(" 1"))


async def _load(conn: asyncpg.Connection, tenant: str, ids: list[str]) -> dict[str, bytes | None]:
    """The entities' stored documents, their rows locked until the transaction ends."""
    docs: dict[str, bytes | None] = dict.fromkeys(ids)
    rows = await conn.fetch(
        "SELECT id, raw FROM entities WHERE tenant = $1 AND id = ANY($2::text[])"
        " ORDER BY id FOR UPDATE",
        tenant,
        ids,
    )
    docs.update((row["id"], row["raw"].encode()) for row in rows)
    return docs


async def _reindex(
    conn: asyncpg.Connection, tenant: str, entities: dict[str, Entity | None]
) -> None:
    """Rewrite the geometry rows of these entities (their types live in their own row)."""
    if not entities:
        return
    await conn.execute(
        "DELETE FROM entity_geo WHERE tenant = $1 AND id = ANY($2::text[])", tenant, list(entities)
    )
    rows = [
        (tenant, entity_id, attr, inst.get("datasetId") or "", orjson.dumps(inst["value"]).decode())
        for entity_id, entity in entities.items()
        if entity is not None
        for attr, instances in entity["attrs"].items()
        for inst in instances
        if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict)
    ]
    await conn.executemany(
        "INSERT INTO entity_geo (tenant, id, attr, dataset, geom)"
        " VALUES ($1, $2, $3, $4, ST_SetSRID(ST_GeomFromGeoJSON($5), 4326))"
        " ON CONFLICT DO NOTHING",
        rows,
    )


def _load_json(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
