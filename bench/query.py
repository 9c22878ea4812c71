"""Issue 3 benchmark: queries at city scale, over HTTP, beside the same question asked of SQLite.

    python -m bench.query [--count 1000000] [--samples 200]

Loads COUNT entities (10 types, points over a city-sized box, numeric and text attributes) through
the broker in-process, starts the server on that file, and prints p50/p99 latency of each query
over HTTP next to the latency of the equivalent SQL run directly on the same file.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench.harness import citytwin, pct

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
    from citytwin.store.sqlite import SqliteStore

    store = SqliteStore(db)
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

    return {"type + q, limit=100": typed_q, "near;maxDistance==500": near,
            "within a district": within, "count=true over a type": count}  # fmt: skip


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


def sqlite_latencies(db: str, make: Callable[[], dict[str, str]], samples: int) -> list[float]:
    """The same question asked of SQLite directly: the SQL citytwin compiles, plus exact geo."""
    from citytwin.api.query import selection
    from citytwin.contexts import ContextResolver
    from citytwin.store.sqlite import connect
    from citytwin.store.sqlite_query import run_query

    conn = connect(db)
    ctx = ContextResolver().core
    out = []
    for n in range(WARMUP + samples):
        params = make()
        query = selection(params, ctx)
        limit = int(params.get("limit", 20))
        query = replace(query, limit=limit, count="count" in params)
        start = time.perf_counter()
        run_query(conn, "", query)
        if n >= WARMUP:
            out.append((time.perf_counter() - start) * 1000)
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--db", help="reuse (or create) this file instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "city.db")
        if not Path(db).exists():
            asyncio.run(load(db, args.count))
        rows = []
        with citytwin(db, 1) as (url, _):
            for name, make in questions(random.Random(11)).items():
                print(f"measuring {name}...", flush=True)
                http = http_latencies(url, make, args.samples)
                direct = sqlite_latencies(db, questions(random.Random(11))[name], args.samples)
                rows.append((name, http, direct))
    print(f"\ncitytwin query benchmark: {args.count:,} entities, {args.samples} samples each")
    head = ("question", "HTTP p50", "HTTP p99", "SQL p50", "SQL p99")
    print(f"{head[0]:<26}" + "".join(f"{h:>10}" for h in head[1:]) + "  target p99")
    targets = {"count=true over a type": "< 200 ms"}
    for name, http, direct in rows:
        figures = (pct(http, 50), pct(http, 99), pct(direct, 50), pct(direct, 99))
        target = targets.get(name, "< 50 ms")
        print(f"{name:<26}" + "".join(f"{f:>10.1f}" for f in figures) + f"  {target}")
    print("(milliseconds; 'SQL' runs the query citytwin compiles directly on the same file)")


if __name__ == "__main__":
    sys.exit(main())
