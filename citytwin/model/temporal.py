"""The temporal API's request side (4.11, 6.18-6.19): the temporal query, the representation
asked for, aggregation methods, and a temporal entity body into instances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from citytwin.errors import BadRequestData, InvalidRequest
from citytwin.model.context import Context
from citytwin.model.entity import (
    ENTITY_MEMBERS,
    Entity,
    Instance,
    expand_name,
    parse_instances,
    parse_types,
)
from citytwin.model.history import TIME_PROPERTIES, TimeWindow
from citytwin.model.times import Duration, parse_duration, to_micros
from citytwin.model.validate import check_scope, check_uri

NORMALIZED, TEMPORAL_VALUES, AGGREGATED = "normalized", "temporalValues", "aggregatedValues"
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
NUMERIC_ONLY = frozenset({"sum", "avg", "stddev", "sumsq"})
_OPTIONS = frozenset({TEMPORAL_VALUES, AGGREGATED, "sysAttrs", "normalized"})


@dataclass(frozen=True)
class Temporal:
    """A temporal request: which instances, how many, and in which representation."""

    window: TimeWindow = TimeWindow()
    timerel: str | None = None
    end_time_at: int | None = None
    last_n: int | None = None
    form: str = NORMALIZED
    sys_attrs: bool = False
    methods: tuple[str, ...] = ()
    period: Duration = Duration(0, 0)


def parse_temporal(values: Mapping[str, Any], options: list[str], required: bool) -> Temporal:
    """timerel/timeAt/endTimeAt/timeproperty/lastN and the representation (format, options)."""
    form, sys_attrs = _form(values.get("format"), options)
    window, timerel, end = _window(values, required)
    methods: tuple[str, ...] = ()
    period = Duration(0, 0)
    if form == AGGREGATED:
        methods = _methods(values.get("aggrMethods"))
        raw = values.get("aggrPeriodDuration")
        period = parse_duration(raw) if raw else period
    return Temporal(window, timerel, end, _last_n(values.get("lastN")), form, sys_attrs,
                    methods, period)  # fmt: skip


def _form(fmt: Any, options: list[str]) -> tuple[str, bool]:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise InvalidRequest(f"unknown options {sorted(unknown)}")
    if fmt is not None and fmt not in (NORMALIZED, TEMPORAL_VALUES, AGGREGATED):
        raise InvalidRequest(f"unknown format {fmt!r}")
    forms = [o for o in options if o in (TEMPORAL_VALUES, AGGREGATED)]
    if fmt is None and len(forms) > 1:
        raise BadRequestData("options asks for both temporalValues and aggregatedValues")
    form = fmt or (forms[0] if forms else NORMALIZED)
    return form, "sysAttrs" in options


def _window(values: Mapping[str, Any], required: bool) -> tuple[TimeWindow, str | None, int | None]:
    timerel, time_at = values.get("timerel"), values.get("timeAt")
    end_at = values.get("endTimeAt")
    prop = values.get("timeproperty") or "observedAt"
    if prop not in TIME_PROPERTIES:
        raise BadRequestData(f"timeproperty must be one of {', '.join(TIME_PROPERTIES)}")
    if timerel is None:
        if required:
            raise BadRequestData("a temporal query needs timerel and timeAt")
        if time_at is not None or end_at is not None:
            raise BadRequestData("timeAt and endTimeAt need timerel")
        return TimeWindow(prop), None, None
    if timerel not in ("before", "after", "between"):
        raise BadRequestData(f"timerel must be before, after or between, not {timerel!r}")
    if time_at is None:
        raise BadRequestData(f"timerel={timerel} needs timeAt")
    at = _instant(time_at, "timeAt")
    if timerel == "before":
        return TimeWindow(prop, None, at), timerel, None
    if timerel == "after":
        return TimeWindow(prop, at, None), timerel, None
    if end_at is None:
        raise BadRequestData("timerel=between needs endTimeAt")
    end = _instant(end_at, "endTimeAt")
    if end <= at:
        raise BadRequestData("endTimeAt must be later than timeAt")
    return TimeWindow(prop, at, end), timerel, end


def _instant(raw: Any, name: str) -> int:
    if not isinstance(raw, str) or not raw[:1].isdigit():
        raise BadRequestData(f"{name} must be an ISO 8601 DateTime, not {raw!r}")
    try:
        return to_micros(raw)
    except BadRequestData:
        raise BadRequestData(f"{name} must be an ISO 8601 DateTime, not {raw!r}") from None


def _last_n(raw: Any) -> int | None:
    if raw is None:
        return None
    text = str(raw)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**31:
        raise BadRequestData(f"lastN must be a positive integer, not {raw!r}")
    return int(text)


def _methods(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list):
        raw = ",".join(str(m) for m in raw)
    if not raw:
        raise BadRequestData("aggregatedValues needs aggrMethods")
    methods = tuple(dict.fromkeys(m.strip() for m in str(raw).split(",")))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise BadRequestData(f"unknown aggrMethods {unknown}; known: {', '.join(METHODS)}")
    return methods


# -- bodies -----------------------------------------------------------------------------------


@dataclass
class TemporalBody:
    """A temporal entity (or fragment) body: its instances, per attribute IRI, in body order."""

    entity_id: str | None
    types: list[str]
    scope: list[str] | None
    instances: list[tuple[str, Instance]]


def parse_temporal_entity(body: Any, ctx: Context, now: str, fragment: bool) -> TemporalBody:
    """5.2.20: each attribute is an array of instances (or one); every instance is checked as
    an attribute of its own, so several may share a datasetId."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("a temporal entity is a non-empty JSON object")
    entity_id = None
    types: list[str] = []
    if not fragment:
        entity_id = check_uri(body.get("id", body.get("@id")), "entity id")
        types = parse_types(body.get("type", body.get("@type")), ctx)
    elif "type" in body:
        types = parse_types(body["type"], ctx)
    scope = check_scope(body["scope"]) if "scope" in body else None
    instances: list[tuple[str, Instance]] = []
    for name, raw in body.items():
        if name in ENTITY_MEMBERS:
            continue
        iri = expand_name(name, ctx)
        items = raw if isinstance(raw, list) else [raw]
        instances.extend((iri, inst) for inst in parse_instances(name, items, ctx, now))
    return TemporalBody(entity_id, types, scope, instances)


def latest(instances: list[tuple[str, Instance]]) -> dict[str, list[Instance]]:
    """The current state a temporal body implies: per attribute and datasetId, the instance
    observed last (the last given when none has observedAt)."""
    best: dict[tuple[str, str | None], Instance] = {}
    for iri, inst in instances:
        key = (iri, inst.get("datasetId"))
        held = best.get(key)
        if held is None or _observed(inst) >= _observed(held):
            best[key] = inst
    attrs: dict[str, list[Instance]] = {}
    for (iri, _), inst in best.items():
        attrs.setdefault(iri, []).append(inst)
    return attrs


def _observed(inst: Instance) -> int:
    raw = inst.get("observedAt")
    return to_micros(raw) if isinstance(raw, str) else -(2**62)


def newer(inst: Instance, held: Instance | None) -> bool:
    """Whether a temporal instance should become the current state over the one held."""
    return held is None or _observed(inst) >= _observed(held)


def entity_of(body: TemporalBody, now: str) -> Entity:
    entity: Entity = {"id": body.entity_id, "type": body.types}
    if body.scope is not None:
        entity["scope"] = body.scope
    entity["createdAt"] = entity["modifiedAt"] = now
    entity["attrs"] = latest(body.instances)
    return entity
