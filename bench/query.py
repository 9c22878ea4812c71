"""Issue 3 benchmark: queries at city scale, over HTTP, beside the same question asked of the store.

    python -m bench.query [--count 1000000] [--samples 200] [--store sqlite] [--workers 1]

Loads COUNT entities (10 types, points over a city-sized box, numeric and text attributes) through
the broker in-process, starts the server on that store, and prints p50/p99 latency of each query
over HTTP next to the latency of the SQL citytwin compiles for it, run directly on the same file
or database. On PostgreSQL (`--store postgres` or a URL, see bench/pg.py) also beside the same
question written by hand and sent with asyncpg (`raw`: PostGIS `&&` for the geo-queries).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench import pg
from bench.harness import LatencyRow, citytwin, latency_legend, latency_table
from citytwin.store import is_postgres
from citytwin.store.base import Query

TYPES = [f"CityObject{n}" for n in range(10)]
WEST, SOUTH, EAST, NORTH = 121.30, 31.10, 121.65, 31.35
CHUNK = 5000


def entity(n: int, rng: random.Random) -> dict[str, Any]:
    point = [rng.uniform(WEST, EAST), rng.uniform(SOUTH, NORTH)]
    return {
        "id": f"urn:ngsi-ld:{TYPES[n % 10]}:{n:07d}",
        "type": TYPES[n % 10],
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": point}},
        "pm25": {"type": "Property", "value": round(rng.uniform(0, 150), 1)},
        "status": {"type": "Property", "value": rng.choice(["ok", "maintenance", "offline"])},
        "name": {"type": "Property", "value": f"object {n}"},
    }


async def load(db: str, count: int) -> None:
    """Fill the store through the broker (the one write path), with progress."""
    from citytwin.broker import Broker
    from citytwin.contexts import ContextResolver
    from citytwin.store import open_store

    store = open_store(db)
    await store.open()
    broker, ctx, rng = Broker(store), ContextResolver().core, random.Random(3)
    start = time.perf_counter()
    for first in range(0, count, CHUNK):
        items = [(entity(n, rng), ctx) for n in range(first, min(first + CHUNK, count))]
        result = await broker.batch("", "upsert", items, frozenset())
        if result.errors:
            raise SystemExit(f"load failed: {result.errors[0]}")
        done = min(first + CHUNK, count)
        rate = done / (time.perf_counter() - start)
        print(f"\rloading: {done:,}/{count:,} entities ({rate:,.0f}/s)", end="", flush=True)
    print()
    await store.close()


def district(rng: random.Random) -> list[list[float]]:
    """A ~2 km x 2 km square somewhere in the box."""
    x, y = rng.uniform(WEST, EAST - 0.02), rng.uniform(SOUTH, NORTH - 0.02)
    return [[x, y], [x + 0.021, y], [x + 0.021, y + 0.018], [x, y + 0.018], [x, y]]


def questions(rng: random.Random) -> dict[str, Callable[[], dict[str, str]]]:
    def typed_q() -> dict[str, str]:
        return {"type": rng.choice(TYPES), "q": f"pm25>{rng.randint(0, 140)}", "limit": "100"}

    def near() -> dict[str, str]:
        point = f"[{rng.uniform(WEST, EAST):.5f},{rng.uniform(SOUTH, NORTH):.5f}]"
        return {"georel": "near;maxDistance==500", "geometry": "Point", "coordinates": point}

    def within() -> dict[str, str]:
        return {"georel": "within", "geometry": "Polygon", "coordinates": str([district(rng)])}

    def count() -> dict[str, str]:
        return {"type": rng.choice(TYPES), "count": "true", "limit": "0"}

    def id_pattern() -> dict[str, str]:  # a prefix: 1,000 of a type's ids from 300k up
        kind = rng.choice(TYPES)
        return {"type": kind, "idPattern": f"^urn:ngsi-ld:{kind}:0{rng.randint(0, 29):02d}",
                "limit": "100"}  # fmt: skip

    return {"type + q, limit=100": typed_q, "near;maxDistance==500": near,
            "within a district": within, "count=true over a type": count,
            "type + idPattern, limit=100": id_pattern}  # fmt: skip


WARMUP = 10  # unmeasured questions first, on both sides, so that neither pays the cold cache


def http_latencies(url: str, make: Callable[[], dict[str, str]], samples: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(WARMUP):
            client.get("/ngsi-ld/v1/entities", params=make())
        for _ in range(samples):
            params = make()
            start = time.perf_counter()
            got = client.get("/ngsi-ld/v1/entities", params=params)
            out.append((time.perf_counter() - start) * 1000)
            if got.status_code != 200:
                raise SystemExit(f"{params}: {got.status_code} {got.text[:300]}")
    return out


@functools.cache
def _core() -> Any:
    from citytwin.contexts import ContextResolver

    return ContextResolver().core


def as_query(params: dict[str, str]) -> Query:
    """The store's query of a request's parameters, as the API makes it."""
    from citytwin.api.query import selection

    query = selection(params, _core())
    return replace(query, limit=int(params.get("limit", 20)), count="count" in params)


def sqlite_latencies(db: str, make: Callable[[], dict[str, str]], samples: int) -> list[float]:
    """The same question asked of SQLite directly: the SQL citytwin compiles, plus exact geo."""
    from citytwin.store.sqlite import connect
    from citytwin.store.sqlite_query import run_query

    conn = connect(db)
    out = []
    for n in range(WARMUP + samples):
        query = as_query(make())
        start = time.perf_counter()
        run_query(conn, "", query)
        if n >= WARMUP:
            out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


def postgres_latencies(url: str, make: Callable[[], dict[str, str]], samples: int) -> list[float]:
    """The same question asked of PostgreSQL directly, on one asyncpg connection: the SQL
    citytwin compiles, plus exact geo and the store's check of regular expressions."""
    import asyncpg

    from citytwin.store.postgres import PostgresStore
    from citytwin.store.postgres_query import run_query

    judge = PostgresStore(url).entity_matches  # needs no connection

    queries = [as_query(make()) for _ in range(WARMUP + samples)]

    async def run() -> list[float]:
        conn = await asyncpg.connect(url)
        out = []
        for query in queries:
            start = time.perf_counter()
            await run_query(conn, "", query, functools.partial(judge, "", query=query))
            out.append((time.perf_counter() - start) * 1000)
        await conn.close()
        return out[WARMUP:]

    return asyncio.run(run())


