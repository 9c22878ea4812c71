"""Issue 4 benchmark: notifications under a steady stream of updates.

    python -m bench.notify [--subscriptions 1000] [--connections 8] [--seconds 10]
                           [--store sqlite|postgres|URL] [--workers 1]

1,000 subscriptions with mixed filters (plain, q, watchedAttributes), each on its own entity;
updates over HTTP from wrk (closed loop, a few connections); a local receiver (a bare ASGI app
in its own process) counts what arrives. Prints change-to-receipt latency (receipt time minus
the changed attribute's modifiedAt) p50/p99, notifications delivered per second, and
notifications lost (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import pg
from bench.harness import Load, citytwin, free_port, process, wrk


def subscription(n: int, receiver: str) -> dict[str, object]:
    body: dict[str, object] = {
        "id": f"urn:ngsi-ld:Subscription:bench:{n}",
        "type": "Subscription",
        "entities": [{"type": "Sensor", "id": f"urn:ngsi-ld:Sensor:{n}"}],
        "notification": {"endpoint": {"uri": receiver}, "sysAttrs": True, "attributes": ["ts"]},
    }
    if n % 3 == 1:
        body["q"] = "ts>=0"
    elif n % 3 == 2:
        body["watchedAttributes"] = ["ts"]
    return body


async def setup(url: str, count: int, receiver: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        sensors = [
            {"id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor", "ts": 0} for n in range(count)
        ]
        for first in range(0, count, 500):
            got = await client.post("/entityOperations/upsert", json=sensors[first : first + 500])
            assert got.status_code in (201, 204), got.text
        for n in range(count):
            got = await client.post("/subscriptions", json=subscription(n, receiver))
            assert got.status_code == 201, got.text


UPDATE_LUA = """
math.randomseed(1)
local headers = {["Content-Type"] = "application/json"}
request = function()
  local n = math.random(0, %(count)d - 1)
  local path = "/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:" .. n .. "/attrs/ts"
  return wrk.format("PATCH", path, headers, '{"value": 1}')
end
"""


def load(url: str, count: int, connections: int, seconds: int) -> Load:
    """Updates from wrk (a Python client would be the bottleneck on 2 cores)."""
    return wrk(url, UPDATE_LUA % {"count": count}, connections, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=10)
    pg.add_options(parser)
    args = parser.parse_args()
    port = free_port()
    receiver = f"http://127.0.0.1:{port}/notify"
    args_receiver = [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--port", str(port),
                     "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, process(args_receiver, receiver):
        store = pg.database(args.store, str(Path(tmp) / "twin.db"))
        with store as db, citytwin(db, args.workers) as (url, _):
            print(f"setting up {args.subscriptions} entities and subscriptions...", flush=True)
            asyncio.run(setup(url + "/ngsi-ld/v1", args.subscriptions, receiver))
            httpx.get(receiver)  # warm the receiver
            print(f"updating with wrk, {args.connections} connections, {args.seconds} s...",
                  flush=True)  # fmt: skip
            updates = load(url, args.subscriptions, args.connections, args.seconds)
            sent, elapsed = updates.requests - updates.errors, float(args.seconds)
            stats = _drain(receiver, sent)
    latencies = stats["latencies_ms"]
    received = sum(stats["per_entity"].values())
    print(f"\ncitytwin notification benchmark on {pg.store_name(db)}, {args.workers} worker(s):"
          f" {args.subscriptions} subscriptions, "
          f"{sent} updates acknowledged in {elapsed:.1f} s ({sent / elapsed:,.0f}/s)")  # fmt: skip
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    print(f"notifications delivered: {received} ({received / elapsed:,.0f}/s)")
    print(f"change-to-receipt latency: p50 {quantiles[49]:.1f} ms, p99 {quantiles[98]:.1f} ms"
          "  (target p99 < 20 ms at 1,000/s)")  # fmt: skip
    print(f"update requests: p50 {updates.p50_ms:.1f} ms, p99 {updates.p99_ms:.1f} ms")
    print(f"notifications lost: {max(sent - received, 0)}  (must be 0)")


def _drain(receiver: str, expected: int) -> dict[str, object]:
    """Wait (up to 30 s) until every acknowledged update has been notified."""
    deadline = time.monotonic() + 30
    while True:
        stats = httpx.get(receiver, timeout=30).json()
        if sum(stats["per_entity"].values()) >= expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.5)


if __name__ == "__main__":
    main()
