"""The PostgreSQL store's temporal reads and edits (issue 8): the rows the SQLite store's give
(sqlite_timeline), in the same order, from the tables postgres_history writes.

Series are listed per entity in the order of SQLite's series keys (attribute, then datasetId);
aggregations come out in the order the series were made (`sid`), as SQLite's do. A read of many
series is one statement, a LATERAL read of each. Aggregations follow sqlite_aggregate's plan:
whole hours of numeric series from the hourly roll-ups, the rest from the instances. Edits run
in one transaction and recompute the roll-up hours they touch.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from citytwin.model.history import COLUMNS, HistoryQuery, HistoryRow, TimeWindow
from citytwin.model.times import to_micros
from citytwin.store.postgres_history import recompute
from citytwin.store.postgres_schema import affected, drop_emptied_partitions
from citytwin.store.sqlite_aggregate import TOTALS, wanted_totals
from citytwin.store.sqlite_history import PRUNE_SERIES, numeric_value, stored
from citytwin.store.sqlite_rollup import HOUR, contiguous, hour_of, usable

Totals = tuple[Any, ...]
Spans = Sequence[tuple[int, tuple[int, int]]]  # numbered [start, end)

# the series of a read, $2-$4 in parallel arrays (in the order asked for: `n` from 1)
_EACH = "unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS s(id, attr, dataset, n)"
_OF_EACH = "h.tenant = $1 AND h.id = s.id AND h.attr = s.attr AND h.dataset = s.dataset"
_OF_ATTR = "tenant = $1 AND id = $2 AND attr = $3"
_OF_ONE = f"{_OF_ATTR} AND dataset = $4"


@dataclass(frozen=True)
class Series:
    entity: str
    attr: str
    dataset: str | None
    numeric: bool
    sid: int

    @property
    def key(self) -> tuple[str, str, str]:
        """(entity, attribute, datasetId) as stored ("" the default)."""
        return self.entity, self.attr, self.dataset or ""


class TimelineMixin:
    """history, history_entities, history_attrs, aggregate, delete_history, modify_instance,
    delete_instance, prune_history."""

    pool: asyncpg.Pool
    reads: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection whose statements all see one snapshot."""
        async with self.reads.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                yield conn

    async def history(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> list[HistoryRow]:
        """The instances of each series in the window, oldest first; with last_n the newest n,
        with limit at most that many a series (from the oldest, or the newest with last_n)."""
        col = COLUMNS[query.window.prop]
        where, args = _window(col, query.window, first=5)
        order = "DESC" if query.last_n is not None else "ASC"
        caps = [n for n in (query.last_n, query.limit) if n is not None]
        limit = f" LIMIT {min(caps)}" if caps else ""
        async with self._snapshot() as conn:
            series = await _series(conn, tenant, entity_ids, query)
            rows = await conn.fetch(
                f"SELECT i.* FROM {_EACH} CROSS JOIN LATERAL (SELECT s.n, h.iid, h.observed,"
                f" h.created, h.modified, h.deleted, h.body FROM history h"
                f" WHERE {_OF_EACH} AND {where} ORDER BY h.{col} {order}, h.iid {order}{limit}) i"
                f" ORDER BY i.n, i.{col}, i.iid",
                tenant,
                *_arrays(series),
                *args,
            )
        out = []
        for n, *times, body in rows:  # iid, observed, created, modified, deleted
            s = series[n - 1]
            out.append(HistoryRow(s.entity, s.attr, s.dataset, *times, orjson.loads(body)))
        return out

    async def history_entities(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> set[str]:
        """Which of these entities have at least one instance in the window."""
        where, args = _window(COLUMNS[query.window.prop], query.window, first=5)
        async with self._snapshot() as conn:
            series = await _series(conn, tenant, entity_ids, query)
            rows = await conn.fetch(
                f"SELECT DISTINCT s.id FROM {_EACH}"
                f" WHERE EXISTS (SELECT FROM history h WHERE {_OF_EACH} AND {where})",
                tenant,
                *_arrays(series),
                *args,
            )
        return {r[0] for r in rows}

    async def history_attrs(self, tenant: str, entity_id: str) -> set[str]:
        rows = await self.reads.fetch(
            "SELECT DISTINCT attr FROM series WHERE tenant = $1 AND id = $2", tenant, entity_id
        )
        return {r[0] for r in rows}

    async def aggregate(
        self,
        tenant: str,
        entity_ids: list[str],
        query: HistoryQuery,
        periods: Callable[[str, int, int], list[tuple[int, int]]],
        methods: tuple[str, ...],
    ) -> list[tuple[str, str, str | None, int, Totals, bool]]:
        """(entity, attribute, datasetId, period number, totals, numeric) of each period holding
        instances; `periods` makes an entity's periods from its oldest and newest instant."""
        async with self._snapshot() as conn:
            series = await _series(conn, tenant, entity_ids, query)
            bounds = await _bounds(conn, tenant, series, query.window)
            spans = {e: tuple(enumerate(periods(e, *b))) for e, b in bounds.items()}
            kept = [s for s in series if s.entity in spans]
            alike: dict[tuple[bool, Spans], list[Series]] = {}  # one statement for each
            for s in kept:
                alike.setdefault((s.numeric, spans[s.entity]), []).append(s)
            totals: dict[Series, list[tuple[int, Totals]]] = {}
            prop = query.window.prop
            for (_, shared), group in alike.items():
                totals.update(await _aggregate(conn, tenant, group, prop, list(shared), methods))
        found = []
        for of_entity in _by_entity(kept).values():
            for s in sorted(of_entity, key=lambda s: s.sid):
                found += [(s.entity, s.attr, s.dataset, n, t, s.numeric) for n, t in totals[s]]
        return found

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str, datasets: set[str] | None
    ) -> int:
        """Forget an attribute's history: of the given datasetIds ("" the default), or all (its
        series stay, as SQLite's do)."""
        where = f"{_OF_ATTR} AND ($4::text[] IS NULL OR dataset = ANY($4))"
        args = (tenant, entity_id, attr, None if datasets is None else sorted(datasets))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM rollup WHERE {where}", *args)
            return affected(await conn.execute(f"DELETE FROM history WHERE {where}", *args))

    async def modify_instance(
        self, tenant: str, entity_id: str, attr: str, iid: int, inst: dict[str, Any], at: str
    ) -> bool:
        """5.6.14: replace one instance, keeping its instanceId and createdAt."""
        observed = inst.get("observedAt")
        new = to_micros(observed) if isinstance(observed, str) else None
        body = orjson.dumps(stored(inst)).decode()
        num = numeric_value(inst)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT dataset, created, observed FROM history WHERE {_OF_ATTR} AND iid = $4"
                " FOR UPDATE",
                tenant,
                entity_id,
                attr,
                iid,
            )
            if row is None:
                return False
            key = (tenant, entity_id, attr, row["dataset"])
            await conn.execute(
                f"UPDATE history SET observed = $7, modified = $8, num = $9, body = as_jsonb($10)"
                f" WHERE {_OF_ONE} AND created = $5 AND iid = $6",
                *key, row["created"], iid, new, to_micros(at), num, body,
            )  # fmt: skip
            if num is None:  # the series now holds a value aggregations cannot add up
                await conn.execute(f"UPDATE series SET numeric = false WHERE {_OF_ONE}", *key)
            await _rehour(conn, key, row["observed"], new)
        return True

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"DELETE FROM history WHERE {_OF_ATTR} AND iid = $4 RETURNING dataset, observed",
                tenant,
                entity_id,
                attr,
                iid,
            )
            if row is None:
                return False
            await _rehour(conn, (tenant, entity_id, attr, row["dataset"]), row["observed"])
        return True

    async def prune_history(self, cutoff: int) -> int:
        """Drop instances older than cutoff (by observedAt, or createdAt without one), a few
        series a transaction (writers keep going); then the past months' partitions this left
        empty, giving their disk space back."""
        total, after = 0, None
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                keys = await _next_series(conn, after)
                if not keys:
                    break
                total += await _prune(conn, keys, cutoff)
            after = keys[-1]
        async with self.pool.acquire() as conn:
            await drop_emptied_partitions(conn, cutoff)
        return total


