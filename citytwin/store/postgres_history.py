"""Attribute history in PostgreSQL: the rows a write adds, in its transaction (issue 8).

The same rules as the SQLite store's: one row per instance a write produces, times as integer
microseconds, the numeric value in `num`; a series (entity, attribute, datasetId) stays numeric
until it gets another value; hourly roll-ups of numeric instances with an observedAt are kept
incrementally, and the hours of instances a temporal upsert replaces are recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

from citytwin.model.history import Record
from citytwin.model.times import to_micros
from citytwin.store.sqlite_history import numeric_value, stored
from citytwin.store.sqlite_rollup import HOUR

Key = tuple[str, str, str, str]  # tenant, entity, attribute, datasetId ("" the default)


async def append(conn: asyncpg.Connection, records: Iterable[Record]) -> None:
    rows, replaced, numeric = [], [], {}
    for r in records:
        inst = r.instance
        key: Key = (r.tenant, r.entity, r.attr, inst.get("datasetId") or "")
        num = None if r.deleted else numeric_value(inst)
        numeric[key] = numeric.get(key, True) and (num is not None or r.deleted)
        at = to_micros(r.at)
        observed = inst.get("observedAt")
        observed_at = to_micros(observed) if type(observed) is str else None
        if r.replaces and observed_at is not None:
            replaced.append((*key, observed_at))
        body = orjson.dumps(stored(inst)).decode()
        rows.append((*key, at, observed_at, at, at if r.deleted else None, num, body))
    if not rows:
        return
    await _series(conn, numeric)
    dirty = await _replace(conn, replaced) if replaced else set()
    await conn.executemany(
        "INSERT INTO history (tenant, id, attr, dataset, created, observed, modified, deleted,"
        " num, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, as_jsonb($10))",
        rows,
    )
    counted = [(r[:4], r[5], r[8]) for r in rows if r[8] is not None and r[5] is not None]
    await _add(conn, [(k, obs, num) for k, obs, num in counted if (*k, obs // HOUR) not in dirty])
    for bucket in dirty:
        await recompute(conn, bucket)


async def forget(conn: asyncpg.Connection, tenant: str, entity_ids: list[str]) -> None:
    """Drop the whole history of entities (their series rows stay, numeric again, as in
    SQLite: a recreated entity lists its series in the order they were first made)."""
    if entity_ids:
        for table in ("history", "rollup"):
            await conn.execute(
                f"DELETE FROM {table} WHERE tenant = $1 AND id = ANY($2::text[])",
                tenant,
                entity_ids,
            )
        await conn.execute(
            "UPDATE series SET numeric = true WHERE tenant = $1 AND id = ANY($2::text[])",
            tenant,
            entity_ids,
        )


async def _series(conn: asyncpg.Connection, numeric: dict[Key, bool]) -> None:
    """Every series written is known, and stops being numeric when given another value."""
    await conn.executemany(
        "INSERT INTO series (tenant, id, attr, dataset, numeric) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (tenant, id, attr, dataset) DO UPDATE SET numeric = false"
        " WHERE series.numeric AND NOT excluded.numeric",
        [(*k, n) for k, n in numeric.items()],
    )


async def _replace(
    conn: asyncpg.Connection, replaced: list[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Delete the instances the new ones replace (same series and observedAt), in one
    statement; the hours of those deleted need their roll-ups recomputed."""
    columns = [list(c) for c in zip(*replaced, strict=True)]
    gone = await conn.fetch(
        "DELETE FROM history h USING unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        " $5::bigint[]) AS r(tenant, id, attr, dataset, observed)"
        " WHERE h.tenant = r.tenant AND h.id = r.id AND h.attr = r.attr"
        " AND h.dataset = r.dataset AND h.observed = r.observed"
        " RETURNING h.tenant, h.id, h.attr, h.dataset, h.observed",
        *columns,
    )
    return {(*row[:4], row[4] // HOUR) for row in gone}


async def _add(conn: asyncpg.Connection, rows: list[tuple[Key, int, float]]) -> None:
    """Count new numeric instances into their hours (observed >= 0 only)."""
    sums: dict[tuple[Any, ...], list[float]] = {}
    for key, observed, num in rows:
        if observed < 0:
            continue
        got = sums.setdefault((*key, observed // HOUR), [0, 0.0, num, num, 0.0])
        got[0] += 1
        got[1] += num
        got[2] = min(got[2], num)
        got[3] = max(got[3], num)
        got[4] += num * num
    await conn.executemany(
        "INSERT INTO rollup (tenant, id, attr, dataset, hour, count, sum, min, max, sumsq)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (tenant, id, attr, dataset, hour) DO UPDATE SET"
        " count = rollup.count + excluded.count, sum = rollup.sum + excluded.sum,"
        " min = least(rollup.min, excluded.min), max = greatest(rollup.max, excluded.max),"
        " sumsq = rollup.sumsq + excluded.sumsq",
        [(*bucket, *values) for bucket, values in sums.items()],
    )


async def recompute(conn: asyncpg.Connection, bucket: tuple[Any, ...]) -> None:
    *key, hour = bucket
    if hour < 0:
        return
    where = "tenant = $1 AND id = $2 AND attr = $3 AND dataset = $4"
    await conn.execute(f"DELETE FROM rollup WHERE {where} AND hour = $5", *key, hour)
    await conn.execute(
        "INSERT INTO rollup (tenant, id, attr, dataset, hour, count, sum, min, max, sumsq)"
        " SELECT tenant, id, attr, dataset, $5, count(*), sum(num), min(num), max(num),"
        f" sum(num * num) FROM history WHERE {where} AND observed >= $6 AND observed < $7"
        " AND num IS NOT NULL GROUP BY tenant, id, attr, dataset",
        *key,
        hour,
        hour * HOUR,
        (hour + 1) * HOUR,
    )
