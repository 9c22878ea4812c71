"""The temporal API's service (5.6.11-5.6.16, 5.7.3-5.7.4): history reads, aggregations and
temporal provision, over the same store and write path as the current state.

A temporal entity is an entity: creating one through the temporal API also makes its current
state (per attribute and datasetId, the instance observed last), and every write through the
core API adds to the history. So the two APIs always agree.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

from citytwin.broker import Broker, now
from citytwin.errors import BadRequestData, ResourceNotFound
from citytwin.model.context import Context
from citytwin.model.entity import Entity, Instance, parse_attribute
from citytwin.model.history import SCOPE, HistoryQuery, TimeWindow, series_attr
from citytwin.model.temporal import (
    AGGREGATED,
    Temporal,
    TemporalBody,
    entity_of,
    latest,
    newer,
    parse_temporal_entity,
)
from citytwin.model.temporal_page import Key, Stuck, by_series, cut
from citytwin.model.temporal_render import INSTANCE_PREFIX
from citytwin.model.times import Duration, to_micros
from citytwin.model.validate import check_uri
from citytwin.store.base import Change, HistoryEntry, MutateFn, Query, Store

Periods = dict[tuple[str, str | None], list[tuple[int, int, tuple[Any, ...], bool]]]
MAX_PERIODS = 100_000
log = logging.getLogger("citytwin")


@dataclass
class History:
    """What a temporal read found: per entity, its series (or its periods when aggregated)."""

    entities: list[Entity]
    series: dict[str, dict[Key, list[Any]]]
    periods: dict[str, Periods]
    content_range: str | None = None


class Timeline:
    def __init__(self, broker: Broker, instance_cap: int) -> None:
        self.broker = broker
        self.store = broker.store
        self.cap = instance_cap

    # -- provision -------------------------------------------------------------------------------

    async def upsert(self, tenant: str, body: Any, ctx: Context) -> bool:
        """5.6.11: create (True) or add to (False) a temporal entity."""
        stamp = now()
        parsed = parse_temporal_entity(body, ctx, stamp, fragment=False)
        assert parsed.entity_id is not None
        result = await self.broker.write(tenant, parsed.entity_id, _upsert(parsed, stamp))
        return result == "created"

    async def add_attrs(self, tenant: str, entity_id: str, body: Any, ctx: Context) -> None:
        """5.6.12: add instances to an existing temporal entity."""
        check_uri(entity_id, "entity id")
        stamp = now()
        parsed = parse_temporal_entity(body, ctx, stamp, fragment=True)
        parsed.entity_id = entity_id
        await self.broker.write(tenant, entity_id, _upsert(parsed, stamp, existing=True))

    async def delete_attr(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        ctx: Context,
        dataset_id: str | None,
        delete_all: bool,
    ) -> None:
        """5.6.13: forget an attribute's history (the default instance's, a datasetId's, all)."""
        iri = await self._attribute(tenant, entity_id, attr, ctx)
        datasets = None if delete_all else {dataset_id or ""}
        if not await self.store.delete_history(tenant, entity_id, iri, datasets):
            raise ResourceNotFound(f"{attr} of {entity_id} has no such instances")

    async def modify_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str, body: Any, ctx: Context
    ) -> None:
        """5.6.14: replace one instance; it keeps its instanceId and createdAt."""
        iid = _instance_number(instance_id)
        iri = await self._attribute(tenant, entity_id, attr, ctx)
        inst = _one_instance(attr, body, ctx)
        if iid is None or not await self.store.modify_instance(
            tenant, entity_id, iri, iid, inst, now()
        ):
            raise ResourceNotFound(f"{attr} of {entity_id} has no instance {instance_id}")

    async def delete_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str, ctx: Context
    ) -> None:
        """5.6.15."""
        iid = _instance_number(instance_id)
        iri = await self._attribute(tenant, entity_id, attr, ctx)
        if iid is None or not await self.store.delete_instance(tenant, entity_id, iri, iid):
            raise ResourceNotFound(f"{attr} of {entity_id} has no instance {instance_id}")

    async def _attribute(self, tenant: str, entity_id: str, attr: str, ctx: Context) -> str:
        check_uri(entity_id, "entity id")
        iri = series_attr(attr, ctx)
        await self.broker.get_entity(tenant, entity_id)
        if iri not in await self.store.history_attrs(tenant, entity_id):
            raise ResourceNotFound(f"entity {entity_id} has no attribute {attr}")
        return iri

    # -- reads -----------------------------------------------------------------------------------

    async def retrieve(
        self, tenant: str, entity_id: str, temporal: Temporal, select: HistoryQuery
    ) -> History:
        """5.7.3: one entity's history (select: which attributes and datasetIds)."""
        entity = await self.broker.get_entity(tenant, entity_id)
        attrs = select.attrs
        if attrs is not None and not attrs & await self.store.history_attrs(tenant, entity_id):
            raise ResourceNotFound(f"entity {entity_id} has none of the attributes asked for")
        return await self._read(tenant, [entity], temporal, select)

    async def query(
        self, tenant: str, query: Query, temporal: Temporal, select: HistoryQuery
    ) -> tuple[History, int]:
        """5.7.4: the entities that match and have instances in the window; one page of them
        (the query's limit and offset), and how many there are."""
        found = await self.broker.query(tenant, replace(query, limit=None, offset=0, count=False))
        ids = [e["id"] for e in found.entities]
        having = await self.store.history_entities(tenant, ids, select)
        matching = [e for e in found.entities if e["id"] in having]
        end = None if query.limit is None else query.offset + query.limit
        page = matching[query.offset : end]
        return await self._read(tenant, page, temporal, select), len(matching)

    async def _read(
        self, tenant: str, entities: list[Entity], temporal: Temporal, select: HistoryQuery
    ) -> History:
        ids = [e["id"] for e in entities]
        if temporal.form == AGGREGATED:
            return History(entities, {}, await self._periods(tenant, ids, select, temporal))
        wanted = replace(select, last_n=temporal.last_n, limit=self.cap + 1)
        rows = await self.store.history(tenant, ids, wanted)
        try:
            series, content_range = cut(by_series(rows), temporal, self.cap)
        except Stuck:  # more than a page at one instant: all of it, rather than no progress
            rows = await self.store.history(tenant, ids, replace(wanted, limit=None))
            series, content_range = by_series(rows), None
        per_entity: dict[str, dict[Key, list[Any]]] = {e["id"]: {} for e in entities}
        for key, items in series.items():
            per_entity[key[0]][key] = items
        return History(entities, per_entity, {}, content_range)

    async def _periods(
        self, tenant: str, entity_ids: list[str], select: HistoryQuery, temporal: Temporal
    ) -> dict[str, Periods]:
        """4.5.19: each entity's periods of aggrPeriodDuration from timeAt (or its oldest
        instance); only periods holding instances are listed; a zero duration is one period
        over the range. One store call for all the entities."""
        window = select.window
        spans: dict[str, list[tuple[int, int]]] = {}
        shown_end: dict[str, int | None] = {}

        def ranges(entity_id: str, low: int, high: int) -> list[tuple[int, int]]:
            """An entity's periods over the instants found, as read (clipped to the window)."""
            found, shown_end[entity_id] = period_spans(window, temporal.period, low, high)
            spans[entity_id] = found
            return [_clip(span, window) for span in found]

        rows = await self.store.aggregate(tenant, entity_ids, select, ranges, temporal.methods)
        out: dict[str, Periods] = {entity_id: {} for entity_id in entity_ids}
        for entity_id, attr, dataset, n, totals, numeric in rows:
            start, end = spans[entity_id][n]
            out[entity_id].setdefault((attr, dataset), []).append(
                (start, shown_end[entity_id] or end, totals, numeric)
            )
        if temporal.last_n is not None:
            last = temporal.last_n
            out = {i: {k: v[-last:] for k, v in found.items()} for i, found in out.items()}
        return out