async def _series(
    conn: asyncpg.Connection, tenant: str, entity_ids: list[str], query: HistoryQuery
) -> list[Series]:
    """The series of entities (of the query's attributes and datasetIds): entity by entity, each
    one's in the order of SQLite's keys ("attribute \\x1f datasetId", code point order)."""
    rows = await conn.fetch(
        "SELECT id, attr, dataset, numeric, sid FROM series WHERE tenant = $1"
        " AND id = ANY($2::text[]) AND ($3::text[] IS NULL OR attr = ANY($3))",
        tenant,
        list(set(entity_ids)),
        None if query.attrs is None else list(query.attrs),
    )
    rows.sort(key=lambda r: f"{r['attr']}\x1f{r['dataset']}")
    of: dict[str, list[Series]] = {}
    for entity, attr, dataset, numeric, sid in rows:
        of.setdefault(entity, []).append(Series(entity, attr, dataset or None, numeric, sid))
    found = [s for entity in entity_ids for s in of.get(entity, ())]
    if query.datasets is None:
        return found
    return [s for s in found if s.dataset in query.datasets]


def _by_entity(series: list[Series]) -> dict[str, list[Series]]:
    of: dict[str, list[Series]] = {}
    for s in series:
        of.setdefault(s.entity, []).append(s)
    return of


