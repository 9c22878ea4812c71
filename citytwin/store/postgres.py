"""The PostgreSQL store (issue 8): asyncpg, JSONB documents, PostGIS geometries.

Entities are read and written through the same plan as the SQLite store (store/plan.py), in
one transaction with their geometry rows, change-log rows and history. The rest lives beside:
queries (postgres_query, postgres_sql), the temporal reads (postgres_timeline), the change
log and subscriptions (postgres_log), provisioning (postgres_devices), leases and LISTEN
(postgres_notify), the schema (postgres_schema). docs/design.md and docs/scale-out.md say why.

A write first takes transaction-level advisory locks on the entities it names, then reads
them and works on what it read. Row locks (FOR UPDATE) would do the same, but they give the
transaction its id at the first entity, and the change log's numbers need ids taken once every
entity is held (postgres_log). Advisory locks fill PostgreSQL's shared lock table (about 64 a
connection), so a write holds at most 64: entities hash into 64 buckets; a write of up to 31
entities takes its buckets shared and each entity exclusive, a larger one its buckets
exclusive (large writes then go one at a time, and small ones wait for those sharing a bucket).
All take buckets before entities, each in key order, so no two writers deadlock.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from citytwin.model.entity import Entity
from citytwin.model.times import now_iso
from citytwin.store import postgres_batch as batch
from citytwin.store import postgres_history as history
from citytwin.store.base import (
    MISSING,
    AttributeFn,
    Change,
    Missing,
    MutateFn,
    Query,
    QueryResult,
)
from citytwin.store.plan import Plan
from citytwin.store.postgres_batch import Part, columns
from citytwin.store.postgres_devices import DevicesMixin
from citytwin.store.postgres_log import LOGGED, MAX_CHANGES, LogMixin, log_base
from citytwin.store.postgres_notify import NotifyMixin
from citytwin.store.postgres_query import matching_ids, run_query, selects
from citytwin.store.postgres_schema import LOCK, ensure_partitions, migrate
from citytwin.store.postgres_timeline import TimelineMixin
from citytwin.store.sqlite_query import entity_matches, register

RETRIES = 5  # a write that meets a concurrent creation of the same entity starts again
BUCKETS = 64  # entity lock buckets (see the module's docstring)
ONE_BY_ONE = 31  # entities a write locks one by one, each beside its bucket
BUCKET_SPACE = 0x63746275  # the advisory lock space of the buckets: (BUCKET_SPACE, bucket)
RETRIED = (
    asyncpg.UniqueViolationError,  # another writer created one of the entities first
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


class PostgresStore(LogMixin, DevicesMixin, TimelineMixin, NotifyMixin):
    """Entities of every tenant in one PostgreSQL database."""

    def __init__(self, url: str, pool_size: int = 8, read_replica: str = "") -> None:
        self.url = url
        self.pool_size = pool_size
        self.read_replica = read_replica
        self._pool: asyncpg.Pool | None = None
        self._replica: asyncpg.Pool | None = None
        self._watchers: list[Callable[[], None]] = []
        self._month = ""
        self._judge = sqlite3.connect(":memory:", check_same_thread=False)
        register(self._judge)

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    @property
    def reads(self) -> asyncpg.Pool:
        """Where the API's reads go: a streaming-replication standby if one was given (it may
        lag the primary unless the primary commits with synchronous_commit=remote_apply)."""
        return self._replica or self.pool

    async def open(self) -> None:
        self._pool = await _pool(self.url, self.pool_size)
        if self.read_replica:
            self._replica = await _pool(self.read_replica, self.pool_size)
        async with self.pool.acquire() as conn:
            await migrate(conn)
            self._base = await log_base(conn, LOCK)
        await self._listen()

    async def close(self) -> None:
        await self._unlisten()
        for pool in (self._replica, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._replica = None

    def entity_matches(self, tenant: str, entity: Entity, query: Query) -> bool:
        """idPattern, q and scopeQ on one entity: SQLite's compiled SQL over a one-row table
        in memory, so that both stores judge an entity the same way."""
        return entity_matches(self._judge, tenant, entity, query)

    async def tenant_exists(self, tenant: str, fresh: bool = False) -> bool:
        if tenant == "":
            return True
        pool = self.pool if fresh else self.reads
        return await pool.fetchval("SELECT 1 FROM tenants WHERE name = $1", tenant) == 1

    async def get(self, tenant: str, entity_id: str) -> Entity | None:
        raw = await self.reads.fetchval(
            "SELECT raw FROM entities WHERE tenant = $1 AND id = $2", tenant, entity_id
        )
        return orjson.loads(raw) if raw is not None else None

    async def mutate(self, tenant: str, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        ids = sorted(dict.fromkeys(i for i, _ in ops))
        await self._partitions()
        try:
            for attempt in range(RETRIES):
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        plan = Plan(tenant, await _load(conn, tenant, ids))
                        results = plan.apply(ops)
                        await self._flush(conn, plan)
                    break
                except RETRIED:
                    if attempt == RETRIES - 1:
                        raise
        finally:  # also when cancelled or failed, maybe after the commit: a wake costs a read
            self._committed()
            self._announce()
        return results

    async def _partitions(self) -> None:
        """The history partitions of this month and the next, made in a transaction of their
        own (creating one locks the history table) once a month per process."""
        month = f"{datetime.now(UTC):%Y-%m}"
        if month != self._month:
            async with self.pool.acquire() as conn:
                await ensure_partitions(conn, datetime.now(UTC))
            self._month = month

    async def mutate_attribute(
        self, tenant: str, entity_id: str, name: str, fn: AttributeFn, modified_at: str
    ) -> Missing | None:
        """One attribute through the same plan as any write (it names what it touched)."""

        def op(current: Entity | None) -> Change:
            if current is None:
                raise _Absent
            old = current["attrs"].get(name)
            was = {name: orjson.loads(orjson.dumps(old))} if old else {}
            instances = fn(old)
            if instances:
                current["attrs"][name] = instances
            else:
                current["attrs"].pop(name, None)
            current["modifiedAt"] = modified_at
            return Change(current, touched=([name], was))

        [result] = await self.mutate(tenant, [(entity_id, op)])
        if isinstance(result, _Absent):
            return MISSING
        if isinstance(result, Exception):
            raise result
        return None

    async def query(self, tenant: str, query: Query, fresh: bool = False) -> QueryResult:
        async with (self.pool if fresh else self.reads).acquire() as conn:
            return await run_query(conn, tenant, query, self._judge_for(tenant, query))

    async def purge(self, tenant: str, query: Query) -> int:
        """Delete what a query selects, each entity as a DELETE of it would (history, change
        log); one selected and then deleted by another request meanwhile is not counted."""
        async with self.pool.acquire() as conn:
            ids = await matching_ids(conn, tenant, query, self._judge_for(tenant, query))
        if not ids:
            return 0
        purged = 0  # in one transaction up to the change log's limit, in several above it
        for start in range(0, len(ids), MAX_CHANGES - 1):
            chunk = ids[start : start + MAX_CHANGES - 1]
            results = await self.mutate(tenant, [(i, _purged) for i in chunk])
            purged += sum(1 for r in results if r is True)
        return purged

    def _judge_for(self, tenant: str, query: Query) -> Callable[[Entity], bool]:
        """The Python check of the candidates of a query with regular expressions."""
        types = query.types

        def judge(entity: Entity) -> bool:
            if types is not None and not selects(types, entity):
                return False
            return self.entity_matches(tenant, entity, query)

        return judge

    async def type_counts(self, tenant: str) -> dict[str, int]:
        rows = await self.reads.fetch(
            "SELECT t, count(*) FROM entities, unnest(types) t WHERE tenant = $1 GROUP BY t",
            tenant,
        )
        return {t: n for t, n in rows}

    async def attribute_count(self, tenant: str, attr: str) -> int:
        return int(
            await self.reads.fetchval(
                "SELECT count(*) FROM entities WHERE tenant = $1 AND doc -> 'attrs' ? $2",
                tenant,
                attr,
            )
        )

    async def summary(self, tenant: str) -> list[tuple[str, str | None, str | None, int]]:
        rows = await self.reads.fetch(
            "SELECT t, a.key, i ->> 'type', count(DISTINCT e.id) FROM entities e"
            " CROSS JOIN unnest(e.types) t"
            " LEFT JOIN LATERAL jsonb_each(e.doc -> 'attrs') a ON true"
            " LEFT JOIN LATERAL jsonb_array_elements(a.value) i ON true"
            " WHERE e.tenant = $1 GROUP BY 1, 2, 3",
            tenant,
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def _flush(self, conn: asyncpg.Connection, plan: Plan) -> None:
        if len(plan.final) >= MAX_CHANGES:  # (a change row an entity at most)
            raise ValueError(f"one write can change at most {MAX_CHANGES - 1} entities")
        tenant = plan.tenant
        gone = [i for i, e in plan.final.items() if e is None and plan.existed(i)]
        written = [(i, e) for i, e in plan.final.items() if e is not None]
        if tenant and any(not plan.existed(i) for i, _ in written):
            await conn.execute(
                "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                tenant,
                now_iso(),
            )
        if gone:
            await conn.execute(
                "DELETE FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, gone
            )
        rows = [
            (e["type"], plan.doc(i), e["createdAt"], e["modifiedAt"], tenant, i)
            for i, e in sorted(written)
        ]  # fmt: skip (in id order: no deadlock on inserts)
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
        await history.forget(conn, tenant, sorted(plan.deleted))
        parts = await history.append(conn, plan.records())
        changes = list(plan.changes(now_iso()))
        if changes:
            rows = [(*change, self._base + place) for place, change in enumerate(changes)]
            parts.append(Part(LOGGED, columns(rows, 7)))
        await batch.run(conn, parts)  # one round trip for the history and the log


async def _load(conn: asyncpg.Connection, tenant: str, ids: list[str]) -> dict[str, bytes | None]:
    """The entities' stored documents, held until the transaction ends (see the module's
    docstring). A lock is taken before the read, whose snapshot then holds the last commit of
    each entity (PostgreSQL releases a transaction's locks after its commit is visible)."""
    keys = {entity_key(tenant, i) for i in ids}
    buckets = sorted({key % BUCKETS for key in keys})
    if len(keys) <= ONE_BY_ONE:
        await conn.execute(
            "SELECT pg_advisory_xact_lock_shared($1::int4, b) FROM unnest($2::int4[]) b"
            " UNION ALL SELECT pg_advisory_xact_lock(k) FROM unnest($3::bigint[]) k",
            BUCKET_SPACE,
            buckets,
            sorted(keys),
        )
    else:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, b) FROM unnest($2::int4[]) b",
            BUCKET_SPACE,
            buckets,
        )
    docs: dict[str, bytes | None] = dict.fromkeys(ids)
    rows = await conn.fetch(
        "SELECT id, raw FROM entities WHERE tenant = $1 AND id = ANY($2::text[])", tenant, ids
    )
    docs.update((row["id"], row["raw"].encode()) for row in rows)
    return docs


