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
from citytwin.store import postgres_batch as batch
from citytwin.store.postgres_batch import Part, columns
from citytwin.store.sqlite_history import numeric_value, stored
from citytwin.store.sqlite_rollup import HOUR

Key = tuple[str, str, str, str]  # tenant, entity, attribute, datasetId ("" the default)


async def append(conn: asyncpg.Connection, records: Iterable[Record]) -> list[Part]:
    """The rows a write adds: statements for the caller to send with its own (postgres_batch);
    a write replacing instances runs its own first, as their hours are then recomputed from
    what the history holds afterwards."""
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
        return []
    parts = [_series(numeric)]
    dirty = await _replace(conn, replaced) if replaced else set()
    parts.append(Part(_HISTORY, columns(rows, 10)))
    counted = [(r[:4], r[5], r[8]) for r in rows if r[8] is not None and r[5] is not None]
    added = _add([(k, obs, num) for k, obs, num in counted if (*k, obs // HOUR) not in dirty])
    parts += [added] if added else []
    if dirty:
        await batch.run(conn, parts)
        for bucket in dirty:
            await recompute(conn, bucket)
        return []
    return parts


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


_HISTORY = (
    "INSERT INTO history (tenant, id, attr, dataset, created, observed, modified, deleted, num,"
    " body) SELECT t, i, a, d, c, o, m, x, n, as_jsonb(b) FROM unnest({}::text[], {}::text[],"
    " {}::text[], {}::text[], {}::bigint[], {}::bigint[], {}::bigint[], {}::bigint[],"
    " {}::float8[], {}::text[]) AS u(t, i, a, d, c, o, m, x, n, b)"
)


def _series(numeric: dict[Key, bool]) -> Part:
    """Every series written is known, and stops being numeric when given another value."""
    return Part(
        "INSERT INTO series (tenant, id, attr, dataset, numeric) SELECT * FROM unnest("
        "{}::text[], {}::text[], {}::text[], {}::text[], {}::bool[])"
        " ON CONFLICT (tenant, id, attr, dataset) DO UPDATE SET numeric = false"
        " WHERE series.numeric AND NOT excluded.numeric",
        columns([(*k, n) for k, n in numeric.items()], 5),
    )


async def _replace(
    conn: asyncpg.Connection, replaced: list[tuple[Any, ...]]
) -> set[tuple[Any, ...]]:
    """Delete the instances the new ones replace (same series and observedAt), in one
    statement; the hours of those deleted need their roll-ups recomputed."""
    gone = await conn.fetch(
        "DELETE FROM history h USING unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        " $5::bigint[]) AS r(tenant, id, attr, dataset, observed)"
        " WHERE h.tenant = r.tenant AND h.id = r.id AND h.attr = r.attr"
        " AND h.dataset = r.dataset AND h.observed = r.observed"
        " RETURNING h.tenant, h.id, h.attr, h.dataset, h.observed",
        *columns(replaced, 5),
    )
    return {(*row[:4], row[4] // HOUR) for row in gone}


def _add(rows: list[tuple[Key, int, float]]) -> Part | None:
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
    if not sums:
        return None
    return Part(
        "INSERT INTO rollup (tenant, id, attr, dataset, hour, count, sum, min, max, sumsq)"
        " SELECT * FROM unnest({}::text[], {}::text[], {}::text[], {}::text[], {}::bigint[],"
        " {}::bigint[], {}::float8[], {}::float8[], {}::float8[], {}::float8[])"
        " ON CONFLICT (tenant, id, attr, dataset, hour) DO UPDATE SET"
        " count = rollup.count + excluded.count, sum = rollup.sum + excluded.sum,"
        " min = least(rollup.min, excluded.min), max = greatest(rollup.max, excluded.max),"
        " sumsq = rollup.sumsq + excluded.sumsq",
        columns([(*bucket, *values) for bucket, values in sums.items()], 10),
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