def _arrays(series: list[Series]) -> tuple[list[str], list[str], list[str]]:
    """The series as the parallel arrays _EACH takes."""
    keys = [s.key for s in series]
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


def _window(col: str, window: TimeWindow, first: int) -> tuple[str, list[int]]:
    """The condition of a window on the history table `h`, its bounds from parameter `first`."""
    where, args = [f"h.{col} IS NOT NULL"], []
    for op, bound in ((">=", window.start), ("<", window.end)):
        if bound is not None:
            where.append(f"h.{col} {op} ${first + len(args)}")
            args.append(bound)
    return " AND ".join(where), args


async def _bounds(
    conn: asyncpg.Connection, tenant: str, series: list[Series], window: TimeWindow
) -> dict[str, tuple[int, int]]:
    """The oldest and newest instant of each entity's series in the window, of the entities
    holding any (index probes a series)."""
    col = COLUMNS[window.prop]
    where, args = _window(col, window, first=5)
    rows = await conn.fetch(
        f"SELECT s.id, min(b.low), max(b.high) FROM {_EACH} CROSS JOIN LATERAL"
        f" (SELECT min(h.{col}) AS low, max(h.{col}) AS high FROM history h"
        f" WHERE {_OF_EACH} AND {where}) b GROUP BY s.id",
        tenant,
        *_arrays(series),
        *args,
    )
    return {entity: (low, high) for entity, low, high in rows if low is not None}


# -- aggregation ---------------------------------------------------------------------------------

# A non-numeric series' values as SQLite's json_extract gives them (sqlite_aggregate._VALUE):
# the first member holding one; numbers and booleans (as 1/0) compare as numbers, before text
# (strings, and objects and arrays as JSON text), which compares byte by byte.
_VALUE = (
    "coalesce(" + ", ".join(f"nullif(h.body -> '{m}', 'null')" for m in
    ("value", "object", "vocab", "languageMap", "valueList", "objectList", "json")) + ")"
)  # fmt: skip
_RANKED = (
    "CROSS JOIN LATERAL (SELECT v, CASE jsonb_typeof(v) WHEN 'number' THEN v::numeric"
    " WHEN 'boolean' THEN (v = 'true')::int END AS nk, CASE WHEN jsonb_typeof(v) IN"
    " ('string', 'object', 'array') THEN v #>> '{}' END COLLATE \"C\" AS tk"
    f" FROM (SELECT {_VALUE} AS v) e) x"
)
_FIRST = "(array_agg(x.v ORDER BY {}) FILTER (WHERE x.v IS NOT NULL))[1]"


def _columns(wanted: list[str], numeric: bool) -> str:
    """All of TOTALS over the instances, NULL for those not wanted (as sqlite_aggregate's);
    deviations are taken from each series' shift, `s.k`."""
    low, high = "min(h.num)", "max(h.num)"
    distinct = "count(DISTINCT h.num)"
    if not numeric:
        low = _FIRST.format("x.nk IS NULL, x.nk, x.tk")
        high = _FIRST.format("x.nk IS NOT NULL, x.nk DESC, x.tk DESC")
        distinct = "count(DISTINCT x.nk) + count(DISTINCT x.tk)"
    sql = {"count": "count(*)", "distinct": distinct, "sum": "sum(h.num)", "min": low,
           "max": high, "sumsq": "sum(h.num * h.num)", "dev1": "sum(h.num - s.k)",
           "dev2": "sum((h.num - s.k) * (h.num - s.k))"}  # fmt: skip
    return ", ".join(sql[t] if t in wanted else "NULL" for t in TOTALS)