def entity_key(tenant: str, entity_id: str) -> int:
    """An entity's advisory lock, in the one-int8 form (the leases use the two-int4 form). Two
    entities sharing a key only wait for each other."""
    digest = hashlib.blake2b(f"{tenant}\0{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _reindex(
    conn: asyncpg.Connection, tenant: str, entities: dict[str, Entity | None]
) -> None:
    """Rewrite the type and geometry rows of these entities; only x and y count, as in SQLite
    (a position's altitude is kept in the document alone)."""
    if not entities:
        return
    for table in ("entity_types", "entity_geo"):
        await conn.execute(
            f"DELETE FROM {table} WHERE tenant = $1 AND id = ANY($2::text[])",
            tenant,
            list(entities),
        )
    await conn.executemany(
        "INSERT INTO entity_types (tenant, id, type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(tenant, i, t) for i, e in sorted(entities.items()) if e is not None for t in e["type"]],
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
        " VALUES ($1, $2, $3, $4, ST_SetSRID(ST_Force2D(ST_GeomFromGeoJSON($5)), 4326))"
        " ON CONFLICT DO NOTHING",
        rows,
    )


async def _pool(url: str, size: int) -> asyncpg.Pool:
    """Connections handed back without asyncpg's reset (unlock all, close cursors, unlisten,
    reset settings: a round trip on every release, more than a primary-key read costs). Pooled
    connections take no session locks, cursors, listens or settings: the store's leases and
    LISTEN live on a connection of their own. (asyncpg still rolls back a transaction left
    open before it calls `reset`.)"""
    return await asyncpg.create_pool(url, min_size=1, max_size=size, reset=_kept)


async def _kept(conn: asyncpg.Connection) -> None:
    return None


def _purged(current: Entity | None) -> Change:
    return Change(None, True) if current is not None else Change(None, False, write=False)


class _Absent(Exception):
    """The entity of a single-attribute write does not exist."""
