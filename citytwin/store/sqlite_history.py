"""Attribute history in SQLite: every instance a write produces, kept beside the current state.

`series` names one attribute of one entity (per datasetId) and never loses a row, so its `sid`
can be cached by every writer process; `history` holds one row per instance, with its times as
integer microseconds and its numeric value in `num`, so that a time window of one series is an
index range and numeric aggregations read the covering index `(sid, observed, num)` only.
Rows are appended in the same transaction as the change that made them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from citytwin.model.history import COLUMNS, SCOPE, Record
from citytwin.model.times import to_micros
from citytwin.store import sqlite_rollup as rollup
from citytwin.store.base import HistoryQuery, HistoryRow, TimeWindow

NOT_STORED = ("createdAt", "modifiedAt", "instanceId")  # kept in columns (or made up)


def stored(inst: dict[str, Any]) -> dict[str, Any]:
    """What of an instance a history row keeps as its body (the rest is in its columns)."""
    return {k: v for k, v in inst.items() if k not in NOT_STORED}


V4 = """
CREATE TABLE series (
    sid INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,  -- tenant, entity, attribute, datasetId, separated by \x1f
    numeric INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE history (
    iid INTEGER PRIMARY KEY AUTOINCREMENT,
    sid INTEGER NOT NULL,
    observed INTEGER,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    deleted INTEGER,
    num REAL,
    body TEXT NOT NULL
);
CREATE INDEX history_observed ON history (sid, observed, num);
"""  # with sqlite_rollup.V5 in the same migration


@dataclass(frozen=True)
class Series:
    sid: int
    entity: str
    attr: str
    dataset: str | None
    numeric: bool


SeriesKey = tuple[str, str, str, str]  # tenant, entity, attribute, datasetId ("" the default)


def _key(tenant: str, entity: str, attr: str = "", dataset: str = "") -> str:
    """One text key per series, so that an entity's (or an attribute's) series are one range
    of its index; without attr, the prefix of the entity's keys."""
    if not attr:
        return f"{tenant}\x1f{entity}\x1f"
    return f"{tenant}\x1f{entity}\x1f{attr}\x1f{dataset}"


def _entity_range(tenant: str, entity: str) -> tuple[str, str]:
    low = _key(tenant, entity)
    return low, low[:-1] + "\x20"


def _attr_range(tenant: str, entity: str, attr: str) -> tuple[str, str]:
    low = _key(tenant, entity, attr)  # ends with the separator before the datasetId
    return low, low[:-1] + "\x20"


class SeriesIds:
    """The sids a writer has seen committed: a series row is never deleted, so they stay right
    whatever other processes write. Those found or made in the open transaction wait in
    `pending` until it commits (and are dropped if it does not)."""

    LIMIT = 1_000_000  # then start again: a cache, not a copy of the table

    def __init__(self) -> None:
        self.known: dict[str, int] = {}
        self.pending: dict[str, int] = {}

    def get(self, key: str) -> int | None:
        return self.known.get(key) or self.pending.get(key)

    def committed(self) -> None:
        if len(self.known) > self.LIMIT:
            self.known.clear()
        self.known.update(self.pending)
        self.pending.clear()

    def rolled_back(self) -> None:
        self.pending.clear()


