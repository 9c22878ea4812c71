"""Issue 5 benchmark: history at city scale, over HTTP, beside the same reads done by SQL directly.

    python -m bench.temporal [--sensors 1000] [--observations 10000] [--samples 100] [--db F]

Loads SENSORS x OBSERVATIONS temperature readings (one a minute) through the temporal API's
write path in-process, starts the server on that file, and prints p50/p99 of
- one attribute of one sensor over one day (1,440 instances), and
- hourly avg over 30 days for 100 sensors (aggregatedValues),
each beside the same read done with citytwin's SQL directly on the file; then bytes on disk per
instance, and the load rate beside raw executemany into a table of the same shape.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.harness import citytwin, pct

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 1000  # instances a request
PARALLEL = 8  # requests in flight while loading (they share group commits)
WARMUP = 5


def sensor_id(n: int) -> str:
    return f"urn:ngsi-ld:AirSensor:{n:05d}"


def minute(n: int) -> str:
    return (START + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def readings(n: int, first: int, count: int, rng: random.Random) -> dict[str, Any]:
    """A daily cycle plus noise, like the demo city's stations."""
    temperature = [
        {
            "type": "Property",
            "value": round(18 + 6 * ((m % 1440) / 1440) + rng.gauss(0, 0.5), 2),
            "unitCode": "CEL",
            "observedAt": minute(m),
        }
        for m in range(first, first + count)
    ]
    return {"id": sensor_id(n), "type": "AirSensor", "temperature": temperature}


async def load(db: str, sensors: int, observations: int) -> float:
    """Fill the history through the temporal write path (Timeline.upsert); instances/s."""
    from citytwin.broker import Broker
    from citytwin.contexts import ContextResolver
    from citytwin.store.sqlite import SqliteStore
    from citytwin.timeline import Timeline

    store = SqliteStore(db)
    await store.open()
    timeline, ctx, rng = Timeline(Broker(store), 10_000), ContextResolver().core, random.Random(5)
    jobs = [(n, first) for first in range(0, observations, CHUNK) for n in range(sensors)]
    total, done, start = sensors * observations, 0, time.perf_counter()
    for i in range(0, len(jobs), PARALLEL):
        batch = jobs[i : i + PARALLEL]
        bodies = [readings(n, f, min(CHUNK, observations - f), rng) for n, f in batch]
        await asyncio.gather(*(timeline.upsert("", body, ctx) for body in bodies))
        done += sum(len(b["temperature"]) for b in bodies)
        rate = done / (time.perf_counter() - start)
        if i % (PARALLEL * 50) == 0 or done == total:
            print(f"\rloading: {done:,}/{total:,} instances ({rate:,.0f}/s)", end="", flush=True)
    print()
    await store.close()
    return total / (time.perf_counter() - start)