def _clip(span: tuple[int, int], window: TimeWindow) -> tuple[int, int]:
    """A period as read: within the window (a period may run past the window's end)."""
    start, end = span
    if window.start is not None:
        start = max(start, window.start)
    if window.end is not None:
        end = min(end, window.end)
    return start, end


def period_spans(
    window: TimeWindow, period: Duration, low: int, high: int
) -> tuple[list[tuple[int, int]], int | None]:
    """The periods that can hold instances between low and high (inclusive), aligned on the
    window's start (or low); with a zero duration the one period and the end it shows."""
    origin = window.start if window.start is not None else low
    end = window.end if window.end is not None else high + 1
    if period.zero:
        return [(origin, end)], (window.end if window.end is not None else high)
    if period.months:
        spans, n, start = [], 0, origin
        while start < end:
            nxt = period.nth(origin, n + 1)
            if nxt > low:
                spans.append((start, nxt))
            start, n = nxt, n + 1
            if n > MAX_PERIODS:
                raise BadRequestData("aggrPeriodDuration is too short for this time range")
        return spans, None
    step = period.micros
    first, last = (low - origin) // step, (min(high, end - 1) - origin) // step
    if last - first >= MAX_PERIODS:
        raise BadRequestData("aggrPeriodDuration is too short for this time range")
    return [(origin + k * step, origin + (k + 1) * step) for k in range(first, last + 1)], None