def raw_latencies(url: str, make: Callable[[], dict[str, str]], samples: int) -> list[float]:
    """The same question written by hand, one statement on one asyncpg connection."""
    statements = [pg.raw_query(as_query(make())) for _ in range(WARMUP + samples)]
    return pg.timed_fetches(url, statements, WARMUP)


def measured(db: str, url: str, samples: int) -> list[LatencyRow]:
    """Each question over HTTP, then the same questions (the same random draws) directly."""
    targets = {"count=true over a type": "p99 < 200 ms"}
    rows = []
    for name, make in questions(random.Random(11)).items():
        print(f"measuring {name}...", flush=True)
        http = http_latencies(url, make, samples)
        again = questions(random.Random(11))[name]
        if is_postgres(db):
            direct = postgres_latencies(db, again, samples)
            raw = raw_latencies(db, questions(random.Random(11))[name], samples)
        else:
            direct, raw = sqlite_latencies(db, again, samples), None
        rows.append((name, http, direct, raw, targets.get(name, "p99 < 50 ms")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--db", help="SQLite: reuse (or create) this file, not a temporary one")
    pg.add_options(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with pg.database(args.store, args.db or str(Path(tmp) / "city.db")) as db:
            if pg.filled(db, "entities"):
                print("reusing the entities already there", flush=True)
            else:
                asyncio.run(load(db, args.count))
            if is_postgres(db):
                pg.settled(db)
            with citytwin(db, args.workers) as (url, _):
                rows = measured(db, url, args.samples)
    print(f"\ncitytwin query benchmark: {args.count:,} entities on {pg.store_name(db)},"
          f" {args.workers} worker(s), {args.samples} samples each")  # fmt: skip
    latency_table("question", rows, 26)
    raw = "asks the same question" if is_postgres(db) else None
    latency_legend("the query citytwin compiles", raw)


if __name__ == "__main__":
    sys.exit(main())
