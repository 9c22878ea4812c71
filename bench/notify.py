"""Issue 4 benchmark: notifications under a steady stream of updates.

    python -m bench.notify [--subscriptions 1000] [--rate 1000] [--seconds 10]

1,000 subscriptions with mixed filters (plain, q, watchedAttributes), each on its own entity;
updates at a steady rate over HTTP; a local receiver (a bare ASGI app in its own process) counts
what arrives. Prints change-to-receipt latency (receipt time minus the changed attribute's
modifiedAt) p50/p99, notifications delivered per second, and notifications lost (must be 0).
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

from bench.harness import citytwin, free_port, process


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


async def load(url: str, count: int, rate: int, seconds: int) -> tuple[int, float]:
    """PATCH one entity's ts at a steady rate; returns acknowledged updates and elapsed time."""
    done = 0
    start = time.perf_counter()
    total = rate * seconds
    timeout = httpx.Timeout(30, pool=None)  # a backlog waits for a connection, it is not an error
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def one(n: int) -> None:
            nonlocal done
            got = await client.patch(f"/entities/urn:ngsi-ld:Sensor:{n % count}/attrs/ts",
                                     json={"value": n})  # fmt: skip
            if got.status_code == 204:
                done += 1

        tasks = []
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    port = free_port()
    receiver = f"http://127.0.0.1:{port}/notify"
    args_receiver = [sys.executable, "-m", "uvicorn", "bench.receiver:app", "--port", str(port),
                     "--log-level", "warning", "--no-access-log"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, process(args_receiver, receiver):
        with citytwin(str(Path(tmp) / "twin.db"), 1) as (url, _):
            print(f"setting up {args.subscriptions} entities and subscriptions...", flush=True)
            asyncio.run(setup(url + "/ngsi-ld/v1", args.subscriptions, receiver))
            httpx.get(receiver)  # warm the receiver
            print(f"updating at {args.rate}/s for {args.seconds} s...", flush=True)
            sent, elapsed = asyncio.run(
                load(url + "/ngsi-ld/v1", args.subscriptions, args.rate, args.seconds)
            )
            stats = _drain(receiver, sent)
    latencies = stats["latencies_ms"]
    received = sum(stats["per_entity"].values())
    print(f"\ncitytwin notification benchmark: {args.subscriptions} subscriptions, "
          f"{sent} updates acknowledged in {elapsed:.1f} s ({sent / elapsed:,.0f}/s)")  # fmt: skip
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    print(f"notifications delivered: {received} ({received / elapsed:,.0f}/s)")
    print(f"change-to-receipt latency: p50 {quantiles[49]:.1f} ms, p99 {quantiles[98]:.1f} ms"
          "  (target p99 < 20 ms at 1,000/s)")  # fmt: skip
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
