"""Queries on the SQLite store: one SQL statement selects, geo candidates get exact predicates.

Conditions are compiled into the WHERE clause (types through `entity_types`, geometry boxes through
the R*Tree, q and scopeQ through JSON functions); only geo-query candidates that the index let
through are checked in Python, with shapely. Results are ordered by entity id, which both access
paths (by type, by primary key) deliver without sorting, so LIMIT stops early.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

import orjson

from citytwin.model.geo import GeoQuery
from citytwin.model.query import Term
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
from citytwin.store.regex_literal import id_conditions
from citytwin.store.sql import attr_path, compile_node, order_by


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regexp(pattern: str, value: Any) -> bool:
    """Python's re.search, as queries mean it (the SQL function `regexp`)."""
    return isinstance(value, str) and _pattern(pattern).search(value) is not None


def register(conn: sqlite3.Connection) -> None:
    """SQL functions the compiled queries use."""
    conn.create_function("regexp", 2, regexp, deterministic=True)


@dataclass
class Plan:
    """A query as SQL: where rows come from, the WHERE clause, its parameters, the order."""

    source: str
    clause: str
    params: list[Any]
    order: str
    count_sql: str | None = None  # a cheaper count, when the type index alone answers it


def plan(conn: sqlite3.Connection, tenant: str, query: Query) -> Plan:
    """One type (the commonest query) drives from the type index, already in id order, so that
    LIMIT stops early; otherwise rows come from the entities' primary key, also in id order."""
    if isinstance(query.types, Term) and query.geo is None:
        source = "entity_types t CROSS JOIN entities e ON e.tenant = t.tenant AND e.id = t.id"
        parts, params = ["t.tenant = ?", "t.type = ?"], [tenant, query.types.value]
        rest = replace(query, types=None)
        order = order_by(query.order_by) if query.order_by else "t.id"
    else:
        source, parts, params, rest = "entities e", ["e.tenant = ?"], [tenant], query
        order = order_by(query.order_by)
    if query.id_pattern is not None:  # narrowed by its literal, so fewer rows reach regexp
        column = "t.id" if source != "entities e" else "e.id"
        for sql, value in id_conditions(column, query.id_pattern, "instr"):
            parts.append(sql.format("?"))
            params.append(value)
    _conditions(rest, tenant, parts, params)
    if query.geo is not None:
        parts.append("e.id IN (SELECT value FROM json_each(?))")
        params.append(orjson.dumps(geo_ids(conn, tenant, query.geo)))
    count_sql = None
    if source != "entities e" and len(parts) == 2:
        count_sql = "SELECT count(*) FROM entity_types t WHERE t.tenant = ? AND t.type = ?"
    return Plan(source, " AND ".join(parts), params, order, count_sql)


def _conditions(query: Query, tenant: str, parts: list[str], params: list[Any]) -> None:
    if query.ids is not None:
        parts.append(f"e.id IN ({','.join('?' * len(query.ids))})")
        params.extend(query.ids)
    if query.id_pattern is not None:
        parts.append("regexp(?, e.id)")
        params.append(query.id_pattern)
    for node in (query.types, query.q, query.scope_q):
        if node is not None:
            parts.append(compile_node(node, params, tenant))
    if query.attrs is not None:
        tests = ["json_type(e.doc, ?) IS NOT NULL"] * len(query.attrs)
        parts.append("(" + " OR ".join(tests) + ")")
        params.extend(attr_path(a) for a in sorted(query.attrs))


def geo_ids(conn: sqlite3.Connection, tenant: str, geo: GeoQuery) -> list[str]:
    """Ids of the entities whose geoproperty satisfies a geo-query, sorted.

    The R*Tree gives the candidates whose box touches the query's box (all of them for
    disjoint); geo_keys keeps the exact coordinates of points (store/geo_pick judges them);
    other shapes are read from their documents.
    """
    sql = (
        "SELECT k.id, k.x, k.y FROM geo_index g"
        " CROSS JOIN geo_keys k ON k.key = g.key WHERE k.tenant = ? AND k.attr = ?"
    )
    params: list[Any] = [tenant, geo.geoproperty]
    box = geo.bbox()
    if box is not None:
        sql += " AND g.minx <= ? AND g.maxx >= ? AND g.miny <= ? AND g.maxy >= ?"
        params += [box[1], box[0], box[3], box[2]]
    points, shapes = split(conn.execute(sql, params))
    found = picked_points(geo, points)
    found |= picked_shapes(geo, _shapes(conn, tenant, shapes - found, geo))
    return sorted(found)


