"""Temporal representations of entities (4.5.6-4.5.9, 4.5.19): normalized (every attribute an
array of instances), temporalValues ([value, time] pairs) and aggregatedValues
([value, start, end] per period).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from citytwin.errors import InvalidRequest
from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.history import SCOPE, HistoryRow
from citytwin.model.render import NORMALIZED, View, render_head, render_instance
from citytwin.model.temporal import NUMERIC_ONLY, Temporal
from citytwin.model.temporal_page import Key, instant
from citytwin.model.times import from_micros

INSTANCE_PREFIX = "urn:ngsi-ld:Instance:"
_PAIR_KEYS = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "VocabProperty": "vocabs",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
    "JsonProperty": "jsons",
}
_WRAPPED = {"LanguageProperty": "languageMap", "VocabProperty": "vocab", "JsonProperty": "json"}


def render_history(
    entity: Entity,
    series: dict[Key, list[HistoryRow]],
    ctx: Context,
    view: View,
    temporal: Temporal,
) -> dict[str, Any]:
    """One entity with the instances of its series (every series given is shown, even empty:
    an empty one was emptied by pagination)."""
    out = render_head(entity, ctx, view)
    for attr, datasets in _attributes(series, view).items():
        name = ctx.compact(attr) if attr != SCOPE else SCOPE
        if not view.keeps(name, attr):
            continue
        if temporal.form == NORMALIZED:
            out[name] = [_instance(r, ctx, view, temporal) for rows in datasets for r in rows]
        else:
            wrappers = [_pairs(entity, attr, rows, ctx, view, temporal) for rows in datasets]
            out[name] = wrappers[0] if len(wrappers) == 1 else wrappers
    return out


def _attributes(
    series: dict[Key, list[HistoryRow]], view: View
) -> dict[str, list[list[HistoryRow]]]:
    attrs: dict[str, list[list[HistoryRow]]] = {}
    for (_, attr, dataset), rows in series.items():
        if view.dataset_ids is None or dataset in view.dataset_ids:
            attrs.setdefault(attr, []).append(rows)
    return attrs


def _instance(row: HistoryRow, ctx: Context, view: View, temporal: Temporal) -> dict[str, Any]:
    out = render_instance(row.body, ctx, replace(view, form=NORMALIZED, sys_attrs=False))
    out["instanceId"] = f"{INSTANCE_PREFIX}{row.iid}"
    if temporal.sys_attrs:
        out["createdAt"] = from_micros(row.created)
        out["modifiedAt"] = from_micros(row.modified)
    if row.deleted is not None:
        out["deletedAt"] = from_micros(row.deleted)
    return out


def _pairs(
    entity: Entity, attr: str, rows: list[HistoryRow], ctx: Context, view: View, temporal: Temporal
) -> dict[str, Any]:
    kind = rows[0].body.get("type", "Property") if rows else _kind(entity, attr)
    out: dict[str, Any] = {"type": kind}
    dataset = rows[0].dataset if rows else None
    if dataset is not None:
        out["datasetId"] = dataset
    pairs = []
    for row in rows:
        shown = render_instance(row.body, ctx, replace(view, form=NORMALIZED, sys_attrs=False))
        member = _WRAPPED.get(kind)
        if kind == "LanguageProperty" and "languageMap" not in shown:  # lang chose one
            value: Any = shown.get("value")
        elif member is not None:
            value = {member: shown.get(member)}
        else:
            value = shown.get("object" if kind == "Relationship" else _value_key(kind))
        pairs.append([value, time_text(row, temporal.window.prop)])
    out[_PAIR_KEYS.get(kind, "values")] = pairs
    return out


def _value_key(kind: str) -> str:
    return {"ListProperty": "valueList", "ListRelationship": "objectList"}.get(kind, "value")


def _kind(entity: Entity, attr: str) -> str:
    instances = entity["attrs"].get(attr) or [{}]
    return str(instances[0].get("type", "Property"))


def time_text(row: HistoryRow, prop: str) -> str:
    """The instant of an instance as shown: observedAt as it was given, others as citytwin
    writes DateTimes."""
    if prop == "observedAt" and isinstance(row.body.get("observedAt"), str):
        return str(row.body["observedAt"])
    return from_micros(instant(row, prop))


# -- aggregations ------------------------------------------------------------------------------

# count, distinct, sum, min, max, sum of squares, and the sums of the deviations (and of their
# squares) from one value of the series
Totals = tuple[Any, ...]


def render_aggregates(
    entity: Entity,
    periods: dict[tuple[str, str | None], list[tuple[int, int, Totals, bool]]],
    ctx: Context,
    view: View,
    temporal: Temporal,
) -> dict[str, Any]:
    """periods: per (attribute, datasetId), (start, end, totals, numeric) of each period."""
    out = render_head(entity, ctx, view)
    shown: dict[str, list[dict[str, Any]]] = {}
    for (attr, dataset), items in periods.items():
        name = ctx.compact(attr) if attr != SCOPE else SCOPE
        if not view.keeps(name, attr):
            continue
        if view.dataset_ids is not None and dataset not in view.dataset_ids:
            continue
        wrapper: dict[str, Any] = {"type": _kind(entity, attr)}
        if dataset is not None:
            wrapper["datasetId"] = dataset
        for method in temporal.methods:
            wrapper[method] = [
                [_method(method, totals, numeric, name), from_micros(start), from_micros(end)]
                for start, end, totals, numeric in items
            ]
        shown.setdefault(name, []).append(wrapper)
    for name, wrappers in shown.items():
        out[name] = wrappers[0] if len(wrappers) == 1 else wrappers
    return out


# the methods that are one of the totals as they are (their place in Totals)
_TOTAL = {"totalCount": 0, "distinctCount": 1, "sum": 2, "min": 3, "max": 4, "sumsq": 5}


def _method(method: str, totals: Totals, numeric: bool, name: str) -> Any:
    count, _, total, _, _, _, dev1, dev2 = totals
    if method in NUMERIC_ONLY and not numeric:
        raise InvalidRequest(f"{method} does not apply to {name}: its values are not numbers")
    if method in _TOTAL:
        return totals[_TOTAL[method]]
    if method == "avg":
        return total / count
    # stddev: of all the instances of the period (a population, not a sample of one)
    return math.sqrt(max(dev2 / count - (dev1 / count) ** 2, 0.0))