class WriterConnection(sqlite3.Connection):
    """The writer's connection, with the sids it has seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.series = SeriesIds()


def sids(conn: sqlite3.Connection, wanted: dict[SeriesKey, bool]) -> dict[SeriesKey, int]:
    """The sid of each series (created when new): the writer's cache answers for series it has
    seen; one query finds the other known ones, the rest get the next sids (the writer holds
    the write lock) with one statement. `wanted` says whether each gets only numeric values: a
    series given another value stops being numeric (so those are always looked up)."""
    cache = conn.series if isinstance(conn, WriterConnection) else None
    out: dict[SeriesKey, int] = {}
    keys: dict[SeriesKey, str] = {}
    for k, numeric in wanted.items():
        key = _key(*k)
        sid = cache.get(key) if cache is not None and numeric else None
        if sid is None:
            keys[k] = key
        else:
            out[k] = sid
    if keys:
        out.update(_look_up(conn, keys, wanted))
        if cache is not None:
            cache.pending.update((key, out[k]) for k, key in keys.items())
    return out


def _look_up(
    conn: sqlite3.Connection, keys: dict[SeriesKey, str], wanted: dict[SeriesKey, bool]
) -> dict[SeriesKey, int]:
    if len(keys) == 1:  # the commonest write: one attribute
        rows = conn.execute(
            "SELECT key, sid, numeric FROM series WHERE key = ?", (*keys.values(),)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT key, sid, numeric FROM series WHERE key IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(keys.values())).decode(),),
        ).fetchall()
    known = {key: (sid, bool(numeric)) for key, sid, numeric in rows}
    out: dict[SeriesKey, int] = {}
    new, demoted = [], []
    first = None
    for k, key in keys.items():
        got = known.get(key)
        if got is None:
            if first is None:
                first = conn.execute("SELECT coalesce(max(sid), 0) + 1 FROM series").fetchone()[0]
            out[k] = first + len(new)
            new.append((out[k], key, int(wanted[k])))
        else:
            out[k] = got[0]
            if got[1] and not wanted[k]:
                demoted.append((got[0],))
    if new:
        conn.executemany("INSERT INTO series (sid, key, numeric) VALUES (?, ?, ?)", new)
    if demoted:
        conn.executemany("UPDATE series SET numeric = 0 WHERE sid = ?", demoted)
    return out


def numeric_value(inst: dict[str, Any]) -> float | None:
    """The number aggregations use: a number, or a boolean as 1/0; None for anything else."""
    if inst.get("type") != "Property":
        return None
    value = inst.get("value")
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # an integer past what a double holds
            return None
    return None


def append(conn: sqlite3.Connection, records: Iterable[Record]) -> None:
    items = []
    numeric: dict[SeriesKey, bool] = {}
    for r in records:
        num = None if r.deleted else numeric_value(r.instance)
        key = (r.tenant, r.entity, r.attr, r.instance.get("datasetId") or "")
        numeric[key] = numeric.get(key, True) and (num is not None or r.deleted)
        items.append((r, key, num))
    if not items:
        return
    sid_of = sids(conn, numeric)
    rows, replaced = [], []
    dumps = orjson.dumps
    for r, key, num in items:
        inst = r.instance
        sid = sid_of[key]
        at = to_micros(r.at)
        observed = inst.get("observedAt")
        observed_at = to_micros(observed) if type(observed) is str else None
        if r.replaces and observed_at is not None:
            replaced.append((sid, observed_at))
        body = stored(inst)
        text = dumps(body).decode()  # TEXT: the aggregations read it with json_extract
        rows.append((sid, observed_at, at, at, at if r.deleted else None, num, text))
    dirty = _replace(conn, replaced) if replaced else set()
    conn.executemany(
        "INSERT INTO history (sid, observed, created, modified, deleted, num, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    counted = [
        (sid, observed, num)
        for sid, observed, _, _, _, num, _ in rows
        if num is not None and observed is not None
    ]
    if dirty:
        counted = [c for c in counted if (c[0], rollup.hour_of(c[1])) not in dirty]
        rollup.recompute(conn, dirty)
    if counted:
        rollup.add(conn, counted)


def _replace(conn: sqlite3.Connection, replaced: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Delete the instances the new ones replace (same series and observedAt); the hours of
    those actually deleted must have their roll-ups recomputed."""
    by_sid: dict[int, list[int]] = {}
    for sid, observed in replaced:
        by_sid.setdefault(sid, []).append(observed)
    dirty = set()
    for sid, times in by_sid.items():
        gone = conn.execute(
            "DELETE FROM history WHERE sid = ? AND observed IN (SELECT value FROM json_each(?))"
            " RETURNING observed",
            (sid, orjson.dumps(times).decode()),
        ).fetchall()
        dirty.update((sid, rollup.hour_of(t)) for (t,) in gone)
    return dirty


