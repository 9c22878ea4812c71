"""Pagination of attribute instances (6.3.10 of V1.9): a cap per series, 206 and Content-Range.

Without lastN instances are paged forwards (oldest first), with lastN backwards. When a series
holds more than the cap, the range returned is cut at the same instant for every series, so
that the next page (the same request from the range's end) misses nothing of any of them.
"""

from __future__ import annotations

from citytwin.model.history import COLUMNS, HistoryRow
from citytwin.model.temporal import Temporal
from citytwin.model.times import from_micros

Key = tuple[str, str, str | None]  # entity, attribute, datasetId


def instant(row: HistoryRow, prop: str) -> int:
    value = getattr(row, COLUMNS[prop])
    assert value is not None, "rows are read by the instant they are asked for"
    return value


def by_series(rows: list[HistoryRow]) -> dict[Key, list[HistoryRow]]:
    out: dict[Key, list[HistoryRow]] = {}
    for row in rows:
        out.setdefault((row.entity, row.attr, row.dataset), []).append(row)
    return out


class Stuck(Exception):
    """More instances than the cap share one instant: no page could ever get past it."""


def cut(
    series: dict[Key, list[HistoryRow]], temporal: Temporal, cap: int
) -> tuple[dict[Key, list[HistoryRow]], str | None]:
    """Keep at most `cap` instances a series (they were read with one more, to tell); when any
    had more, cut every series at one instant and say so in a Content-Range value. Raises
    Stuck when the next page would start where this one does."""
    prop, backwards = temporal.window.prop, temporal.last_n is not None
    full = {k: rows for k, rows in series.items() if len(rows) > cap}
    if not full or (backwards and temporal.last_n is not None and temporal.last_n <= cap):
        return series, None
    kept = {k: (rows[-cap:] if backwards else rows[:cap]) for k, rows in series.items()}
    times = [instant(r, prop) for rows in kept.values() for r in rows]
    if backwards:
        end = max(instant(kept[k][0], prop) for k in full)
        if not any(t > end for t in times):
            raise Stuck
        kept = {k: [r for r in rows if instant(r, prop) >= end] for k, rows in kept.items()}
        start = _backwards_start(temporal, max(times))
        size = str(temporal.last_n)
    else:
        end = min(instant(kept[k][-1], prop) for k in full)
        if not any(t < end for t in times):
            raise Stuck
        kept = {k: [r for r in rows if instant(r, prop) <= end] for k, rows in kept.items()}
        start = temporal.window.start if temporal.timerel in ("after", "between") else min(times)
        size = "*"
    assert start is not None
    return kept, f"date-time {from_micros(start)}-{from_micros(end)}/{size}"


def _backwards_start(temporal: Temporal, most_recent: int) -> int:
    if temporal.timerel == "before" and temporal.window.end is not None:
        return temporal.window.end
    if temporal.timerel == "between" and temporal.end_time_at is not None:
        return temporal.end_time_at
    return most_recent
