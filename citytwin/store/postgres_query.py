"""Queries on the PostgreSQL store: one statement selects, in the order the query asks.

Conditions compile to SQL over the JSONB documents (store/postgres_sql.py): types through the
GIN index on `types`, geometry boxes through the GiST index on `entity_geo`, whose candidates are
then judged exactly in Python as on SQLite (store/geo_pick.py). A query with a regular
expression (idPattern, `~=`, scopeQ) selects candidates by the rest of its conditions, and each
candidate is checked in Python with the SQLite dialect, so that both stores match alike; such a
query is paged after that check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson

from citytwin.model.geo import GeoQuery
from citytwin.model.query import All, Any_, Node, Term
from citytwin.store.base import Entity, Query, QueryResult
from citytwin.store.geo_pick import (
    Shapes,
    by_distance,
    geometries,
    nearest,
    picked_points,
    picked_shapes,
    split,
)
from citytwin.store.postgres_sql import (
    Params,
    attr_exists,
    compile_node,
    has_regex,
    order_by,
    without_regex,
)
from citytwin.store.regex_literal import id_conditions
from citytwin.store.sqlite_query import regexp

Judge = Callable[[Entity], bool]  # the Python check of a candidate (regular expressions)
CHUNK = 500  # candidates a cursor fetches at a time for the judge


@dataclass
class Selection:
    """A query's rows (`source`: entities `e`, maybe driven by a type's `t` rows), its WHERE
    clause, the order that costs nothing, and whether candidates need the Python judge."""

    source: str
    clause: str
    params: Params
    checked: bool
    order: str = "e.id"
    counted: str | None = None  # a cheaper count, when the type's rows alone answer it

    def sql(self, what: str) -> str:
        return f"SELECT {what} FROM {self.source} WHERE {self.clause}"


BY_TYPE = "entity_types t JOIN entities e ON e.tenant = t.tenant AND e.id = t.id"


async def select(conn: asyncpg.Connection, tenant: str, query: Query) -> Selection:
    """One type (the commonest query) drives from that type's rows, already in id order, so
    that a page stops early; otherwise rows come from the entities' primary key."""
    params = Params()
    one_type = isinstance(query.types, Term) and query.geo is None
    if one_type:
        assert isinstance(query.types, Term)
        parts = [f"t.tenant = {params.add(tenant)}", f"t.type = {params.add(query.types.value)}"]
        query = replace(query, types=None)
    else:
        parts = [f"e.tenant = {params.add(tenant)}"]
    if query.ids is not None:
        parts.append(f"e.id = ANY({params.add(list(query.ids))}::text[])")
    checked = query.id_pattern is not None
    if query.id_pattern is not None:
        column = "t.id" if one_type else "e.id"  # a prefix is a range of its index ("C")
        tests = id_conditions(column, query.id_pattern, "strpos")
        parts += [sql.format(params.add(value)) for sql, value in tests]
    for node in (query.types, query.q, query.scope_q):
        if node is None:
            continue
        if has_regex(node):
            checked, node = True, without_regex(node)
        if node is not None:
            parts.append(compile_node(node, params))
    if query.attrs is not None:
        parts.append(attr_exists(query.attrs, params))
    if query.geo is not None:
        found = await geo_ids(conn, tenant, query.geo)
        parts.append(f"e.id = ANY({params.add(found)}::text[])")
    clause = " AND ".join(parts)
    if not one_type:
        return Selection("entities e", clause, params, checked)
    counted = "SELECT count(*) FROM entity_types t WHERE " + clause if len(parts) == 2 else None
    return Selection(BY_TYPE, clause, params, checked, "t.id", counted)


async def run_query(
    conn: asyncpg.Connection, tenant: str, query: Query, judge: Judge
) -> QueryResult:
    if any(key.distance for key in query.order_by):
        return await _by_distance(conn, tenant, query, judge)
    s = await select(conn, tenant, query)
    count = None
    if query.count and not s.checked:  # (before the order adds parameters of its own)
        count = await conn.fetchval(s.counted or s.sql("count(*)"), *s.params)
    order = order_by(query.order_by, s.params) if query.order_by else s.order
    sql = s.sql("e.raw") + f" ORDER BY {order}"
    if s.checked:
        end = None if query.limit is None else query.offset + query.limit
        kept = await _judged(conn, sql, s.params, judge, None if query.count else end)
        return QueryResult(kept[query.offset : end], len(kept) if query.count else None)
    rows: list[Any] = []
    if query.limit != 0:
        if query.limit is not None:
            limit, offset = s.params.add(query.limit), s.params.add(query.offset)
            sql += f" LIMIT {limit} OFFSET {offset}"
        rows = await conn.fetch(sql, *s.params)
    return QueryResult([orjson.loads(raw) for (raw,) in rows], count)


