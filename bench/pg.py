"""PostgreSQL for the benchmarks (issue 8): where the store lives (`--store`), and the raw
asyncpg ceilings measured beside citytwin in the same run, on the same database.

`--store` is `sqlite` (the default: a file), `postgres` (a durable throwaway cluster from
bench/cluster.py, fsync on as in production, its fresh database `citytwin`), or a
`postgresql://...` URL used as given. The ceilings: batched upsert (executemany of
`INSERT ... ON CONFLICT DO UPDATE` into a copy of `entities`), primary-key reads and single-row
updates at random ids (several connections in as many processes as the server has workers, for
a fixed time), the benchmark queries written by hand (PostGIS `&&` on `entity_geo` for the
geo-queries) and raw history reads and inserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.cluster import cluster
from citytwin.store import is_postgres
from citytwin.store.base import Query

CONNECTIONS = 8  # a ceiling client's connections a process (the store's pool size)
STORE_HELP = (
    "sqlite (a file, the default), postgres (a durable throwaway cluster) or a"
    " postgresql://... URL used as given"
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """--store and --workers, the same in every benchmark."""
    parser.add_argument("--store", default="sqlite", help=STORE_HELP)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")


@contextlib.contextmanager
def database(store: str, sqlite_path: str) -> Iterator[str]:
    """What `citytwin serve` is given: the SQLite file, the URL of a fresh database of a
    durable throwaway cluster, or the URL as given."""
    if store == "sqlite":
        yield sqlite_path
    elif store == "postgres":
        print("starting a durable throwaway PostgreSQL cluster...", flush=True)
        with cluster(durable=True) as made:
            yield made.url
    elif is_postgres(store):
        yield store
    else:
        raise SystemExit(f"--store: {STORE_HELP}, not {store!r}")


def store_name(db: str) -> str:
    return "PostgreSQL" if is_postgres(db) else "SQLite"


def migrated(url: str) -> None:
    """Bring the database to citytwin's schema (the ceilings' tables are copies of its own)."""
    from citytwin.store.postgres import PostgresStore

    async def run() -> None:
        store = PostgresStore(url)
        await store.open()
        await store.close()

    asyncio.run(run())


def settled(url: str) -> None:
    """VACUUM ANALYZE after a bulk load, as autovacuum does within a minute or so, then a
    checkpoint: without statistics the planner picks other plans (the geo-queries AND a scan of
    every row of entity_geo's key into the GiST candidates), and a load's pages are hinted by
    the first reads, so figures would depend on whether autovacuum or the checkpointer came by
    during the measurement."""
    print("VACUUM ANALYZE and CHECKPOINT after the load...", flush=True)
    asyncio.run(_execute(url, "VACUUM ANALYZE"))
    asyncio.run(_execute(url, "CHECKPOINT"))


def filled(db: str, table: str) -> bool:
    """Whether a database already holds rows of this table (then the benchmark reuses them)."""
    if not is_postgres(db):
        return Path(db).exists()

    async def run() -> bool:
        conn = await asyncpg.connect(db)
        try:
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                return False
            return bool(await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"))
        finally:
            await conn.close()

    return asyncio.run(run())


# -- writes --------------------------------------------------------------------------------------

UPSERT = (
    "INSERT INTO bench_upsert (tenant, id, types, raw, created_at, modified_at)"
    " VALUES ('', $1, $2, $3, 'now', 'now') ON CONFLICT (tenant, id) DO UPDATE"
    " SET types = excluded.types, raw = excluded.raw, modified_at = excluded.modified_at"
)


def upsert_rate(url: str, chunks: list[list[tuple[str, list[str], str]]], streams: int) -> float:
    """Rows (id, types, document) upserted a second by executemany, one transaction a chunk, over
    `streams` connections at once, into a table of the shape of `entities` (generated JSONB,
    GIN index on types), which is dropped afterwards."""

    return _copy_rate(url, "bench_upsert", "entities", UPSERT, chunks, streams)


def history_insert_rate(url: str, rows: int, streams: int = 2) -> float:
    """Instances inserted a second by executemany, 10,000 a transaction, over `streams`
    connections, into a table of the shape of `history` (its columns, keys and indexes; the
    attribute's name as stored), dropped afterwards."""
    body = '{"type":"Property","value":21.5,"unitCode":"CEL","observedAt":"2026-01-01T00:00:00Z"}'
    sql = (
        "INSERT INTO bench_history (tenant, id, attr, dataset, created, observed, modified,"
        " num, body) VALUES ('', $1, $2, '', $3, $4, $3, 21.5, $5::jsonb)"
    )
    attr = history_attr(url)
    chunks = [
        [(f"urn:ngsi-ld:AirSensor:{n % 1000:05d}", attr, n, n * 60_000_000, body)
         for n in range(first, min(first + 10_000, rows))]
        for first in range(0, rows, 10_000)
    ]  # fmt: skip

    return _copy_rate(url, "bench_history", "history", sql, chunks, streams)


def _copy_rate(
    url: str, table: str, like: str, sql: str, chunks: list[list[Any]], streams: int
) -> float:
    """Rows a second that `sql` writes into `table`, a copy of the shape of `like` (columns,
    keys, indexes), executemany a chunk a transaction over `streams` connections at once; the
    copy is dropped afterwards."""

    async def run() -> float:
        conn = await asyncpg.connect(url)
        await conn.execute(
            f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (LIKE {like} INCLUDING ALL)"
        )
        pending = list(reversed(chunks))
        start = time.perf_counter()
        await asyncio.gather(*(_drain(url, sql, pending) for _ in range(streams)))
        rate = sum(len(c) for c in chunks) / (time.perf_counter() - start)
        await conn.execute(f"DROP TABLE {table}")
        await conn.close()
        return rate

    return asyncio.run(run())


async def _drain(url: str, sql: str, pending: list[Any]) -> None:
    """executemany of the chunks left, one transaction each, until none is."""
    conn = await asyncpg.connect(url)
    try:
        while pending:
            chunk = pending.pop()
            async with conn.transaction():
                await conn.executemany(sql, chunk)
    finally:
        await conn.close()


# -- one row at a time, for a fixed time ---------------------------------------------------------

READ_ONE = "SELECT raw FROM entities WHERE tenant = '' AND id = $1"
# on a copy of `entities` (bench_rows): a commit a row, as a PATCH makes
UPDATE_ONE = "UPDATE bench_rows SET raw = raw, modified_at = $2 WHERE tenant = '' AND id = $1"


def row_rate(url: str, sql: str, ids: list[str], seconds: float, processes: int) -> float:
    """Statements a second, each at a random id, on CONNECTIONS connections in each of
    `processes` processes (one event loop each, as a server worker has), for `seconds`."""
    start = time.time() + 1.0 + processes  # every process connected before it starts
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_rows_in_process, url, sql, ids, start, seconds, n)
            for n in range(processes)
        ]
        return sum(f.result() for f in futures) / seconds