def backfill(conn: sqlite3.Connection) -> None:
    """A file from before the history: every instance of the current state becomes its first
    history row (at the instance's modifiedAt), so that the two agree from the start."""
    cursor = conn.execute("SELECT tenant, id, doc FROM entities")
    while rows := cursor.fetchmany(1000):
        records = []
        for tenant, entity_id, doc in rows:
            entity = orjson.loads(doc)
            for attr, instances in entity["attrs"].items():
                for inst in instances:
                    at = inst.get("modifiedAt", entity["modifiedAt"])
                    records.append(Record(tenant, entity_id, attr, inst, at))
            if "scope" in entity:
                scope = {"type": "Property", "value": entity["scope"]}
                records.append(Record(tenant, entity_id, SCOPE, scope, entity["modifiedAt"]))
        append(conn, records)


def forget(conn: sqlite3.Connection, tenant: str, entity_ids: Iterable[str]) -> None:
    """Drop the whole history of entities (their series rows stay, numeric again)."""
    ranges = [_entity_range(tenant, i) for i in entity_ids]
    for table in ("history", "rollup"):
        conn.executemany(
            f"DELETE FROM {table} WHERE sid IN (SELECT sid FROM series WHERE key >= ? AND key < ?)",
            ranges,
        )
    conn.executemany("UPDATE series SET numeric = 1 WHERE key >= ? AND key < ?", ranges)


def series_of(
    conn: sqlite3.Connection, tenant: str, entity_ids: list[str], attrs: frozenset[str] | None
) -> list[Series]:
    """The series of entities (of some attributes), each entity one range of the key index."""
    found = []
    for entity_id in entity_ids:
        rows = conn.execute(
            "SELECT sid, key, numeric FROM series WHERE key >= ? AND key < ?",
            _entity_range(tenant, entity_id),
        )
        for sid, key, numeric in rows:
            _, _, attr, dataset = key.split("\x1f")
            if attrs is None or attr in attrs:
                found.append(Series(sid, entity_id, attr, dataset or None, bool(numeric)))
    return found


def read(conn: sqlite3.Connection, series: list[Series], query: HistoryQuery) -> list[HistoryRow]:
    """The instances of each series in the window, oldest first; with last_n the newest n, and
    with limit at most that many a series (from the oldest, or from the newest with last_n)."""
    col = COLUMNS[query.window.prop]
    where, args = _window(col, query.window)
    newest = query.last_n is not None
    cap = [n for n in (query.last_n, query.limit) if n is not None]
    sql = (
        f"SELECT iid, observed, created, modified, deleted, body FROM history"
        f" WHERE sid = ? AND {where} ORDER BY {col} {'DESC' if newest else 'ASC'},"
        f" iid {'DESC' if newest else 'ASC'}"
    )
    if cap:
        sql += f" LIMIT {min(cap)}"
    out: list[HistoryRow] = []
    for s in series:
        rows = conn.execute(sql, (s.sid, *args)).fetchall()
        if newest:
            rows.reverse()
        out.extend(
            HistoryRow(s.entity, s.attr, s.dataset, iid, obs, cre, mod, dele, orjson.loads(body))
            for iid, obs, cre, mod, dele, body in rows
        )
    return out


def _window(col: str, window: TimeWindow) -> tuple[str, list[int]]:
    where, args = [f"{col} IS NOT NULL"], []
    if window.start is not None:
        where.append(f"{col} >= ?")
        args.append(window.start)
    if window.end is not None:
        where.append(f"{col} < ?")
        args.append(window.end)
    return " AND ".join(where), args


def bounds(
    conn: sqlite3.Connection, series: list[Series], window: TimeWindow
) -> tuple[int | None, int | None]:
    """The oldest and newest instant of these series in the window: two index probes a series
    (min and max in one statement would scan the range)."""
    col = COLUMNS[window.prop]
    where, args = _window(col, window)
    low: int | None = None
    high: int | None = None
    for s in series:
        first = conn.execute(
            f"SELECT {col} FROM history WHERE sid = ? AND {where} ORDER BY {col} LIMIT 1",
            (s.sid, *args),
        ).fetchone()
        if first is None:
            continue
        (last,) = conn.execute(
            f"SELECT {col} FROM history WHERE sid = ? AND {where} ORDER BY {col} DESC LIMIT 1",
            (s.sid, *args),
        ).fetchone()
        low = first[0] if low is None else min(low, first[0])
        high = last if high is None else max(high, last)
    return low, high


