"""Live map benchmark: how late do changes reach the browser when a big twin changes every second?

    python -m bench.map [--entities 10000] [--seconds 20] [--workers 1] [--shared]

A citytwin server gets `--entities` AirQualityObserved entities around Shanghai; the map page runs
in headless Chromium (Debian's, driven by Playwright) with `?measure`, which records for every
change the delay from its observedAt (set by the writer when it sends the change) to its arrival
in the page. A driver then updates every entity once a second through batch updates. Printed: the
delay p50/p99, the changes sent and received, and the rate the driver achieved beside the rate
asked (if the server cannot take the writes, the lag grows without bound), first for a bare page
that only receives the stream (the ceiling), then for the map. The browser runs on the last core,
the server and the driver on the others (`--shared`: all on all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import citytwin, descendants, pct

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
BATCH = 1000
SENDERS = 2  # requests in flight
UPDATE = "/ngsi-ld/v1/entityOperations/update"
JSON = {"Content-Type": "application/json"}  # bodies made by orjson: the driver must stay light


def station(n: int, rng: random.Random, index: int) -> dict[str, Any]:
    lon, lat = rng.uniform(121.0, 121.9), rng.uniform(30.8, 31.5)
    return {
        "id": f"urn:ngsi-ld:AirQualityObserved:bench-{n}",
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "airQualityIndex": {"type": "Property", "value": index, "observedAt": _now()},
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def create(http: httpx.AsyncClient, count: int) -> None:
    rng = random.Random(7)
    for first in range(0, count, BATCH):
        body = [station(n, rng, 50) for n in range(first, min(first + BATCH, count))]
        got = await http.post("/ngsi-ld/v1/entityOperations/upsert", json=body)
        assert got.status_code in (201, 204), got.text


async def drive(http: httpx.AsyncClient, count: int, seconds: int) -> tuple[int, float]:
    """Update every entity once a second, BATCH entities a request, from SENDERS clients at
    once (a city's writers are many, not one waiting for each answer); (changes sent, seconds
    it took)."""
    sent, start = 0, time.perf_counter()

    async def send(first: int, second: int) -> int:
        stamp = _now()
        body = [
            {"id": f"urn:ngsi-ld:AirQualityObserved:bench-{n}",
             "airQualityIndex": {"type": "Property", "value": (n + second) % 300,
                                 "observedAt": stamp}}
            for n in range(first, min(first + BATCH, count))
        ]  # fmt: skip
        got = await http.post(UPDATE, content=orjson.dumps(body), headers=JSON)
        assert got.status_code == 204, got.text
        return len(body)

    for second in range(seconds):
        tick = time.perf_counter()
        firsts = list(range(0, count, BATCH))
        for at in range(0, len(firsts), SENDERS):
            done = await asyncio.gather(*(send(f, second) for f in firsts[at : at + SENDERS]))
            sent += sum(done)
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    return sent, time.perf_counter() - start


BARE = """() => {
  window.citytwinLags = [];
  const live = new EventSource('/citytwin/v1/stream?type=AirQualityObserved');
  live.addEventListener('notification', (event) => {
    const arrived = Date.now();
    for (const e of JSON.parse(event.data).data) {
      window.citytwinLags.push(arrived - Date.parse(e.airQualityIndex.observedAt));
    }
  });
}"""  # the ceiling: the same stream to a page that only receives it


async def measure(url: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The bare stream page, then the map, each while every entity changes once a second."""
    from playwright.async_api import async_playwright

    results = {}
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as http:
        print(f"creating {args.entities:,} entities...", flush=True)
        await create(http, args.entities)
        if args.browser_cores:  # Playwright's driver, and the Chromium it starts, inherit it
            os.sched_setaffinity(0, args.browser_cores)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            if args.driver_cores:
                os.sched_setaffinity(0, args.driver_cores)
            for name in ("bare stream", "live map"):
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                if name == "live map":
                    await page.goto(url + "/?measure")
                    ready = "document.body.dataset.ready === 'true'"
                    await page.wait_for_function(ready, timeout=120000)
                else:
                    await page.goto(url + "/citytwin/v1/metrics")
                    await page.evaluate(BARE)
                await page.wait_for_timeout(1000)
                if args.browser_cores:
                    pin_threads(os.getpid(), args.server_pid, args.browser_cores)
                print(f"{name}: every entity changes once a second for {args.seconds} s...")
                sent, took = await drive(http, args.entities, args.seconds)
                await page.wait_for_timeout(3000)  # the last changes' way to the page
                lags = await page.evaluate("window.citytwinLags")
                results[name] = {"sent": sent, "took": took, "lags": lags}
                await page.close()
            await browser.close()
    return results


def pin_threads(parent: int, server: int, cpus: set[int]) -> None:
    """Every thread of the browser's processes (this one's descendants but the server's) onto
    its cores: SwiftShader (Chromium's software GPU) starts its worker threads on every core,
    whatever it inherited."""
    for pid in set(descendants(parent)) - {server, *descendants(server)}:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)


def cores(shared: bool) -> tuple[set[int] | None, set[int] | None]:
    """(the server's cores, the browser's): the last core for the browser, the others for the
    server, so that neither measures the other's load. The driver (light: bodies made by orjson)
    runs beside the server: the browser can take its whole core, which would starve it."""
    every = sorted(os.sched_getaffinity(0))
    if shared or len(every) < 2:
        return None, None
    return set(every[:-1]), {every[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shared", action="store_true", help="browser and server share cores")
    args = parser.parse_args()
    server, browser = cores(args.shared)
    args.browser_cores, args.driver_cores = browser, server
    with tempfile.TemporaryDirectory() as tmp:
        with citytwin(str(Path(tmp) / "map.db"), args.workers, cpus=server) as (url, pid):
            args.server_pid = pid
            result = asyncio.run(measure(url, args))
    asked = args.entities
    print(f"\ncitytwin live map benchmark: {args.entities:,} entities, each changed once a second"
          f" for {args.seconds} s, {args.workers} worker(s), headless Chromium")  # fmt: skip
    if server is None:
        print("cores: browser and server shared")
    else:
        print(f"cores: server and driver on {sorted(server)}, browser on {sorted(browser or ())}")
    heads = ("changes/s", "reached", "p50 ms", "p99 ms", "max ms")
    print(f"{'page':<12} {heads[0]:>10} " + " ".join(f"{h:>8}" for h in heads[1:]))
    for name, r in result.items():
        lags, sent = r["lags"], r["sent"]
        rate, reached = sent / r["took"], len(lags) / max(sent, 1)
        p50, p99, top = (pct(lags, 50), pct(lags, 99), max(lags)) if lags else (0, 0, 0)
        print(f"{name:<12} {rate:>10,.0f} {reached:>8.1%} {p50:>8,.0f} {p99:>8,.0f} {top:>8,.0f}")
    bare, live = (result[n]["lags"] for n in ("bare stream", "live map"))
    if bare and live:
        print(f"the map's p99 is {pct(live, 99) / pct(bare, 99):.2f}x the bare stream's;"
              f" changes asked: {asked:,}/s; target: map p99 < 1,000 ms")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
