"""Hourly roll-ups of numeric history: count, sum, min, max and sum of squares per series and hour
of observedAt, kept in the same transaction as the instances they summarise.

An aggregation whose periods are whole hours on hour boundaries (hourly, daily, monthly...) reads
one row an hour instead of every instance (60 times fewer at one reading a minute). Appends
update their hour incrementally; anything that removes or changes an instance recomputes the
hours it touched from the instances themselves, so min and max stay exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

HOUR = 3_600_000_000  # microseconds

V5 = """
CREATE TABLE rollup (
    sid INTEGER NOT NULL,
    hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    sumsq REAL NOT NULL,
    PRIMARY KEY (sid, hour)
) WITHOUT ROWID;
"""

Bucket = tuple[int, int]  # sid, hour
# what aggregations need; dev1 and dev2 sum the deviations (and their squares) from one of the
# series' values, which keeps stddev exact where sumsq - sum * mean would cancel out
TOTALS = ("count", "distinct", "sum", "min", "max", "sumsq", "dev1", "dev2")


def hour_of(observed: int) -> int:
    return observed // HOUR


def add(conn: sqlite3.Connection, rows: Iterable[tuple[int, int, float]]) -> None:
    """Count new instances (sid, observed, number) into their hours (observed >= 0 only)."""
    sums: dict[Bucket, list[float]] = {}
    for sid, observed, num in rows:
        if observed < 0:
            continue
        got = sums.get((sid, observed // HOUR))
        if got is None:
            sums[(sid, observed // HOUR)] = [1, num, num, num, num * num]
        else:
            got[0] += 1
            got[1] += num
            got[2] = min(got[2], num)
            got[3] = max(got[3], num)
            got[4] += num * num
    if not sums:  # (an executemany of nothing still costs a statement's worth)
        return
    conn.executemany(
        "INSERT INTO rollup (sid, hour, count, sum, min, max, sumsq) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sid, hour) DO UPDATE SET count = count + excluded.count,"
        " sum = sum + excluded.sum, min = min(min, excluded.min), max = max(max, excluded.max),"
        " sumsq = sumsq + excluded.sumsq",
        [(sid, hour, *values) for (sid, hour), values in sums.items()],
    )


def recompute(conn: sqlite3.Connection, buckets: Iterable[Bucket]) -> None:
    """Rebuild hours from their instances (after a removal or a change)."""
    for sid, hour in set(buckets):
        if hour < 0:
            continue
        conn.execute("DELETE FROM rollup WHERE sid = ? AND hour = ?", (sid, hour))
        conn.execute(
            "INSERT INTO rollup (sid, hour, count, sum, min, max, sumsq)"
            " SELECT sid, ?, count(*), sum(num), min(num), max(num), sum(num * num)"
            " FROM history WHERE sid = ? AND observed >= ? AND observed < ? AND num IS NOT NULL"
            " GROUP BY sid",
            (hour, sid, hour * HOUR, (hour + 1) * HOUR),
        )


def drop(conn: sqlite3.Connection, sids: Iterable[int], before_hour: int | None = None) -> None:
    """Forget the hours of series (all, or those before an hour)."""
    if before_hour is None:
        conn.executemany("DELETE FROM rollup WHERE sid = ?", [(s,) for s in sids])
    else:
        conn.executemany(
            "DELETE FROM rollup WHERE sid = ? AND hour < ?", [(s, before_hour) for s in sids]
        )


def usable(span: tuple[int, int]) -> bool:
    """Whether a span of observedAt is whole hours (and after 1970: hours are kept from then)."""
    start, end = span
    return start >= 0 and start % HOUR == 0 and end % HOUR == 0


_COLUMNS = {"count": "sum(count)", "sum": "sum(sum)", "min": "min(min)", "max": "max(max)",
            "sumsq": "sum(sumsq)"}  # fmt: skip


def spanned(
    conn: sqlite3.Connection,
    sid: int,
    spans: list[tuple[int, tuple[int, int]]],
    wanted: list[str],
    contiguous: bool,
) -> list[tuple[int, tuple[Any, ...]]]:
    """The totals of (numbered) spans from their hours: one index range of `rollup` a span, or
    for contiguous spans of one length (see `contiguous`), one range read over them all."""
    if contiguous:
        return _ranged(conn, sid, spans, wanted)
    columns = ", ".join(_COLUMNS[t] if t in wanted else "NULL" for t in TOTALS)
    hours = [(i, start // HOUR, end // HOUR) for i, (start, end) in spans]
    sql = (
        f"SELECT s.value ->> 0, (SELECT json_array({columns}) FROM rollup WHERE sid = ?"
        " AND hour >= s.value ->> 1 AND hour < s.value ->> 2) FROM json_each(?) s"
    )
    rows = conn.execute(sql, (sid, orjson.dumps(hours).decode())).fetchall()
    return [(key, tuple(orjson.loads(values))) for key, values in rows]


def contiguous(spans: list[tuple[int, tuple[int, int]]]) -> bool:
    """Numbered spans one after the other, of one length (the last may be cut short by the
    window): one range read, grouped by (instant - start) / length, answers them all."""
    if len(spans) < 2:
        return False
    first, (start, end) = spans[0]
    step = end - start
    last = len(spans) - 1
    return all(
        n == first + k and b == start + k * step and (e - b == step or (k == last and e - b < step))
        for k, (n, (b, e)) in enumerate(spans)
    )


def _ranged(
    conn: sqlite3.Connection, sid: int, spans: list[tuple[int, tuple[int, int]]], wanted: list[str]
) -> list[tuple[int, tuple[Any, ...]]]:
    """Hourly spans are the rows themselves; longer ones group whole hours."""
    first, (start, end) = spans[0]
    hours = (end - start) // HOUR
    bare = {"count": "count", "sum": "sum", "min": "min", "max": "max", "sumsq": "sumsq"}
    names = bare if hours == 1 else _COLUMNS
    columns = ", ".join(names[t] if t in wanted else "NULL" for t in TOTALS)
    grouped = "" if hours == 1 else " GROUP BY 1"
    sql = (
        f"SELECT (hour - ?) / ?, {columns} FROM rollup WHERE sid = ? AND hour >= ? AND hour < ?"
        + grouped
    )
    args = (start // HOUR, hours, sid, start // HOUR, spans[-1][1][1] // HOUR)
    return [(first + n, tuple(values)) for n, *values in conn.execute(sql, args)]
