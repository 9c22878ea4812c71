"""Issue 5 benchmark: history at city scale, over HTTP, beside the same reads done by SQL directly.

    python -m bench.temporal [--sensors 1000] [--observations 10000] [--samples 100] [--db F]
                             [--store sqlite] [--workers 1]

Loads SENSORS x OBSERVATIONS temperature readings (one a minute) through the temporal API's
write path in-process, starts the server on that store, and prints p50/p99 of
- one attribute of one sensor over one day (1,440 instances), and
- hourly avg over 30 days for 100 sensors (aggregatedValues),
each beside the same read done with citytwin's SQL directly on the file (on PostgreSQL: the
store's own reads, in-process, and also the same read written by hand with asyncpg, `raw`);
then bytes on disk per instance, and the load rate beside raw executemany into a table of the
same shape.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import pg
from bench.harness import Latencies, LatencyRow, citytwin, latency_legend, latency_table
from citytwin.store import is_postgres

START = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 1000  # instances a request
PARALLEL = 8  # requests in flight while loading (they share group commits)
WARMUP = 5
RAW_ROWS = 1_000_000  # rows of the raw insert ceiling


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
    from citytwin.store import open_store
    from citytwin.timeline import Timeline

    store = open_store(db)
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


def raw_insert_rate(rows: int = RAW_ROWS) -> float:
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


def direct_postgres(url: str, sensors: int, days: int, samples: int) -> tuple[Latencies, Latencies]:
    """The same reads through the PostgreSQL store in-process: its SQL, no HTTP, no rendering
    (the 100 sensors' aggregation in one call, as `direct` does on SQLite)."""
    from citytwin.model.history import HistoryQuery, TimeWindow
    from citytwin.model.times import Duration, to_micros
    from citytwin.store.postgres import PostgresStore
    from citytwin.timeline import period_spans

    rng = random.Random(13)

    async def run() -> tuple[Latencies, Latencies]:
        store = PostgresStore(url)
        await store.open()

        async def day() -> None:
            entity, p = day_params(rng, sensors, days)
            window = TimeWindow("observedAt", to_micros(p["timeAt"]), to_micros(p["endTimeAt"]))
            await store.history("", [entity], HistoryQuery(window))

        async def month() -> None:
            p = month_params(rng, sensors)
            window = TimeWindow("observedAt", to_micros(p["timeAt"]), to_micros(p["endTimeAt"]))

            def periods(entity: str, low: int, high: int) -> list[tuple[int, int]]:
                return period_spans(window, Duration(0, 3_600_000_000), low, high)[0]

            ids = p["id"].split(",")
            await store.aggregate("", ids, HistoryQuery(window), periods, ("avg",))

        try:
            return await atimed(day, samples), await atimed(month, max(samples // 5, 10))
        finally:
            await store.close()

    return asyncio.run(run())


async def atimed(fn: Callable[[], Awaitable[Any]], samples: int) -> list[float]:
    for _ in range(WARMUP):
        await fn()
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def raw_postgres(url: str, sensors: int, days: int, samples: int) -> tuple[Latencies, Latencies]:
    """The same reads written by hand: the day's instances of one series; the 100 sensors'
    hourly averages from the hourly roll-ups in one GROUP BY."""
    from citytwin.model.times import to_micros
    from citytwin.store.sqlite_rollup import HOUR

    rng, attr = random.Random(13), pg.history_attr(url)
    days_drawn = [day_params(rng, sensors, days) for _ in range(WARMUP + samples)]
    day = [(pg.DAY, [entity, attr, to_micros(p["timeAt"]), to_micros(p["endTimeAt"])])
           for entity, p in days_drawn]  # fmt: skip
    months = [month_params(rng, sensors) for _ in range(WARMUP + max(samples // 5, 10))]
    month = [(pg.HOURLY_AVG, [p["id"].split(","), attr, to_micros(p["timeAt"]) // HOUR,
                              to_micros(p["endTimeAt"]) // HOUR]) for p in months]  # fmt: skip
    return pg.timed_fetches(url, day, WARMUP), pg.timed_fetches(url, month, WARMUP)


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
    parser.add_argument("--db", help="SQLite: reuse (or create) this file, not a temporary one")
    pg.add_options(parser)
    args = parser.parse_args()
    total = args.sensors * args.observations
    with tempfile.TemporaryDirectory() as tmp:
        with pg.database(args.store, args.db or str(Path(tmp) / "history.db")) as db:
            load_rate = None
            if pg.filled(db, "history"):
                print("reusing the history already there", flush=True)
            else:
                load_rate = asyncio.run(load(db, args.sensors, args.observations))
            if is_postgres(db):
                pg.settled(db)
            rows = measured(db, args)
            per_instance = bytes_per_instance(db, total)
            print("measuring the raw insert ceiling...", flush=True)  # last: its writes settle
            ceiling = pg.history_insert_rate(db, RAW_ROWS) if is_postgres(db) else raw_insert_rate()
    print(f"\ncitytwin temporal benchmark: {args.sensors:,} sensors x {args.observations:,}"
          f" observations = {total:,} instances on {pg.store_name(db)},"
          f" {args.workers} worker(s)")  # fmt: skip
    latency_table("read", rows, 34)
    raw = "does the same read" if is_postgres(db) else None
    latency_legend("citytwin's history SQL", raw)
    print(f"bytes on disk per instance: {per_instance:.0f} (all tables and indexes)")
    if load_rate is not None:
        print(f"load through the temporal write path: {load_rate:,.0f} instances/s; raw"
              f" executemany into the same schema: {ceiling:,.0f}/s"
              f" (ratio {load_rate / ceiling:.2f})")  # fmt: skip


def measured(db: str, args: argparse.Namespace) -> list[LatencyRow]:
    """Both reads over HTTP, then directly (the same random draws)."""
    days = args.observations // 1440
    print("measuring reads over HTTP...", flush=True)
    with citytwin(db, args.workers) as (url, _):
        http_day, http_month = over_http(url, args.sensors, days, args.samples)
    print("measuring the same reads directly...", flush=True)
    raw_day: Latencies | None = None
    raw_month: Latencies | None = None
    if is_postgres(db):
        sql_day, sql_month = direct_postgres(db, args.sensors, days, args.samples)
        raw_day, raw_month = raw_postgres(db, args.sensors, days, args.samples)
    else:
        sql_day, sql_month = direct(db, args.sensors, days, args.samples)
    return [
        ("one attribute, one day (1,440)", http_day, sql_day, raw_day, "p99 < 100 ms"),
        ("hourly avg, 30 days, 100 sensors", http_month, sql_month, raw_month, "< 500 ms"),
    ]


def bytes_per_instance(db: str, instances: int) -> float:
    if is_postgres(db):
        return pg.bytes_per_instance(db, instances)
    return on_disk(db, instances)


if __name__ == "__main__":
    sys.exit(main())
