"""Store write path, side by side: SQLite and PostgreSQL (issue 8), each beside its raw ceiling.

    python -m bench.store [--entities 10000] [--rounds 5] [--batch 1000]

In one process, without HTTP: `--entities` sensors are created, then each round updates every
one of them once (`--batch` a transaction) through the store's `mutate` (the whole write path:
the plan, the entity rows, the change log, history and roll-ups). Beside it, the same rows
written raw: sqlite3 executemany of the entity update, a change row and a history row per
entity; asyncpg executemany of the same three statements. PostgreSQL runs in a throwaway
cluster (`bench/cluster.py`, durable: fsync on, as in production). Prints entities/s and the
ratio to each ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.cluster import postgres
from citytwin.store.base import Change, MutateFn
from citytwin.store.postgres import PostgresStore
from citytwin.store.sqlite import SqliteStore

PM25 = "https://smartdatamodels.org/dataModel.Environment/pm25"


def _at(second: int, n: int) -> str:
    return f"2026-11-30T10:{second // 60 % 60:02d}:{second % 60:02d}.{n % 1_000_000:06d}Z"


def sensor(n: int) -> dict[str, Any]:
    at = _at(0, n)
    return {"id": f"urn:ngsi-ld:AirQualityObserved:{n}", "type": ["https://example.org/AQ"],
            "createdAt": at, "modifiedAt": at,
            "attrs": {PM25: [{"type": "Property", "value": 1.0, "observedAt": at,
                              "createdAt": at, "modifiedAt": at}]}}  # fmt: skip


def create(entity: dict[str, Any]) -> MutateFn:
    return lambda current: Change(entity, "created")


def update(value: float, at: str, name: str = PM25) -> MutateFn:
    """A write of one attribute's value, naming what it touched (as the broker's writes do)."""

    def fn(current: dict[str, Any] | None) -> Change:
        assert current is not None
        was = {name: current["attrs"][name]}
        instance = {"type": "Property", "value": value, "observedAt": at,
                    "createdAt": current["createdAt"], "modifiedAt": at}  # fmt: skip
        current["attrs"][name] = [instance]
        current["modifiedAt"] = at
        return Change(current, "updated", touched=([name], was))

    return fn


async def through(store: Any, args: argparse.Namespace) -> float:
    """Entities updated per second through the store."""
    ids = [f"urn:ngsi-ld:AirQualityObserved:{n}" for n in range(args.entities)]
    for first in range(0, args.entities, args.batch):
        ops = [
            (i, create(sensor(first + k))) for k, i in enumerate(ids[first : first + args.batch])
        ]
        await store.mutate("", ops)
    start = time.perf_counter()
    for r in range(1, args.rounds + 1):
        for first in range(0, args.entities, args.batch):
            at = _at(r, first)
            part = ids[first : first + args.batch]
            await store.mutate("", [(i, update(float(r), at)) for i in part])
    return args.entities * args.rounds / (time.perf_counter() - start)


def raw_rows(args: argparse.Namespace, r: int, first: int) -> list[tuple[str, str, str]]:
    doc = orjson.dumps(sensor(0)).decode()
    return [(doc, f"urn:ngsi-ld:AirQualityObserved:{n}", _at(r, n))
            for n in range(first, min(first + args.batch, args.entities))]  # fmt: skip


def raw_sqlite(path: str, args: argparse.Namespace) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(
        "CREATE TABLE e (tenant TEXT, id TEXT, doc TEXT, m TEXT, PRIMARY KEY (tenant, id));"
        "CREATE TABLE c (seq INTEGER PRIMARY KEY, tenant TEXT, id TEXT, after TEXT, at TEXT);"
        "CREATE TABLE h (iid INTEGER PRIMARY KEY, sid INTEGER, observed INTEGER, body TEXT);"
        "CREATE INDEX h_o ON h (sid, observed);"
    )
    made = [(f"urn:ngsi-ld:AirQualityObserved:{n}",) for n in range(args.entities)]
    conn.executemany("INSERT INTO e VALUES ('', ?, '{}', '')", made)
    start = time.perf_counter()
    for r in range(1, args.rounds + 1):
        for first in range(0, args.entities, args.batch):
            rows = raw_rows(args, r, first)
            conn.execute("BEGIN")
            conn.executemany("UPDATE e SET doc = ?, m = ? WHERE tenant = '' AND id = ?",
                             [(d, a, i) for d, i, a in rows])  # fmt: skip
            conn.executemany("INSERT INTO c (tenant, id, after, at) VALUES ('', ?, ?, ?)",
                             [(i, d, a) for d, i, a in rows])  # fmt: skip
            conn.executemany("INSERT INTO h (sid, observed, body) VALUES (?, ?, ?)",
                             [(k, r, d) for k, (d, _, _) in enumerate(rows)])  # fmt: skip
            conn.execute("COMMIT")
    rate = args.entities * args.rounds / (time.perf_counter() - start)
    conn.close()
    return rate


async def raw_postgres(url: str, args: argparse.Namespace) -> float:
    conn = await asyncpg.connect(url)
    await conn.execute(
        "CREATE TABLE e (tenant TEXT, id TEXT, raw TEXT, doc JSONB GENERATED ALWAYS AS"
        " (raw::jsonb) STORED, m TEXT, PRIMARY KEY (tenant, id));"
        "CREATE TABLE c (tenant TEXT, id TEXT, seq BIGINT GENERATED ALWAYS AS IDENTITY,"
        " after TEXT, at TEXT, PRIMARY KEY (tenant, id, seq));"
        "CREATE TABLE h (tenant TEXT, id TEXT, attr TEXT, created BIGINT,"
        " iid BIGINT GENERATED ALWAYS AS IDENTITY, body JSONB,"
        " PRIMARY KEY (tenant, id, attr, created, iid));"
    )
    made = [(f"urn:ngsi-ld:AirQualityObserved:{n}",) for n in range(args.entities)]
    await conn.executemany("INSERT INTO e (tenant, id, raw, m) VALUES ('', $1, '{}', '')", made)
    start = time.perf_counter()
    for r in range(1, args.rounds + 1):
        for first in range(0, args.entities, args.batch):
            rows = raw_rows(args, r, first)
            async with conn.transaction():
                await conn.executemany(
                    "UPDATE e SET raw = $1, m = $3 WHERE tenant = '' AND id = $2", rows
                )
                await conn.executemany(
                    "INSERT INTO c (tenant, id, after, at) VALUES ('', $2, $1, $3)", rows
                )
                await conn.executemany(
                    "INSERT INTO h (tenant, id, attr, created, body)"
                    " VALUES ('', $2, 'pm25', $3, $1::jsonb)",
                    [(d, i, r) for d, i, _ in rows],
                )
    rate = args.entities * args.rounds / (time.perf_counter() - start)
    await conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite...", flush=True)
        results["SQLite"] = (asyncio.run(_measured(SqliteStore(str(Path(tmp) / "s.db")), args)),
                             raw_sqlite(str(Path(tmp) / "raw.db"), args))  # fmt: skip
    with postgres(durable=True) as url:
        print("PostgreSQL...", flush=True)
        results["PostgreSQL"] = (asyncio.run(_measured(PostgresStore(url), args)),
                                 asyncio.run(raw_postgres(url, args)))  # fmt: skip
    print(f"\ncitytwin store write path: {args.entities:,} entities updated {args.rounds} times,"
          f" {args.batch:,} a transaction, in-process (no HTTP)")  # fmt: skip
    print(f"{'store':<12} {'entities/s':>11} {'raw ceiling':>12} {'ratio':>6}")
    for name, (store, raw) in results.items():
        print(f"{name:<12} {store:>11,.0f} {raw:>12,.0f} {store / raw:>6.2f}")


async def _measured(store: Any, args: argparse.Namespace) -> float:
    await store.open()
    try:
        return await through(store, args)
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
