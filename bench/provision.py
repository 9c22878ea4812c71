"""Issue 2 benchmark: batch upsert, PATCH and GET against this machine's own ceilings.

    python -m bench.provision [--count 100000] [--seconds 10] [--workers 1]

Ceilings measured in the same run: raw sqlite3 executemany of the same documents (for batch
upsert) and a bare ASGI app under the same uvicorn settings (for GET and PATCH).
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from bench.data import TYPES, entities
from bench.harness import Load, bare, citytwin, rss_mb, wrk

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--streams", type=int, default=2, help="concurrent upsert uploads")
    args = parser.parse_args()

    print(f"generating {args.count} entities (~20 attributes each)...", flush=True)
    docs = entities(args.count)
    chunks = [docs[i : i + CHUNK] for i in range(0, len(docs), CHUNK)]
    raw_docs = [[orjson.dumps(d) for d in c] for c in chunks]
    bodies = [orjson.dumps(c) for c in chunks]
    ids = [[d["id"] for d in c] for c in chunks]

    with tempfile.TemporaryDirectory() as tmp:
        print("ceiling: raw sqlite3 executemany...", flush=True)
        ceiling = raw_sqlite(Path(tmp) / "raw.db", raw_docs, ids)
        with citytwin(str(Path(tmp) / "twin.db"), args.workers) as (url, pid):
            print(f"citytwin: batch upsert in chunks of {CHUNK}...", flush=True)
            upsert = http_upsert(url, bodies, args.count, args.streams)
            rss_loaded = rss_mb(pid)
            print("citytwin: GET and PATCH under wrk...", flush=True)
            get = wrk(url, lua(GET_LUA, args.count), args.connections, args.seconds)
            patch = wrk(url, lua(PATCH_LUA, args.count), args.connections, args.seconds)
            rss_after = rss_mb(pid)
        with bare(args.workers) as bare_url:
            print("ceiling: bare ASGI app under the same uvicorn settings...", flush=True)
            bare_get = wrk(bare_url, lua(GET_LUA, args.count), args.connections, args.seconds)
            bare_patch = wrk(bare_url, lua(PATCH_LUA, args.count), args.connections, args.seconds)

    report(args, ceiling, upsert, get, patch, bare_get, bare_patch, max(rss_loaded, rss_after))


def report(
    args: argparse.Namespace,
    ceiling: float,
    upsert: float,
    get: Load,
    patch: Load,
    bare_get: Load,
    bare_patch: Load,
    rss: float,
) -> None:
    print()
    print(f"citytwin provision benchmark: {args.count} entities, {args.connections} connections,")
    print(f"{args.workers} worker(s), {args.streams} upload streams, {args.seconds} s per load,")
    print("wrk with one thread")
    print(f"{'operation':<28}{'citytwin':>12}{'ceiling':>12}{'ratio':>8}{'target':>10}  p50/p99 ms")
    rows = [
        ("batch upsert (entities/s)", upsert, ceiling, 50_000, ""),
        ("GET one entity (req/s)", get.rate, bare_get.rate, 10_000, _lat(get)),
        ("PATCH one attribute (req/s)", patch.rate, bare_patch.rate, 5_000, _lat(patch)),
    ]
    for name, ours, top, target, lat in rows:
        print(f"{name:<28}{ours:>12,.0f}{top:>12,.0f}{ours / top:>8.2f}{target:>10,}  {lat}")
    print(f"{'server RSS (MB)':<28}{rss:>12,.0f}{'':>12}{'':>8}{'< 300':>10}")
    errors = get.errors + patch.errors
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors during the load")


def _lat(load: Load) -> str:
    return f"{load.p50_ms:.1f}/{load.p99_ms:.1f}"


if __name__ == "__main__":
    main()
