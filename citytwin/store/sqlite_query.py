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

from citytwin.model.geo import matches
from citytwin.store.base import Entity, Query, QueryResult
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
    if query.geo is not None:
        parts.append(_geo_candidates(tenant, query, params))
    return " AND ".join(parts), params


def _geo_candidates(tenant: str, query: Query, params: list[Any]) -> str:
    geo = query.geo
    assert geo is not None
    box = geo.bbox()
    if box is None:  # disjoint, or near with only a minimum: every entity with the property
        params.append(attr_path(geo.geoproperty))
        return "json_type(e.doc, ?) IS NOT NULL"
    minx, maxx, miny, maxy = box
    params.extend((maxx, minx, maxy, miny, tenant, geo.geoproperty))
    return (
        "e.id IN (SELECT k.id FROM geo_index g JOIN geo_keys k ON k.key = g.key"
        " WHERE g.minx <= ? AND g.maxx >= ? AND g.miny <= ? AND g.maxy >= ?"
        " AND k.tenant = ? AND k.attr = ?)"
    )


def run_query(conn: sqlite3.Connection, tenant: str, query: Query) -> QueryResult:
    clause, params = where(tenant, query)
    if query.geo is not None:
        return _exact(conn, clause, params, query)
    page = ""
    if query.limit is not None:
        page = " LIMIT ? OFFSET ?"
    rows = conn.execute(
        f"SELECT e.doc FROM entities e WHERE {clause} ORDER BY {order_by(query.order_by)}{page}",
        (*params, *((query.limit, query.offset) if page else ())),
    ).fetchall()
    count = None
    if query.count:
        count = conn.execute(f"SELECT count(*) FROM entities e WHERE {clause}", params).fetchone()[
            0
        ]
    return QueryResult([orjson.loads(doc) for (doc,) in rows], count)


def _exact(conn: sqlite3.Connection, clause: str, params: list[Any], query: Query) -> QueryResult:
    geo = query.geo
    assert geo is not None
    found: list[Entity] = []
    sql = f"SELECT e.doc FROM entities e WHERE {clause} ORDER BY {order_by(query.order_by)}"
    for (doc,) in conn.execute(sql, params):
        entity = orjson.loads(doc)
        if any(
            inst.get("type") == "GeoProperty" and matches(geo, inst["value"])
            for inst in entity["attrs"].get(geo.geoproperty, [])
        ):
            found.append(entity)
    end = None if query.limit is None else query.offset + query.limit
    return QueryResult(found[query.offset : end], len(found) if query.count else None)


def matching_ids(conn: sqlite3.Connection, tenant: str, query: Query) -> list[str]:
    """Ids of every entity a query selects (for purge), exact geo predicates included."""
    if query.geo is not None:
        return [e["id"] for e in _exact(conn, *where(tenant, query), query).entities]
    clause, params = where(tenant, query)
    return [i for (i,) in conn.execute(f"SELECT e.id FROM entities e WHERE {clause}", params)]