def _shapes(conn: sqlite3.Connection, tenant: str, ids: set[str], geo: GeoQuery) -> Shapes:
    """The geometries of these entities' geoproperty, read from their documents."""
    rows = conn.execute(
        "SELECT id, json_extract(doc, ?) FROM entities"
        " WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))",
        (attr_path(geo.geoproperty), tenant, orjson.dumps(sorted(ids))),
    )
    return {i: geometries(orjson.loads(doc) if doc else None) for i, doc in rows}


def run_query(conn: sqlite3.Connection, tenant: str, query: Query) -> QueryResult:
    if any(key.distance for key in query.order_by):
        return _by_distance(conn, tenant, query)
    p = plan(conn, tenant, query)
    sql = f"SELECT e.doc FROM {p.source} WHERE {p.clause} ORDER BY {p.order}"
    args = p.params
    if query.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        args = [*args, query.limit, query.offset]
    rows = conn.execute(sql, args).fetchall() if query.limit != 0 else []
    count = None
    if query.count:
        count_sql = p.count_sql or f"SELECT count(*) FROM {p.source} WHERE {p.clause}"
        count = conn.execute(count_sql, p.params).fetchone()[0]
    return QueryResult([orjson.loads(doc) for (doc,) in rows], count)


def matching_ids(conn: sqlite3.Connection, tenant: str, query: Query) -> list[str]:
    """Ids of every entity a query selects (for purge), exact geo predicates included."""
    p = plan(conn, tenant, query)
    return [i for (i,) in conn.execute(f"SELECT e.id FROM {p.source} WHERE {p.clause}", p.params)]


def _by_distance(conn: sqlite3.Connection, tenant: str, query: Query) -> QueryResult:
    """4.23 ordered by the distance to a near query's geometry (then by id): every match is
    measured, so this path reads all matches before it takes a page."""
    geo = query.geo
    assert geo is not None and geo.georel == "near", "checked when the query was parsed"
    p = plan(conn, tenant, replace(query, order_by=()))
    rows = conn.execute(f"SELECT e.id, e.doc FROM {p.source} WHERE {p.clause}", p.params).fetchall()
    meters = distances(conn, tenant, geo, [i for i, _ in rows])
    by_distance(rows, meters, next(key.descending for key in query.order_by if key.distance))
    end = None if query.limit is None else query.offset + query.limit
    page = [orjson.loads(doc) for _, doc in rows[query.offset : end]]
    return QueryResult(page, len(rows) if query.count else None)


def distances(
    conn: sqlite3.Connection, tenant: str, geo: GeoQuery, ids: list[str]
) -> dict[str, float]:
    """Metres from the query's geometry to each entity's geoproperty (nearest instance)."""
    rows = conn.execute(
        "SELECT id, x, y FROM geo_keys WHERE tenant = ? AND attr = ?"
        " AND id IN (SELECT value FROM json_each(?))",
        (tenant, geo.geoproperty, orjson.dumps(ids)),
    )
    points, shapes = split(rows)
    return nearest(geo, points, _shapes(conn, tenant, shapes, geo))


def entity_matches(conn: sqlite3.Connection, tenant: str, entity: Entity, query: Query) -> bool:
    """Whether one entity (not necessarily stored, e.g. a change's after state) meets the
    idPattern, q and scopeQ of a query: the same compiled SQL as queries, over a one-row table."""
    parts: list[str] = []
    params: list[Any] = []
    if query.id_pattern is not None:
        parts.append("regexp(?, e.id)")
        params.append(query.id_pattern)
    for node in (query.q, query.scope_q):
        if node is not None:
            parts.append(compile_node(node, params, tenant))
    if not parts:
        return True
    sql = (
        f"WITH e(tenant, id, doc) AS (VALUES (?, ?, ?)) SELECT 1 FROM e WHERE {' AND '.join(parts)}"
    )
    row = conn.execute(sql, (tenant, entity["id"], orjson.dumps(entity).decode(), *params))
    return row.fetchone() is not None
