"""The SQLite schema, its migrations, and the indexes kept beside the documents.

`entity_types` lets a type select its entities through an index; `geo_index` (an R*Tree of the
bounding boxes of every GeoProperty instance, keyed through `geo_keys`) lets geo-queries look at
candidates only. The R*Tree keeps 32-bit boxes (rounded outwards), so `geo_keys` also keeps the
exact coordinates of points, which lets queries judge points without reading documents. Both are
rewritten in the same transaction as the documents they index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from citytwin.model.geo import bbox, positions
from citytwin.store.sqlite_changes import V3
from citytwin.store.sqlite_devices import V6
from citytwin.store.sqlite_history import V4, backfill
from citytwin.store.sqlite_rollup import V5

Entity = dict[str, Any]

_V1 = """
CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE entities (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
"""
_V2 = """
CREATE TABLE entity_types (tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL);
CREATE INDEX entity_types_by_type ON entity_types (tenant, type, id);
CREATE INDEX entity_types_by_id ON entity_types (tenant, id);
CREATE TABLE geo_keys (key INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
                       attr TEXT NOT NULL, x REAL, y REAL);
CREATE INDEX geo_keys_by_id ON geo_keys (tenant, id);
CREATE VIRTUAL TABLE geo_index USING rtree(key, minx, maxx, miny, maxy);
"""


def _backfill(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT tenant, id, doc FROM entities").fetchall()
    by_tenant: dict[str, dict[str, Entity | None]] = {}
    for tenant, entity_id, doc in rows:
        by_tenant.setdefault(tenant, {})[entity_id] = orjson.loads(doc)
    for tenant, entities in by_tenant.items():
        reindex(conn, tenant, entities)


Migration = str | Callable[[sqlite3.Connection], None]
MIGRATIONS: list[list[Migration]] = [[_V1], [_V2, _backfill], [V3], [V4, V5, backfill], [V6]]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to the newest schema, one numbered step per transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, steps in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] < number:
                for step in steps:
                    _run(conn, step)
                conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _run(conn: sqlite3.Connection, step: Migration) -> None:
    if callable(step):
        step(conn)
        return
    for statement in filter(str.strip, step.split(";")):
        conn.execute(statement)


def reindex(
    conn: sqlite3.Connection,
    tenant: str,
    entities: dict[str, Entity | None],
    new: frozenset[str] = frozenset(),
) -> None:
    """Rewrite the type and geo index rows of these entities (None: the entity is gone).

    Entities in `new` did not exist before, so they have no rows to remove.
    """
    keys = [(tenant, i) for i in entities if i not in new]
    conn.executemany("DELETE FROM entity_types WHERE tenant = ? AND id = ?", keys)
    conn.executemany(
        "INSERT INTO entity_types (tenant, type, id) VALUES (?, ?, ?)",
        [(tenant, t, i) for i, e in entities.items() if e is not None for t in e["type"]],
    )
    _drop_geo(conn, keys)
    _add_geo(conn, tenant, ((i, e) for i, e in entities.items() if e is not None))


def reindex_attribute(
    conn: sqlite3.Connection, tenant: str, entity_id: str, attr: str, instances: list[Entity]
) -> None:
    """Rewrite the geo index rows of one attribute of one entity."""
    old = conn.execute(
        "SELECT key FROM geo_keys WHERE tenant = ? AND id = ? AND attr = ?",
        (tenant, entity_id, attr),
    ).fetchall()
    conn.executemany("DELETE FROM geo_index WHERE key = ?", old)
    conn.executemany("DELETE FROM geo_keys WHERE key = ?", old)
    _add_geo(conn, tenant, [(entity_id, {"attrs": {attr: instances}})])


def _drop_geo(conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> None:
    conn.executemany(
        "DELETE FROM geo_index WHERE key IN (SELECT key FROM geo_keys WHERE tenant = ? AND id = ?)",
        keys,
    )
    conn.executemany("DELETE FROM geo_keys WHERE tenant = ? AND id = ?", keys)


def _add_geo(conn: sqlite3.Connection, tenant: str, entities: Iterable[tuple[str, Entity]]) -> None:
    shapes = [
        (entity_id, attr, inst["value"])
        for entity_id, entity in entities
        for attr, instances in entity["attrs"].items()
        for inst in instances
        if inst.get("type") == "GeoProperty"
        and isinstance(inst.get("value"), dict)
        and next(positions(inst["value"]), None) is not None  # (an empty collection: no box)
    ]
    if not shapes:
        return
    # keys are handed out here, inside the writer's transaction, so that both tables can be
    # filled with one executemany each
    first = conn.execute("SELECT coalesce(max(key), 0) + 1 FROM geo_keys").fetchone()[0]
    conn.executemany(
        "INSERT INTO geo_keys (key, tenant, id, attr, x, y) VALUES (?, ?, ?, ?, ?, ?)",
        [(first + n, tenant, i, attr, *_point(v)) for n, (i, attr, v) in enumerate(shapes)],
    )
    conn.executemany(
        "INSERT INTO geo_index VALUES (?, ?, ?, ?, ?)",
        [(first + n, *bbox(value)) for n, (_, _, value) in enumerate(shapes)],
    )


def _point(value: dict[str, Any]) -> tuple[float | None, float | None]:
    if value.get("type") == "Point":
        return float(value["coordinates"][0]), float(value["coordinates"][1])
    return None, None