def update_rate(url: str, ids: list[str], seconds: float, processes: int) -> float:
    """Single-row UPDATE commits a second, on a copy of `entities` (dropped afterwards)."""
    asyncio.run(_execute(url, "DROP TABLE IF EXISTS bench_rows;"
                              " CREATE TABLE bench_rows AS SELECT * FROM entities;"
                              " ALTER TABLE bench_rows ADD PRIMARY KEY (tenant, id)"))  # fmt: skip
    try:
        return row_rate(url, UPDATE_ONE, ids, seconds, processes)
    finally:
        asyncio.run(_execute(url, "DROP TABLE bench_rows"))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _rows_in_process(
    url: str, sql: str, ids: list[str], start: float, seconds: float, seed: int
) -> int:
    return asyncio.run(_rows(url, sql, ids, start, seconds, seed))


async def _rows(url: str, sql: str, ids: list[str], start: float, seconds: float, seed: int) -> int:
    conns = [await asyncpg.connect(url) for _ in range(CONNECTIONS)]
    writes = sql.startswith("UPDATE")
    done = [0]

    async def loop(conn: asyncpg.Connection, rng: random.Random) -> None:
        statement = await conn.prepare(sql)
        await asyncio.sleep(start - time.time())
        end = start + seconds
        while time.time() < end:
            args = (rng.choice(ids), "now") if writes else (rng.choice(ids),)
            await statement.fetch(*args)
            done[0] += 1

    try:
        await asyncio.gather(*(loop(c, random.Random(seed * 100 + n)) for n, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    return done[0]


# -- queries -------------------------------------------------------------------------------------

_GEO_IDS = (
    "SELECT DISTINCT g.id FROM entity_geo g WHERE g.tenant = '' AND g.attr = $1"
    " AND g.geom && ST_MakeEnvelope($2, $3, $4, $5, 4326)"
)
_REF = "ST_SetSRID(ST_GeomFromGeoJSON($6), 4326)"
_GEO_TESTS = {
    "near": f"ST_DWithin(g.geom::geography, {_REF}::geography, $7)",
    "within": f"ST_Within(g.geom, {_REF})",
    "intersects": f"ST_Intersects(g.geom, {_REF})",
}


def raw_query(query: Query) -> tuple[str, list[Any]]:
    """The query benchmark's questions as one hand-written statement each: a type with one
    numeric comparison or an id prefix (through the GIN index on types), a count of a type,
    and near/within
    (candidates by the GiST index on entity_geo, `&&` its box, then PostGIS's exact test; the
    page of ids first, then its documents)."""
    if query.geo is not None:
        return _raw_geo(query)
    assert query.types is not None and query.types.op == "type", "one type"
    if query.count and query.limit == 0:
        sql = "SELECT count(*) FROM entities WHERE tenant = '' AND types @> ARRAY[$1::text]"
        return sql, [query.types.value]
    if query.id_pattern is not None:  # PostgreSQL's regex: the same for these prefixes
        sql = (
            "SELECT raw FROM entities WHERE tenant = '' AND types @> ARRAY[$1::text]"
            " AND id ~ $2 ORDER BY id LIMIT $3"
        )
        return sql, [query.types.value, query.id_pattern, query.limit]
    term = query.q
    assert term is not None and term.op == ">" and not term.path.sub, "one comparison"
    sql = (
        "SELECT raw FROM entities WHERE tenant = '' AND types @> ARRAY[$1::text]"
        " AND (doc -> 'attrs' -> $2 -> 0 ->> 'value')::float8 > $3 ORDER BY id LIMIT $4"
    )
    return sql, [query.types.value, term.path.attr, float(term.value), query.limit]  # type: ignore[arg-type]


def _raw_geo(query: Query) -> tuple[str, list[Any]]:
    geo = query.geo
    assert geo is not None and geo.georel in _GEO_TESTS, "near, within or intersects"
    box = geo.bbox()
    assert box is not None, "a geo-query with a box"
    minx, maxx, miny, maxy = box
    args = [geo.geoproperty, minx, miny, maxx, maxy, orjson.dumps(geo.geometry).decode()]
    if geo.georel == "near":
        args.append(geo.max_distance)
    found = f"{_GEO_IDS} AND {_GEO_TESTS[geo.georel]} ORDER BY g.id LIMIT {query.limit or 20}"
    sql = (
        f"SELECT e.raw FROM ({found}) f JOIN entities e ON e.tenant = '' AND e.id = f.id"
        " ORDER BY e.id"
    )
    return sql, args


def timed_fetches(
    url: str, statements: Sequence[tuple[str, list[Any]]], warmup: int
) -> list[float]:
    """Milliseconds each statement took on one connection, but the first `warmup` (asyncpg
    prepares a statement once and caches it, as it does for the store)."""

    async def run() -> list[float]:
        conn = await asyncpg.connect(url)
        out = []
        try:
            for sql, args in statements:
                start = time.perf_counter()
                await conn.fetch(sql, *args)
                out.append((time.perf_counter() - start) * 1000)
        finally:
            await conn.close()
        return out[warmup:]

    return asyncio.run(run())


# -- history -------------------------------------------------------------------------------------

DAY = (
    "SELECT iid, observed, created, modified, deleted, body FROM history"
    " WHERE tenant = '' AND id = $1 AND attr = $2 AND dataset = ''"
    " AND observed >= $3 AND observed < $4 ORDER BY observed, iid"
)
HOURLY_AVG = (
    "SELECT id, hour, sum(sum) / sum(count) FROM rollup"
    " WHERE tenant = '' AND id = ANY($1::text[]) AND attr = $2 AND dataset = ''"
    " AND hour >= $3 AND hour < $4 GROUP BY id, hour ORDER BY id, hour"
)


def history_attr(url: str) -> str:
    """The (expanded) name the history tables keep the benchmark's attribute under."""

    async def run() -> str:
        conn = await asyncpg.connect(url)
        try:
            return str(await conn.fetchval("SELECT attr FROM series LIMIT 1"))
        finally:
            await conn.close()

    return asyncio.run(run())


def bytes_per_instance(url: str, instances: int) -> float:
    """Bytes of every table of citytwin's (with their indexes and TOAST) an instance."""

    async def run() -> float:
        conn = await asyncpg.connect(url)
        try:
            size = await conn.fetchval(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                " AND c.relkind = 'r' AND c.relname <> 'spatial_ref_sys'"
            )
        finally:
            await conn.close()
        return float(size) / instances

    return asyncio.run(run())
