"""The SQLite store's history methods (reads run inline on the reader, edits on the writer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from citytwin.model.history import HistoryQuery, HistoryRow
from citytwin.store import sqlite_aggregate
from citytwin.store import sqlite_history as h

Totals = tuple[Any, ...]


class TimelineMixin:
    reader: sqlite3.Connection
    _write: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

    def _series(self, tenant: str, entity_ids: list[str], query: HistoryQuery) -> list[h.Series]:
        found = h.series_of(self.reader, tenant, entity_ids, query.attrs)
        if query.datasets is None:
            return found
        return [s for s in found if s.dataset in query.datasets]

    async def history(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> list[HistoryRow]:
        return h.read(self.reader, self._series(tenant, entity_ids, query), query)

    async def history_entities(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> set[str]:
        """Which of these entities have at least one instance in the window."""
        one = HistoryQuery(query.window, limit=1)
        found: set[str] = set()
        for s in self._series(tenant, entity_ids, query):
            if s.entity not in found and h.read(self.reader, [s], one):
                found.add(s.entity)
        return found

    async def history_attrs(self, tenant: str, entity_id: str) -> set[str]:
        return {s.attr for s in self._series(tenant, [entity_id], HistoryQuery())}

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
        of: dict[str, list[h.Series]] = {}
        for s in self._series(tenant, entity_ids, query):
            of.setdefault(s.entity, []).append(s)
        found = []
        for entity, series in of.items():
            low, high = h.bounds(self.reader, series, query.window)
            if low is None or high is None:
                continue
            spans = periods(entity, low, high)
            prop = query.window.prop
            rows = sqlite_aggregate.aggregate(self.reader, series, prop, spans, methods)
            found += [(s.entity, s.attr, s.dataset, n, v, s.numeric) for s, n, v in rows]
        return found

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str, datasets: set[str] | None
    ) -> int:
        return await self._write(
            lambda conn: h.delete_series(conn, tenant, entity_id, attr, datasets)
        )

    async def modify_instance(
        self, tenant: str, entity_id: str, attr: str, iid: int, inst: dict[str, Any], at: str
    ) -> bool:
        key = (tenant, entity_id, attr)
        return await self._write(lambda conn: h.modify_instance(conn, key, iid, inst, at))

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool:
        key = (tenant, entity_id, attr)
        return await self._write(lambda conn: h.delete_instance(conn, key, iid))

    async def prune_history(self, cutoff: int) -> int:
        """Drop instances older than cutoff, a few series a transaction (writers keep going)."""
        total, after = 0, 0
        while True:
            dropped, last = await self._write(
                lambda conn, after=after: h.prune_series(conn, after, cutoff)
            )
            total += dropped
            if last is None:
                return total
            after = last