async def _judged(
    conn: asyncpg.Connection, sql: str, params: Params, judge: Judge, enough: int | None
) -> list[Entity]:
    """The candidates the judge keeps, in order, read through a cursor a chunk at a time and
    no further than `enough` kept ones (None: all of them)."""
    kept: list[Entity] = []
    if enough == 0:
        return kept
    async with conn.transaction(readonly=True):
        async for (raw,) in conn.cursor(sql, *params, prefetch=CHUNK):
            doc = orjson.loads(raw)
            if judge(doc):
                kept.append(doc)
                if enough is not None and len(kept) >= enough:
                    break
    return kept


async def matching_ids(
    conn: asyncpg.Connection, tenant: str, query: Query, judge: Judge
) -> list[str]:
    """Ids of every entity a query selects (for purge)."""
    s = await select(conn, tenant, query)
    if not s.checked:
        return [i for (i,) in await conn.fetch(s.sql("e.id") + " ORDER BY e.id", *s.params)]
    kept = await _judged(conn, s.sql("e.raw") + " ORDER BY e.id", s.params, judge, None)
    return [doc["id"] for doc in kept]


def selects(node: Node, entity: Entity) -> bool:
    """Whether an entity meets an entity selector (types, ids, id patterns) of a query."""
    if isinstance(node, All):
        return all(selects(p, entity) for p in node.parts)
    if isinstance(node, Any_):
        return any(selects(p, entity) for p in node.parts)
    if node.op == "type":
        return node.value in entity["type"]
    if node.op == "id":
        return bool(entity["id"] == node.value)
    assert node.op == "idPattern", f"not an entity selector: {node}"
    return regexp(node.value, entity["id"])


async def geo_ids(conn: asyncpg.Connection, tenant: str, geo: GeoQuery) -> list[str]:
    """Ids of the entities whose geoproperty satisfies a geo-query, sorted: the GiST index
    gives the candidates whose box touches the query's (all of them for disjoint)."""
    params = Params([tenant, geo.geoproperty])
    sql = (
        "SELECT g.id, CASE WHEN GeometryType(g.geom) = 'POINT' THEN ST_X(g.geom) END,"
        " CASE WHEN GeometryType(g.geom) = 'POINT' THEN ST_Y(g.geom) END"
        " FROM entity_geo g WHERE g.tenant = $1 AND g.attr = $2"
    )
    box = geo.bbox()
    if box is not None:
        minx, maxx, miny, maxy = (params.add(v) for v in box)
        sql += f" AND g.geom && ST_MakeEnvelope({minx}, {miny}, {maxx}, {maxy}, 4326)"
    points, shapes = split(await conn.fetch(sql, *params))
    found = picked_points(geo, points)
    found |= picked_shapes(geo, await _shapes(conn, tenant, shapes - found, geo))
    return sorted(found)


async def _shapes(conn: asyncpg.Connection, tenant: str, ids: set[str], geo: GeoQuery) -> Shapes:
    """The geometries of these entities' geoproperty, read from their documents."""
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT id, (doc -> 'attrs' -> $1)::text FROM entities"
        " WHERE tenant = $2 AND id = ANY($3::text[])",
        geo.geoproperty,
        tenant,
        sorted(ids),
    )
    return {i: geometries(orjson.loads(doc) if doc else None) for i, doc in rows}


async def _by_distance(
    conn: asyncpg.Connection, tenant: str, query: Query, judge: Judge
) -> QueryResult:
    """4.23 ordered by the distance to a near query's geometry (then by id): every match is
    measured, so this path reads all matches before it takes a page."""
    geo = query.geo
    assert geo is not None and geo.georel == "near", "checked when the query was parsed"
    s = await select(conn, tenant, replace(query, order_by=()))
    found = await conn.fetch(s.sql("e.id, e.raw"), *s.params)
    rows = [(i, orjson.loads(raw)) for i, raw in found]
    if s.checked:
        rows = [(i, doc) for i, doc in rows if judge(doc)]
    points, shapes = split(
        await conn.fetch(
            "SELECT id, CASE WHEN GeometryType(geom) = 'POINT' THEN ST_X(geom) END,"
            " CASE WHEN GeometryType(geom) = 'POINT' THEN ST_Y(geom) END FROM entity_geo"
            " WHERE tenant = $1 AND attr = $2 AND id = ANY($3::text[])",
            tenant,
            geo.geoproperty,
            [i for i, _ in rows],
        )
    )
    meters = nearest(geo, points, await _shapes(conn, tenant, shapes, geo))
    by_distance(rows, meters, next(key.descending for key in query.order_by if key.distance))
    end = None if query.limit is None else query.offset + query.limit
    return QueryResult(
        [doc for _, doc in rows[query.offset : end]], len(rows) if query.count else None
    )
