"""Issue 2 benchmark: batch upsert, PATCH and GET against this machine's own ceilings.

    python -m bench.provision [--count 100000] [--seconds 10] [--workers 1] [--store sqlite]

Ceilings measured in the same run: raw sqlite3 executemany of the same documents (for batch
upsert) and a bare ASGI app under the same uvicorn settings (for GET and PATCH). On PostgreSQL
(`--store postgres` or a URL, see bench/pg.py) the batch upsert's ceiling is asyncpg
executemany of the same documents (`INSERT ... ON CONFLICT DO UPDATE`, a transaction a chunk,
as many connections as upload streams), and GET and PATCH are also shown beside raw asyncpg
primary-key reads and single-row UPDATE commits at random ids, as many processes as workers.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import pg
from bench.data import TYPES, entities
from bench.harness import Load, bare, citytwin, rss_mb, wrk
from citytwin.store import is_postgres

CHUNK = 1000
_PICK = """
math.randomseed(%(seed)d)
local types = {%(types)s}
local function path()
  local n = math.random(0, %(count)d - 1)
  return string.format("/ngsi-ld/v1/entities/urn:ngsi-ld:%%s:%%07d", types[n %% %(ntypes)d + 1], n)
end
"""
GET_LUA = _PICK + 'request = function() return wrk.format("GET", path()) end\n'
PATCH_LUA = (
    _PICK
    + """
local headers = {["Content-Type"] = "application/json"}
request = function()
  local body = string.format('{"value": %%d}', math.random(0, 500))
  return wrk.format("PATCH", path() .. "/attrs/pm25", headers, body)
end
"""
)


def lua(template: str, count: int) -> str:
    names = ", ".join(f'"{t}"' for t in TYPES)
    return template % {"seed": 42, "types": names, "count": count, "ntypes": len(TYPES)}


def raw_sqlite(db: Path, chunks: list[list[bytes]], ids: list[list[str]]) -> float:
    """The ceiling: the same documents written by plain executemany, one transaction a chunk."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE entities (tenant TEXT, id TEXT, types TEXT, doc TEXT, created_at TEXT,"
        " modified_at TEXT, PRIMARY KEY (tenant, id))"
    )
    start = time.perf_counter()
    for docs, names in zip(chunks, ids, strict=True):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR REPLACE INTO entities VALUES ('', ?, '[]', ?, 'now', 'now')",
            [(i, d.decode()) for i, d in zip(names, docs, strict=True)],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return sum(len(c) for c in chunks) / elapsed


