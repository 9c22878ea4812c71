"""Which subscriptions a change concerns, and why (GS CIM 009 5.8.6, 5.2.12).

Triggers come from comparing the entity before and after the change; q and scopeQ are judged by
the store with the same compiled SQL as entity queries, and geoQ with the same exact predicates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from citytwin.model.context import Context
from citytwin.model.entity import Entity, expand_name
from citytwin.model.geo import GeoQuery, matches, parse_geo_query
from citytwin.model.query import All, Any_, Node, Path, Term, expand, parse_q, parse_scope_q
from citytwin.model.subscription import DEFAULT_TRIGGERS, status
from citytwin.store.base import ChangeRecord, Query

ENTITY_TRIGGERS = ("entityCreated", "entityUpdated", "entityDeleted")


@dataclass
class Compiled:
    """A stored subscription with its filters parsed once."""

    tenant: str
    doc: dict[str, Any]
    ctx: Context
    q: Node | None = None
    scope_q: Node | None = None
    geo: GeoQuery | None = None
    triggers: frozenset[str] = field(default_factory=frozenset)
    watched: frozenset[str] | None = None

    @property
    def id(self) -> str:
        return self.doc["id"]

    def query(self) -> Query:
        return Query(q=self.q, scope_q=self.scope_q)


def compile_subscription(tenant: str, doc: dict[str, Any], ctx: Context) -> Compiled:
    sub = Compiled(tenant, doc, ctx)
    names = lambda name: expand_name(name, ctx)  # noqa: E731
    if doc.get("q"):
        sub.q = expand(parse_q(doc["q"]), names)
    if doc.get("scopeQ"):
        sub.scope_q = parse_scope_q(doc["scopeQ"])
    geo = doc.get("geoQ")
    if geo:
        parsed = parse_geo_query(geo.get("georel"), geo.get("geometry"), geo.get("coordinates"),
                                 None)  # fmt: skip
        if parsed is not None:
            prop = geo.get("geoproperty") or expand_name("location", ctx)
            sub.geo = GeoQuery(parsed.georel, parsed.geometry, prop, parsed.max_distance,
                               parsed.min_distance)  # fmt: skip
    sub.triggers = frozenset(doc.get("notificationTrigger") or DEFAULT_TRIGGERS)
    if doc.get("watchedAttributes"):
        sub.watched = frozenset(doc["watchedAttributes"])
    return sub


def reasons(change: ChangeRecord) -> dict[str, set[str]]:
    """trigger -> the attributes it concerns ('' for entity triggers)."""
    before, after = change.before, change.after
    out: dict[str, set[str]] = {}
    if before is None and after is not None:
        out["entityCreated"] = {""}
        out["attributeCreated"] = set(after["attrs"])
        return out
    if after is None and before is not None:
        out["entityDeleted"] = {""}
        out["attributeDeleted"] = set(before["attrs"])
        return out
    assert before is not None and after is not None
    names = change.attrs if change.attrs is not None else set(before["attrs"]) | set(after["attrs"])
    for name in names:
        old, new = before["attrs"].get(name) or [], after["attrs"].get(name) or []
        for trigger in _instance_triggers(old, new):
            out.setdefault(trigger, set()).add(name)
    if out or before.get("type") != after.get("type") and change.attrs is None:
        out["entityUpdated"] = {""}
    return out


def _instance_triggers(old: list[Any], new: list[Any]) -> set[str]:
    """Per instance (by datasetId): added, removed or changed."""
    before = {i.get("datasetId"): i for i in old}
    after = {i.get("datasetId"): i for i in new}
    out = set()
    if after.keys() - before.keys():
        out.add("attributeCreated")
    if before.keys() - after.keys():
        out.add("attributeDeleted")
    if any(before[k] != after[k] for k in before.keys() & after.keys()):
        out.add("attributeUpdated")
    return out


TRIGGER_ORDER = ("entityCreated", "entityDeleted", "attributeCreated", "attributeUpdated",
                 "attributeDeleted", "entityUpdated")  # fmt: skip


def fired(sub: Compiled, change: ChangeRecord, why: dict[str, set[str]], at: str) -> str | None:
    """The trigger for which a change notifies a subscription (None: it does not), leaving
    q/scopeQ (the store's part) aside."""
    if status(sub.doc, at) != "active":
        return None
    entity = change.after or change.before
    assert entity is not None
    if not _selected(sub, entity):
        return None
    triggers = [t for t in TRIGGER_ORDER if t in sub.triggers and t in why]
    if sub.watched is not None:
        triggers = [t for t in triggers if t in ENTITY_TRIGGERS or why[t] & sub.watched]
    if not triggers or (sub.geo is not None and not geo_matches(sub.geo, entity)):
        return None
    return triggers[0]


def _selected(sub: Compiled, entity: Entity) -> bool:
    selectors = sub.doc.get("entities")
    if not selectors:
        return True
    types = set(entity.get("type", []))
    for selector in selectors:
        if not types & set(selector["type"]):
            continue
        if "id" in selector and selector["id"] != entity["id"]:
            continue
        if "idPattern" in selector and not re.search(selector["idPattern"], entity["id"]):
            continue
        return True
    return False


def geo_matches(geo: GeoQuery, entity: Entity) -> bool:
    instances = entity.get("attrs", {}).get(geo.geoproperty, [])
    return any(
        i.get("type") == "GeoProperty" and isinstance(i.get("value"), dict)
        and matches(geo, i["value"])
        for i in instances
    )  # fmt: skip


def selection(doc: dict[str, Any]) -> Node | None:
    """The entities selectors of a subscription as a type/id query node (for timeInterval)."""
    parts: list[Node] = []
    for selector in doc.get("entities", []):
        terms: list[Node] = [Any_(tuple(Term(Path(t), "type", t) for t in selector["type"]))]
        if "id" in selector:
            terms.append(Term(Path("id"), "id", selector["id"]))
        if "idPattern" in selector:
            terms.append(Term(Path("id"), "idPattern", selector["idPattern"]))
        parts.append(All(tuple(terms)))
    return Any_(tuple(parts)) if parts else None