def raw_insert_rate(rows: int = 1_000_000) -> float:
    """The ceiling: executemany of rows of the same shape into the same schema, no broker."""
    from citytwin.store.sqlite_history import V4

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(str(Path(tmp) / "raw.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in filter(str.strip, V4.split(";")):
            conn.execute(statement)
        body = (
            '{"type":"Property","value":21.5,"unitCode":"CEL","observedAt":"2026-01-01T00:00:00Z"}'
        )
        start = time.perf_counter()
        for first in range(0, rows, 10_000):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO history (sid, observed, created, modified, num, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (n % 1000, n * 60_000_000, n, n, 21.5, body)
                    for n in range(first, first + 10_000)
                ],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return rows / elapsed


def day_params(rng: random.Random, sensors: int, days: int) -> tuple[str, dict[str, str]]:
    day = rng.randrange(days)
    return sensor_id(rng.randrange(sensors)), {
        "attrs": "temperature", "timerel": "between",
        "timeAt": minute(day * 1440), "endTimeAt": minute((day + 1) * 1440),
    }  # fmt: skip


def month_params(rng: random.Random, sensors: int) -> dict[str, str]:
    ids = sorted(sensor_id(n) for n in rng.sample(range(sensors), 100))
    return {
        "type": "AirSensor", "id": ",".join(ids), "limit": "100", "attrs": "temperature",
        "options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT1H",
        "timerel": "between", "timeAt": minute(0), "endTimeAt": minute(30 * 1440),
    }  # fmt: skip


def timed(fn: Callable[[], Any], samples: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def over_http(url: str, sensors: int, days: int, samples: int) -> tuple[list[float], list[float]]:
    rng = random.Random(13)
    with httpx.Client(base_url=url + "/ngsi-ld/v1/temporal", timeout=120) as client:

        def day() -> None:
            entity, params = day_params(rng, sensors, days)
            got = client.get(f"/entities/{entity}", params=params)
            if got.status_code != 200 or len(got.json()["temperature"]) < 1400:
                raise SystemExit(f"day: {got.status_code} {got.text[:300]}")

        def month() -> None:
            got = client.get("/entities", params=month_params(rng, sensors))
            if got.status_code != 200 or len(got.json()) != 100:
                raise SystemExit(f"30 days: {got.status_code} {got.text[:300]}")

        return timed(day, samples), timed(month, max(samples // 5, 10))


def direct(db: str, sensors: int, days: int, samples: int) -> tuple[list[float], list[float]]:
    """The same reads with citytwin's SQL on the file: no HTTP, no rendering."""
    from citytwin.model.history import HistoryQuery, TimeWindow
    from citytwin.model.times import Duration, to_micros
    from citytwin.store import sqlite_aggregate
    from citytwin.store import sqlite_history as h
    from citytwin.store.sqlite import connect
    from citytwin.timeline import period_spans

    conn = connect(db)
    rng = random.Random(13)

    def series(ids: list[str]) -> list[h.Series]:
        return h.series_of(conn, "", ids, None)

    def day() -> None:
        entity, p = day_params(rng, sensors, days)
        window = TimeWindow("observedAt", to_micros(p["timeAt"]), to_micros(p["endTimeAt"]))
        h.read(conn, series([entity]), HistoryQuery(window))

    def month() -> None:
        p = month_params(rng, sensors)
        window = TimeWindow("observedAt", to_micros(p["timeAt"]), to_micros(p["endTimeAt"]))
        chosen = series(p["id"].split(","))
        low, high = h.bounds(conn, chosen, window)
        assert low is not None and high is not None
        spans, _ = period_spans(window, Duration(0, 3_600_000_000), low, high)
        sqlite_aggregate.aggregate(conn, chosen, "observedAt", spans, ("avg",))

    out = timed(day, samples), timed(month, max(samples // 5, 10))
    conn.close()
    return out


def on_disk(db: str, instances: int) -> float:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
    return size / instances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--db", help="reuse (or create) this file instead of a temporary one")
    args = parser.parse_args()
    total = args.sensors * args.observations
    days = args.observations // 1440
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "history.db")
        load_rate = None
        if not Path(db).exists():
            load_rate = asyncio.run(load(db, args.sensors, args.observations))
        print("measuring the raw insert ceiling...", flush=True)
        ceiling = raw_insert_rate()
        print("measuring reads over HTTP...", flush=True)
        with citytwin(db, 1) as (url, _):
            http_day, http_month = over_http(url, args.sensors, days, args.samples)
        print("measuring the same reads by SQL...", flush=True)
        sql_day, sql_month = direct(db, args.sensors, days, args.samples)
        per_instance = on_disk(db, total)
    print(f"\ncitytwin temporal benchmark: {args.sensors:,} sensors x {args.observations:,}"
          f" observations = {total:,} instances")  # fmt: skip
    print(f"{'read':<34}{'HTTP p50':>10}{'HTTP p99':>10}{'SQL p50':>10}{'SQL p99':>10}  target")
    for name, http, sql, target in (
        ("one attribute, one day (1,440)", http_day, sql_day, "p99 < 100 ms"),
        ("hourly avg, 30 days, 100 sensors", http_month, sql_month, "< 500 ms"),
    ):
        figures = (pct(http, 50), pct(http, 99), pct(sql, 50), pct(sql, 99))
        print(f"{name:<34}" + "".join(f"{f:>10.1f}" for f in figures) + f"  {target}")
    print("(milliseconds; 'SQL' runs citytwin's history SQL directly on the same file)")
    print(f"bytes on disk per instance: {per_instance:.0f} (database file, all tables and indexes)")
    if load_rate is not None:
        print(f"load through the temporal write path: {load_rate:,.0f} instances/s; raw"
              f" executemany into the same schema: {ceiling:,.0f}/s"
              f" (ratio {load_rate / ceiling:.2f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