def http_upsert(url: str, bodies: list[bytes], count: int, streams: int) -> float:
    """Upload the chunks over `streams` connections at once, as a pipelining importer would."""
    headers = {"Content-Type": "application/json"}
    pending = list(reversed(bodies))

    def upload() -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            while pending:
                body = pending.pop()
                got = client.post(
                    "/ngsi-ld/v1/entityOperations/upsert", content=body, headers=headers
                )
                if got.status_code not in (201, 204):
                    raise SystemExit(f"upsert failed: {got.status_code} {got.text[:300]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        for future in [pool.submit(upload) for _ in range(streams)]:
            future.result()
    return count / (time.perf_counter() - start)


Row = tuple[str, float, float, str, str, str]  # name, ours, ceiling, target, latency, ceiling's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--streams", type=int, default=2, help="concurrent upsert uploads")
    pg.add_options(parser)
    args = parser.parse_args()

    print(f"generating {args.count} entities (~20 attributes each)...", flush=True)
    docs = entities(args.count)
    chunks = [docs[i : i + CHUNK] for i in range(0, len(docs), CHUNK)]
    with tempfile.TemporaryDirectory() as tmp:
        with pg.database(args.store, str(Path(tmp) / "twin.db")) as db:
            if is_postgres(db):
                rows = measured_postgres(db, args, chunks)
            else:
                rows = measured_sqlite(db, args, chunks, Path(tmp) / "raw.db")
    report(args, pg.store_name(db), rows)


def measured_sqlite(
    db: str, args: argparse.Namespace, chunks: list[list[dict[str, Any]]], raw: Path
) -> list[Row]:
    print("ceiling: raw sqlite3 executemany...", flush=True)
    raw_docs = [[orjson.dumps(d) for d in c] for c in chunks]
    ceiling = raw_sqlite(raw, raw_docs, [[d["id"] for d in c] for c in chunks])
    upsert, get, patch, rss = through_http(db, args, chunks)
    bare_get, bare_patch = bare_loads(args)
    return [
        ("batch upsert (entities/s)", upsert, ceiling, "50,000", "", "sqlite3 executemany"),
        *http_rows(get, patch, bare_get, bare_patch),
        ("server RSS (MB)", rss, float("nan"), "< 300", "", ""),
    ]


def measured_postgres(
    db: str, args: argparse.Namespace, chunks: list[list[dict[str, Any]]]
) -> list[Row]:
    pg.migrated(db)
    print("ceiling: asyncpg executemany upsert...", flush=True)
    rows = [[(d["id"], [d["type"]], orjson.dumps(d).decode()) for d in c] for c in chunks]
    ceiling = pg.upsert_rate(db, rows, args.streams)
    upsert, get, patch, rss = through_http(db, args, chunks)
    ids = [d["id"] for c in chunks for d in c]
    print("ceiling: asyncpg primary-key reads and single-row updates...", flush=True)
    reads = pg.row_rate(db, pg.READ_ONE, ids, args.seconds, args.workers)
    updates = pg.update_rate(db, ids, args.seconds, args.workers)
    bare_get, bare_patch = bare_loads(args)
    get_row, patch_row = http_rows(get, patch, bare_get, bare_patch)
    return [
        ("batch upsert (entities/s)", upsert, ceiling, "50,000", "", "asyncpg executemany upsert"),
        get_row,
        ("  the same GET", get.rate, reads, "", "", "asyncpg PK read"),
        patch_row,
        ("  the same PATCH", patch.rate, updates, "", "", "asyncpg 1-row UPDATE commit"),
        ("server RSS (MB)", rss, float("nan"), "< 300", "", "(PostgreSQL not counted)"),
    ]


def through_http(
    db: str, args: argparse.Namespace, chunks: list[list[dict[str, Any]]]
) -> tuple[float, Load, Load, float]:
    """Batch upsert, then GET and PATCH under wrk; the server's largest RSS seen."""
    bodies = [orjson.dumps(c) for c in chunks]
    with citytwin(db, args.workers) as (url, pid):
        print(f"citytwin: batch upsert in chunks of {CHUNK}...", flush=True)
        upsert = http_upsert(url, bodies, args.count, args.streams)
        rss_loaded = rss_mb(pid)
        print("citytwin: GET and PATCH under wrk...", flush=True)
        get = wrk(url, lua(GET_LUA, args.count), args.connections, args.seconds)
        patch = wrk(url, lua(PATCH_LUA, args.count), args.connections, args.seconds)
        rss_after = rss_mb(pid)
    return upsert, get, patch, max(rss_loaded, rss_after)


def bare_loads(args: argparse.Namespace) -> tuple[Load, Load]:
    with bare(args.workers) as bare_url:
        print("ceiling: bare ASGI app under the same uvicorn settings...", flush=True)
        bare_get = wrk(bare_url, lua(GET_LUA, args.count), args.connections, args.seconds)
        bare_patch = wrk(bare_url, lua(PATCH_LUA, args.count), args.connections, args.seconds)
    return bare_get, bare_patch


def http_rows(get: Load, patch: Load, bare_get: Load, bare_patch: Load) -> list[Row]:
    if get.errors + patch.errors:
        print(f"WARNING: {get.errors + patch.errors} non-2xx responses or socket errors")
    return [
        ("GET one entity (req/s)", get.rate, bare_get.rate, "10,000", _lat(get), "bare ASGI app"),
        ("PATCH one attribute (req/s)", patch.rate, bare_patch.rate, "5,000", _lat(patch),
         "bare ASGI app"),
    ]  # fmt: skip


def report(args: argparse.Namespace, store: str, rows: list[Row]) -> None:
    print()
    print(f"citytwin provision benchmark on {store}: {args.count} entities,"
          f" {args.connections} connections,")  # fmt: skip
    print(f"{args.workers} worker(s), {args.streams} upload streams, {args.seconds} s per load,")
    print("wrk with one thread")
    print(f"{'operation':<28}{'citytwin':>10}{'ceiling':>10}{'ratio':>7}{'target':>9}"
          f"  {'p50/p99 ms':<12}ceiling")  # fmt: skip
    for name, ours, top, target, lat, what in rows:
        if top != top:  # no ceiling
            print(f"{name:<28}{ours:>10,.0f}{'':>17}{target:>9}  {lat:<12}{what}")
            continue
        print(f"{name:<28}{ours:>10,.0f}{top:>10,.0f}{ours / top:>7.2f}{target:>9}"
              f"  {lat:<12}{what}")  # fmt: skip


def _lat(load: Load) -> str:
    return f"{load.p50_ms:.1f}/{load.p99_ms:.1f}"


if __name__ == "__main__":
    main()