def delete_series(
    conn: sqlite3.Connection, tenant: str, entity: str, attr: str, datasets: set[str] | None
) -> int:
    """Forget an attribute's history: of the given datasetIds ("" the default), or all."""
    rows = conn.execute(
        "SELECT sid, key FROM series WHERE key >= ? AND key < ?", _attr_range(tenant, entity, attr)
    ).fetchall()
    sids = [sid for sid, key in rows if datasets is None or key.rsplit("\x1f", 1)[1] in datasets]
    rollup.drop(conn, sids)
    return sum(conn.execute("DELETE FROM history WHERE sid = ?", (sid,)).rowcount for sid in sids)


def _instance(
    conn: sqlite3.Connection, key: tuple[str, str, str], iid: int
) -> tuple[int, int | None] | None:
    """(sid, observed) of an instance of an entity's attribute."""
    row = conn.execute(
        "SELECT h.sid, h.observed FROM history h JOIN series s ON s.sid = h.sid"
        " WHERE h.iid = ? AND s.key >= ? AND s.key < ?",
        (iid, *_attr_range(*key)),
    ).fetchone()
    return (row[0], row[1]) if row else None


def _rehour(conn: sqlite3.Connection, sid: int, *observed: int | None) -> None:
    rollup.recompute(conn, [(sid, rollup.hour_of(t)) for t in observed if t is not None])


def modify_instance(
    conn: sqlite3.Connection, key: tuple[str, str, str], iid: int, inst: dict[str, Any], at: str
) -> bool:
    """5.6.14: replace one instance, keeping its instanceId and createdAt."""
    found = _instance(conn, key, iid)
    if found is None:
        return False
    observed = inst.get("observedAt")
    new = to_micros(observed) if isinstance(observed, str) else None
    body = stored(inst)
    num = numeric_value(inst)
    conn.execute(
        "UPDATE history SET observed = ?, modified = ?, num = ?, body = ? WHERE iid = ?",
        (new, to_micros(at), num, orjson.dumps(body).decode(), iid),
    )
    if num is None:  # the series now holds a value aggregations cannot add up
        conn.execute("UPDATE series SET numeric = 0 WHERE sid = ?", (found[0],))
    _rehour(conn, found[0], found[1], new)
    return True


def delete_instance(conn: sqlite3.Connection, key: tuple[str, str, str], iid: int) -> bool:
    found = _instance(conn, key, iid)
    if found is None:
        return False
    conn.execute("DELETE FROM history WHERE iid = ?", (iid,))
    _rehour(conn, *found)
    return True


PRUNE_SERIES = 200  # series a transaction


def prune_series(conn: sqlite3.Connection, after_sid: int, cutoff: int) -> tuple[int, int | None]:
    """Drop instances older than `cutoff` (by observedAt, or createdAt without one) in the next
    PRUNE_SERIES series after `after_sid`; returns (rows dropped, last sid seen or None)."""
    sids = [
        r[0]
        for r in conn.execute(
            "SELECT sid FROM series WHERE sid > ? ORDER BY sid LIMIT ?", (after_sid, PRUNE_SERIES)
        )
    ]
    dropped, touched = 0, []
    for sid in sids:
        gone = conn.execute(
            "DELETE FROM history WHERE sid = ? AND observed < ?", (sid, cutoff)
        ).rowcount
        if gone:
            touched.append(sid)
        dropped += gone
        dropped += conn.execute(
            "DELETE FROM history WHERE sid = ? AND observed IS NULL AND created < ?",
            (sid, cutoff),
        ).rowcount
    rollup.drop(conn, touched, before_hour=rollup.hour_of(cutoff))
    rollup.recompute(conn, [(sid, rollup.hour_of(cutoff)) for sid in touched])
    return dropped, (sids[-1] if sids else None)