RETENTION_EVERY = 3600.0  # seconds between two passes


async def retain(store: Store, days: float, every: float = RETENTION_EVERY) -> None:
    """Drop history older than `days` (0: keep everything), once at start and then every
    `every` seconds; one process of several does it (a lease)."""
    if days <= 0:
        return
    while True:
        try:
            await _retain_once(store, days)
        except Exception:  # the database may be unreachable for a while: next pass
            log.exception("history retention failed")
        await asyncio.sleep(every)


async def _retain_once(store: Store, days: float) -> None:
    if await store.try_lease("retention"):
        cutoff = to_micros(now()) - int(days * 86_400 * 1_000_000)
        dropped = await store.prune_history(cutoff)
        if dropped:
            log.info("history retention: dropped %d instances older than %s days", dropped, days)


def _instance_number(instance_id: str) -> int | None:
    check_uri(instance_id, "instanceId")
    number = instance_id.removeprefix(INSTANCE_PREFIX)
    if number == instance_id or not (number.isascii() and number.isdigit()) or len(number) > 18:
        return None
    return int(number)


def _one_instance(attr: str, body: Any, ctx: Context) -> Instance:
    """5.6.14's body: {attr: [instance]}, {attr: instance} or the bare instance."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "@context"}
        if len(body) == 1 and attr in body:
            body = body[attr]
    if isinstance(body, list):
        if len(body) != 1:
            raise BadRequestData("an attribute instance is replaced by exactly one instance")
        body = body[0]
    instances = parse_attribute(attr, body, ctx, now())
    return instances[0]


def _upsert(body: TemporalBody, stamp: str, existing: bool = False) -> MutateFn:
    entries = [HistoryEntry(attr, inst, replaces=True) for attr, inst in body.instances]
    if body.scope is not None:
        entries.append(HistoryEntry(SCOPE, {"type": "Property", "value": body.scope}))

    def fn(current: Entity | None) -> Change:
        if current is None:
            if existing:
                raise ResourceNotFound(f"entity {body.entity_id} does not exist")
            return Change(entity_of(body, stamp), "created", history=entries)
        current["type"] = list(dict.fromkeys([*current["type"], *body.types]))
        if body.scope is not None:
            current["scope"] = body.scope
        for attr, instances in latest(body.instances).items():
            held = current["attrs"].setdefault(attr, [])
            for inst in instances:
                _keep_newer(held, inst)
        current["modifiedAt"] = stamp
        return Change(current, "updated", history=entries)

    return fn


def _keep_newer(held: list[Instance], inst: Instance) -> None:
    for i, old in enumerate(held):
        if old.get("datasetId") == inst.get("datasetId"):
            if newer(inst, old):
                held[i] = inst
            return
    held.append(inst)
