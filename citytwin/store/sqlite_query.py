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
from typing import Any

import orjson

from citytwin.model.geo import GeoQuery, matches, matching_boxes
from citytwin.store.base import Query, QueryResult
from citytwin.store.sql import attr_path, compile_node, order_by


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp(pattern: str, value: Any) -> bool:
    return isinstance(value, str) and _pattern(pattern).search(value) is not None


def register(conn: sqlite3.Connection) -> None:
    """SQL functions the compiled queries use."""
    conn.create_function("regexp", 2, _regexp, deterministic=True)


def where(tenant: str, query: Query) -> tuple[str, list[Any]]:
    """The WHERE clause of a query over `entities e`, and its parameters."""
    parts = ["e.tenant = ?"]
    params: list[Any] = [tenant]
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
    return " AND ".join(parts), params


def geo_ids(conn: sqlite3.Connection, tenant: str, geo: GeoQuery) -> list[str]:
    """Ids of the entities whose geoproperty satisfies a geo-query, sorted.

    The R*Tree gives the candidates whose box touches the query's box (all of them for
    disjoint); points are judged from their index box alone, vectorized; other shapes are read
    from their documents and judged one by one.
    """
    sql = (
        "SELECT k.id, g.minx, g.maxx, g.miny, g.maxy FROM geo_index g"
        " CROSS JOIN geo_keys k ON k.key = g.key WHERE k.tenant = ? AND k.attr = ?"
    )
    params: list[Any] = [tenant, geo.geoproperty]
    box = geo.bbox()
    if box is not None:
        sql += " AND g.minx <= ? AND g.maxx >= ? AND g.miny <= ? AND g.maxy >= ?"
        params += [box[1], box[0], box[3], box[2]]
    points, shapes = [], set()
    for entity_id, minx, maxx, miny, maxy in conn.execute(sql, params):
        if minx == maxx and miny == maxy:
            points.append((entity_id, (minx, maxx, miny, maxy)))
        else:
            shapes.add(entity_id)
    verdicts = matching_boxes(geo, [b for _, b in points])
    found = {i for (i, _), ok in zip(points, verdicts, strict=True) if ok}
    found |= {i for i in shapes - found if _shape_matches(conn, tenant, i, geo)}
    return sorted(found)


def _shape_matches(conn: sqlite3.Connection, tenant: str, entity_id: str, geo: GeoQuery) -> bool:
    row = conn.execute(
        "SELECT json_extract(doc, ?) FROM entities WHERE tenant = ? AND id = ?",
        (attr_path(geo.geoproperty), tenant, entity_id),
    ).fetchone()
    instances = orjson.loads(row[0]) if row and row[0] else []
    return any(
        i.get("type") == "GeoProperty"
        and isinstance(i.get("value"), dict)
        and matches(geo, i["value"])
        for i in instances
    )


def run_query(conn: sqlite3.Connection, tenant: str, query: Query) -> QueryResult:
    clause, params = _with_geo(conn, tenant, query)
    page = ""
    if query.limit is not None:
        page = " LIMIT ? OFFSET ?"
    rows = conn.execute(
        f"SELECT e.doc FROM entities e WHERE {clause} ORDER BY {order_by(query.order_by)}{page}",
        (*params, *((query.limit, query.offset) if page else ())),
    ).fetchall()
    count = None
    if query.count:
        sql = f"SELECT count(*) FROM entities e WHERE {clause}"
        count = conn.execute(sql, params).fetchone()[0]
    return QueryResult([orjson.loads(doc) for (doc,) in rows], count)


def _with_geo(conn: sqlite3.Connection, tenant: str, query: Query) -> tuple[str, list[Any]]:
    clause, params = where(tenant, query)
    if query.geo is None:
        return clause, params
    ids = geo_ids(conn, tenant, query.geo)
    return clause + " AND e.id IN (SELECT value FROM json_each(?))", [*params, orjson.dumps(ids)]


def matching_ids(conn: sqlite3.Connection, tenant: str, query: Query) -> list[str]:
    """Ids of every entity a query selects (for purge), exact geo predicates included."""
    clause, params = _with_geo(conn, tenant, query)
    return [i for (i,) in conn.execute(f"SELECT e.id FROM entities e WHERE {clause}", params)]
