"""The PostgreSQL schema on a real cluster: migrations apply once, tables lead with the tenant and
entity id (so the schema can be distributed by entity on Citus), geometries have a GiST index,
history is partitioned by month of its write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from citytwin.store.postgres_schema import MIGRATIONS, ensure_partitions, migrate

ENTITY_TABLES = ("entities", "entity_types", "entity_geo", "changes", "history", "series", "rollup")


@pytest.fixture
async def db(database: str) -> AsyncIterator[asyncpg.Connection]:  # noqa: F811
    conn = await asyncpg.connect(database)
    try:
        yield conn
    finally:
        await conn.close()


async def test_migrations_apply_once_even_from_two_processes_at_once(
    db: asyncpg.Connection,
    database: str,  # noqa: F811
) -> None:
    other = await asyncpg.connect(database)
    try:
        versions = await asyncio.gather(migrate(db), migrate(other))
    finally:
        await other.close()
    assert versions == [len(MIGRATIONS)] * 2
    applied = await db.fetch("SELECT version FROM migrations ORDER BY version")
    assert [r["version"] for r in applied] == list(range(1, len(MIGRATIONS) + 1))
    assert await migrate(db) == len(MIGRATIONS)  # nothing left to do
    assert await db.fetchval("SELECT count(*) FROM migrations") == len(MIGRATIONS)


async def test_entity_tables_lead_with_tenant_and_id(db: asyncpg.Connection) -> None:
    await migrate(db)
    for table in ENTITY_TABLES:
        key = await db.fetch(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary"
            " ORDER BY array_position(i.indkey, a.attnum)",
            table,
        )
        assert [r["attname"] for r in key][:2] == ["tenant", "id"], table


async def test_geometries_are_indexed_for_bounding_box_search(db: asyncpg.Connection) -> None:
    await migrate(db)
    method = await db.fetchval(
        "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
        " WHERE c.relname = 'entity_geo_gist'"
    )
    assert method == "gist"
    await db.execute(
        "INSERT INTO entity_geo (tenant, id, attr, geom) VALUES"
        " ('', 'urn:a', 'location', ST_SetSRID(ST_MakePoint(121.47, 31.23), 4326)),"
        " ('', 'urn:b', 'location', ST_SetSRID(ST_MakePoint(116.40, 39.90), 4326))"
    )
    near = await db.fetch(
        "SELECT id FROM entity_geo WHERE ST_DWithin(geom::geography,"
        " ST_SetSRID(ST_MakePoint(121.48, 31.23), 4326)::geography, 2000)"
    )
    assert [r["id"] for r in near] == ["urn:a"]


async def test_history_lands_in_its_month(db: asyncpg.Connection) -> None:
    await migrate(db)
    now = datetime.now(UTC)
    await ensure_partitions(db, datetime(2031, 12, 15, tzinfo=UTC))  # a year's end, twice over
    await ensure_partitions(db, datetime(2031, 12, 20, tzinfo=UTC))
    stamps = {
        f"history_{now:%Y_%m}": int(now.timestamp() * 1e6),
        "history_2032_01": int(datetime(2032, 1, 31, 23, tzinfo=UTC).timestamp() * 1e6),
        "history_default": int(datetime(1999, 1, 1, tzinfo=UTC).timestamp() * 1e6),
    }
    for created in stamps.values():
        await db.execute(
            "INSERT INTO history (tenant, id, attr, created, modified, body)"
            " VALUES ('', 'urn:a', 'pm25', $1, $1, '{}')",
            created,
        )
    rows = await db.fetch("SELECT tableoid::regclass::text AS part, created FROM history")
    assert {r["part"]: r["created"] for r in rows} == stamps


async def test_documents_are_compressed_with_lz4_in_every_history_partition(
    db: asyncpg.Connection,
) -> None:
    await migrate(db)
    await ensure_partitions(db, datetime(2031, 5, 2, tzinfo=UTC))
    rows = await db.fetch(
        "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute"
        " WHERE attname IN ('raw', 'doc', 'before', 'after', 'body') AND attnum > 0"
        " AND attrelid::regclass::text ~ '^(entities|changes|history)'"
    )
    assert {r[0] for r in rows} >= {"entities", "changes", "history_default", "history_2031_05"}
    assert {r[2] for r in rows} == {b"l"}  # lz4 (the char type comes as bytes)


async def test_retention_drops_the_past_partitions_it_empties(
    db: asyncpg.Connection,
    database: str,  # noqa: F811
) -> None:
    from citytwin.store.postgres import PostgresStore

    store = PostgresStore(database)
    await store.open()
    try:
        await ensure_partitions(db, datetime(2020, 1, 5, tzinfo=UTC))  # January and February
        micros = {m: int(datetime(*m, tzinfo=UTC).timestamp()) * 1_000_000 for m in
                  [(2020, 1, 10), (2020, 2, 10), (2031, 1, 1), (2025, 1, 1)]}  # fmt: skip
        await db.execute("INSERT INTO series (tenant, id, attr, dataset, numeric)"
                         " VALUES ('', 'urn:x:1', 'p', '', true)")  # fmt: skip
        for created, observed in (((2020, 1, 10), (2020, 1, 10)), ((2020, 2, 10), (2031, 1, 1))):
            await db.execute(
                "INSERT INTO history (tenant, id, attr, dataset, created, observed, modified,"
                " num, body) VALUES ('', 'urn:x:1', 'p', '', $1, $2, $1, 1, '{}')",
                micros[created],
                micros[observed],
            )
        reader = await asyncpg.connect(database)  # a long read of the history: no drop,
        tx = reader.transaction()  # and no wait for it beyond DROP_WAIT
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM history")
        assert await store.prune_history(micros[(2025, 1, 1)]) == 1
        names = {r[0] for r in await db.fetch("SELECT tablename FROM pg_tables")}
        assert "history_2020_01" in names
        await tx.commit()
        await reader.close()
        assert await store.prune_history(micros[(2025, 1, 1)]) == 0
        names = {r[0] for r in await db.fetch("SELECT tablename FROM pg_tables")}
        assert "history_2020_01" not in names  # emptied: dropped
        assert "history_2020_02" in names  # holds an observation of 2031: kept
        this_month = f"history_{datetime.now(UTC):%Y_%m}"
        assert {this_month, "history_default"} <= names
        assert await db.fetchval("SELECT count(*) FROM history") == 1
    finally:
        await store.close()