_ROLLED = {"count": "sum(h.count)::bigint", "sum": "sum(h.sum)", "min": "min(h.min)",
           "max": "max(h.max)", "sumsq": "sum(h.sumsq)"}  # fmt: skip
# the series of an aggregation, $2-$5 in parallel arrays (`n` from 1), with their shifts
_GROUP = (
    "unnest($2::text[], $3::text[], $4::text[], $5::float8[])"
    " WITH ORDINALITY AS s(id, attr, dataset, k, n)"
)


async def _aggregate(
    conn: asyncpg.Connection,
    tenant: str,
    group: list[Series],
    prop: str,
    spans: Spans,
    methods: tuple[str, ...],
) -> dict[Series, list[tuple[int, Totals]]]:
    """(period number, totals) of the periods holding instances of each series of a group
    (alike in numeric and in periods), in order; whole hours of observedAt of numeric series
    from the roll-ups when no method needs more than they keep (sqlite_aggregate.aggregate's
    rule). Tombstones are not counted. A statement for the roll-ups and one for the rest."""
    wanted = wanted_totals(methods)
    numeric = group[0].numeric
    hourly: Spans = []
    if numeric and prop == "observedAt" and "distinct" not in wanted and "dev1" not in wanted:
        hourly = [(n, span) for n, span in spans if usable(span)]
    rolled = {n for n, _ in hourly}
    raw = [(n, span) for n, span in spans if n not in rolled]
    keys = [[s.key[i] for s in group] for i in range(3)]
    shifts = [await _shift(conn, (tenant, *s.key)) if "dev1" in wanted else 0.0 for s in group]
    each = (tenant, *keys, shifts)
    rows: list[tuple[int, int, Totals]] = []
    if hourly:
        columns = ", ".join(_ROLLED[t] if t in wanted else "NULL" for t in TOTALS)
        in_hours = [(n, (start // HOUR, end // HOUR)) for n, (start, end) in hourly]
        rows += await _spanned(conn, each, ("rollup h", "true", "h.hour"), columns, in_hours)
    if raw:
        source = ("history h", "h.num IS NOT NULL", f"h.{COLUMNS[prop]}")
        if not numeric:
            source = (f"history h {_RANKED}", "h.deleted IS NULL", source[2])
        found = await _spanned(conn, each, source, _columns(wanted, numeric), raw)
        rows += [(i, n, _as_sqlite(values, numeric)) for i, n, values in found]
    out: dict[Series, list[tuple[int, Totals]]] = {s: [] for s in group}
    for i, n, values in sorted(rows, key=lambda row: row[:2]):
        if values[0]:
            out[group[i - 1]].append((n, values))
    return out


async def _spanned(
    conn: asyncpg.Connection,
    each: tuple[Any, ...],
    source: tuple[str, str, str],
    columns: str,
    spans: Spans,
) -> list[tuple[int, int, Totals]]:
    """(series number, period number, totals) of (numbered) spans over the rows of `source`
    (its tables, the rows it keeps, its time) of each series of `each` (_GROUP's arguments):
    for contiguous spans of one length, one range read a series grouped by span, else a
    range a span."""
    tables, keep, time = source
    where = (
        f"h.tenant = $1 AND h.id = s.id AND h.attr = s.attr AND h.dataset = s.dataset AND {keep}"
    )
    if _in_steps(spans):
        first, (start, end) = spans[0]
        rows = await conn.fetch(
            f"SELECT s.n, g.* FROM {_GROUP} CROSS JOIN LATERAL (SELECT ({time} - $6) / $7,"
            f" {columns} FROM {tables} WHERE {where} AND {time} >= $6 AND {time} < $8"
            " GROUP BY 1) g",
            *each, start, end - start, spans[-1][1][1],
        )  # fmt: skip
        return [(i, first + n, tuple(values)) for i, n, *values in rows]
    rows = await conn.fetch(
        f"SELECT s.n, p.n, t.* FROM {_GROUP}"
        " CROSS JOIN unnest($6::int[], $7::bigint[], $8::bigint[]) AS p(n, lo, hi)"
        f" CROSS JOIN LATERAL (SELECT {columns} FROM {tables} WHERE {where}"
        f" AND {time} >= p.lo AND {time} < p.hi) t",
        *each,
        [n for n, _ in spans],
        [start for _, (start, _) in spans],
        [end for _, (_, end) in spans],
    )
    return [(i, n, tuple(values)) for i, n, *values in rows]


def _in_steps(spans: Spans) -> bool:
    """sqlite_rollup.contiguous, but with the last span no longer than the others: grouping by
    the first one's length would number a longer one's end as a period after it (a month after
    a shorter one, as P1M makes)."""
    (_, (start, end)), (_, (last_start, last_end)) = spans[0], spans[-1]
    return contiguous(spans) and last_end - last_start <= end - start


async def _shift(conn: asyncpg.Connection, key: tuple[str, ...]) -> float:
    """The value sqlite_aggregate._shift takes deviations from: the first numeric instance of
    the series in (observedAt, value) order, those without an observedAt first."""
    value = await conn.fetchval(
        f"SELECT coalesce((SELECT num FROM history WHERE {_OF_ONE} AND observed IS NULL"
        f" AND num IS NOT NULL ORDER BY num LIMIT 1), (SELECT num FROM history"
        f" WHERE {_OF_ONE} AND num IS NOT NULL ORDER BY observed, num LIMIT 1))",
        *key,
    )
    return float(value) if value is not None and abs(value) != float("inf") else 0.0


def _as_sqlite(values: Totals, numeric: bool) -> Totals:
    """A non-numeric series' min and max (JSON) as SQLite gives them: booleans as 1/0,
    integers past 64 bits as reals."""
    if numeric:
        return values
    pairs = zip(TOTALS, values, strict=True)
    return tuple(_json_value(v) if t in ("min", "max") else v for t, v in pairs)


def _json_value(text: str | None) -> Any:
    value = orjson.loads(text) if text is not None else None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


# -- edits ---------------------------------------------------------------------------------------


async def _rehour(conn: asyncpg.Connection, key: tuple[str, ...], *observed: int | None) -> None:
    for hour in {hour_of(t) for t in observed if t is not None}:
        await recompute(conn, (*key, hour))


async def _next_series(
    conn: asyncpg.Connection, after: asyncpg.Record | None
) -> list[asyncpg.Record]:
    """The next PRUNE_SERIES series after `after` (None: from the first), in key order."""
    where = "" if after is None else "WHERE (tenant, id, attr, dataset) > ($2, $3, $4, $5)"
    return await conn.fetch(
        f"SELECT tenant, id, attr, dataset FROM series {where}"
        " ORDER BY tenant, id, attr, dataset LIMIT $1",
        PRUNE_SERIES,
        *(after or ()),
    )


async def _prune(conn: asyncpg.Connection, keys: list[asyncpg.Record], cutoff: int) -> int:
    """Drop the instances of these series older than cutoff; the roll-ups of the series that
    lost timed instances lose the hours before the cutoff's and recompute its hour."""
    each = "unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS s(tenant, id, attr, dataset)"
    match = "h.tenant = s.tenant AND h.id = s.id AND h.attr = s.attr AND h.dataset = s.dataset"
    arrays = [[k[i] for k in keys] for i in range(4)]
    timed = await conn.fetch(
        f"WITH gone AS (DELETE FROM history h USING {each} WHERE {match} AND h.observed < $1"
        " RETURNING h.tenant, h.id, h.attr, h.dataset)"
        " SELECT tenant, id, attr, dataset, count(*) FROM gone GROUP BY 1, 2, 3, 4",
        cutoff,
        *arrays,
    )
    untimed = await conn.execute(
        f"DELETE FROM history h USING {each} WHERE {match} AND h.observed IS NULL"
        " AND h.created < $1",
        cutoff,
        *arrays,
    )
    touched = [tuple(r)[:4] for r in timed]
    await conn.execute(
        f"DELETE FROM rollup h USING {each} WHERE {match} AND h.hour < $1",
        hour_of(cutoff),
        *[[k[i] for k in touched] for i in range(4)],
    )
    for key in touched:
        await recompute(conn, (*key, hour_of(cutoff)))
    return sum(r[4] for r in timed) + affected(untimed)
