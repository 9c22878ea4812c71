"""Aggregations of history in SQLite (4.5.19): the totals each period needs, computed by the
database, from the hourly roll-ups where the periods are whole hours, else from the instances.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from citytwin.model.history import COLUMNS
from citytwin.store import sqlite_rollup as rollup
from citytwin.store.sqlite_history import Series

_VALUE = (
    "coalesce(json_extract(body, '$.value'), json_extract(body, '$.object'),"
    " json_extract(body, '$.vocab'), json_extract(body, '$.languageMap'),"
    " json_extract(body, '$.valueList'), json_extract(body, '$.objectList'),"
    " json_extract(body, '$.json'))"
)
# the totals every aggregation method is computed from, in this order (None when not asked for)
TOTALS = rollup.TOTALS
_NEEDS = {"totalCount": ("count",), "distinctCount": ("distinct",), "sum": ("sum",),
          "avg": ("sum", "count"), "min": ("min",), "max": ("max",), "sumsq": ("sumsq",),
          "stddev": ("count", "dev1", "dev2")}  # fmt: skip
SPAN_SCAN_MAX = 5000  # periods a series read one index range each; more: one GROUP BY


def wanted_totals(methods: tuple[str, ...]) -> list[str]:
    """The totals the methods need (count always: it tells empty periods)."""
    return [t for t in TOTALS if t == "count" or any(t in _NEEDS[m] for m in methods)]


def _totals_sql(wanted: list[str], numeric: bool, shift: float) -> str:
    """All of TOTALS as columns, NULL for those not wanted: rows come out in TOTALS order."""
    value = "num" if numeric else _VALUE
    k = repr(float(shift))
    sql = {"count": "count(*)", "distinct": f"count(DISTINCT {value})", "sum": "sum(num)",
           "min": f"min({value})", "max": f"max({value})", "sumsq": "sum(num * num)",
           "dev1": f"sum(num - {k})", "dev2": f"sum((num - {k}) * (num - {k}))"}  # fmt: skip
    return ", ".join(sql[t] if t in wanted else "NULL" for t in TOTALS)


def _shift(conn: sqlite3.Connection, sid: int) -> float:
    """A value of the series, to take deviations from (any one is close to the others)."""
    row = conn.execute(
        "SELECT num FROM history WHERE sid = ? AND num IS NOT NULL LIMIT 1", (sid,)
    ).fetchone()
    return float(row[0]) if row and abs(row[0]) != float("inf") else 0.0


def aggregate(
    conn: sqlite3.Connection,
    series: list[Series],
    prop: str,
    spans: list[tuple[int, int]],
    methods: tuple[str, ...],
) -> list[tuple[Series, int, tuple[Any, ...]]]:
    """(series, span number, totals) of every span [start, end) holding instances; totals are
    TOTALS, None where no method asked for them. Tombstones are not counted.

    Spans on whole hours of numeric series are read from the hourly roll-ups; other spans are
    one index range each (no sort), or, when there are very many short ones, one GROUP BY."""
    col = COLUMNS[prop]
    wanted = wanted_totals(methods)
    numbered = list(enumerate(spans))
    hourly, rest = numbered, []
    if prop != "observedAt" or "distinct" in wanted or "dev1" in wanted:
        hourly, rest = [], numbered
    else:
        hourly = [(i, span) for i, span in numbered if rollup.usable(span)]
        rest = [(i, span) for i, span in numbered if not rollup.usable(span)]
    in_order = rollup.contiguous(hourly)
    many = {
        id(part): len(part) > SPAN_SCAN_MAX and rollup.contiguous(part) for part in (rest, numbered)
    }
    found = []
    for s in series:
        shift = _shift(conn, s.sid) if "dev1" in wanted else 0.0
        columns = _totals_sql(wanted, s.numeric, shift)
        keep = "num IS NOT NULL" if s.numeric else "deleted IS NULL"
        rows: list[tuple[int, Any]] = []
        raw = rest if s.numeric else numbered
        if s.numeric and hourly:
            rows = rollup.spanned(conn, s.sid, hourly, wanted, in_order)
        if many[id(raw)]:
            rows += _grouped(conn, s.sid, col, keep, columns, raw)
        elif raw:
            rows += _spanned(conn, s.sid, col, keep, columns, raw)
        found.extend((s, number, tuple(values)) for number, values in rows if values[0])
    return sorted(found, key=lambda item: (item[0].sid, item[1]))


def _spanned(
    conn: sqlite3.Connection,
    sid: int,
    col: str,
    keep: str,
    columns: str,
    spans: list[tuple[int, tuple[int, int]]],
) -> list[tuple[int, list[Any]]]:
    sql = (
        f"SELECT s.value ->> 0, (SELECT json_array({columns}) FROM history WHERE sid = ?"
        f" AND {keep} AND {col} >= s.value ->> 1 AND {col} < s.value ->> 2) FROM json_each(?) s"
    )
    flat = [(i, start, end) for i, (start, end) in spans]
    rows = conn.execute(sql, (sid, orjson.dumps(flat).decode())).fetchall()
    return [(key, orjson.loads(values)) for key, values in rows]


def _grouped(
    conn: sqlite3.Connection,
    sid: int,
    col: str,
    keep: str,
    columns: str,
    spans: list[tuple[int, tuple[int, int]]],
) -> list[tuple[int, list[Any]]]:
    """Contiguous spans of one length (the last may be cut short by the window)."""
    first, (start, _) = spans[0]
    step = spans[0][1][1] - start
    end = spans[-1][1][1]
    sql = (
        f"SELECT ({col} - ?) / ?, {columns} FROM history WHERE sid = ? AND {keep}"
        f" AND {col} >= ? AND {col} < ? GROUP BY 1"
    )
    rows = conn.execute(sql, (start, step, sid, start, end)).fetchall()
    return [(first + number, list(values)) for number, *values in rows]
