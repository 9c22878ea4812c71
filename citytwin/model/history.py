"""History: what a write adds to it (pure: the store runs it inside its transaction), and what
a read asks for and gets back (shared by the temporal model and the stores)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from citytwin.model.context import Context
from citytwin.model.entity import expand_name

TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
# where each is kept: a HistoryRow field, and the store's column of the same name
COLUMNS = {"observedAt": "observed", "createdAt": "created", "modifiedAt": "modified",
           "deletedAt": "deleted"}  # fmt: skip


@dataclass(frozen=True)
class TimeWindow:
    """Which instances a temporal query looks at: `prop` in [start, end) (microseconds)."""

    prop: str = "observedAt"
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class HistoryQuery:
    """Instances of some entities' attributes (IRIs; None: all) in a window, oldest first.
    (Also what the other history reads select: entities, bounds, aggregates.)

    last_n keeps the newest n per series (attribute and datasetId); limit caps the instances
    read per series (one more is read to tell whether the cap cut anything).
    """

    window: TimeWindow = TimeWindow()
    attrs: frozenset[str] | None = None
    last_n: int | None = None
    limit: int | None = None
    datasets: frozenset[str | None] | None = None  # datasetIds (None: the default instance)


@dataclass
class HistoryRow:
    entity: str
    attr: str
    dataset: str | None
    iid: int
    observed: int | None
    created: int
    modified: int
    deleted: int | None
    body: dict[str, Any]


NULL_URI = "urn:ngsi-ld:null"
SCOPE = "scope"  # the series of an entity's scope (attribute names are IRIs: never "scope")


def series_attr(name: str, ctx: Context) -> str:
    """The attribute a request names, as history keeps it: its IRI, or SCOPE for the scope."""
    return SCOPE if name == SCOPE else expand_name(name, ctx)


@dataclass(slots=True)  # not frozen: a write makes one per instance, and frozen inits are slow
class Record:
    """One instance to append: `instance` in the stored form; `deleted` marks a tombstone."""

    tenant: str
    entity: str
    attr: str
    instance: dict[str, Any]
    at: str
    deleted: bool = False
    replaces: bool = False


def tombstone(inst: dict[str, Any]) -> dict[str, Any]:
    """What a deleted attribute leaves in its history (4.5.7, 5.2.1): NGSI-LD Null."""
    kind = inst.get("type", "Property")
    out: dict[str, Any] = {"type": kind}
    if "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    if kind == "Relationship":
        out["object"] = NULL_URI
    elif kind == "LanguageProperty":
        out["languageMap"] = {"@none": NULL_URI}
    else:
        key = {"ListProperty": "valueList", "ListRelationship": "objectList",
               "VocabProperty": "vocab", "JsonProperty": "json"}.get(kind, "value")  # fmt: skip
        out[key] = NULL_URI
    return out


def derive(
    tenant: str,
    entity_id: str,
    before: dict[str, dict[str | None, Any]] | None,
    after: dict[str, Any] | None,
    at: str,
) -> Iterator[Record]:
    """What one write adds to the history: each instance it wrote (its modifiedAt is the write's
    time), the scope if it changed, and a tombstone for each instance it removed. `before` is
    `shape` of the entity as it was (None: it did not exist); `after` its new state (None: gone).
    """
    if after is None:
        return
    attrs = after["attrs"]
    stamp = after["modifiedAt"]
    for attr, instances in attrs.items():
        for inst in instances:
            if inst.get("modifiedAt") == stamp:
                yield Record(tenant, entity_id, attr, inst, at)
    scope = after.get("scope")
    old_scope = (before or {}).get(SCOPE, {}).get(None)
    if scope is not None and scope != old_scope:
        yield Record(tenant, entity_id, SCOPE, {"type": "Property", "value": scope}, at)
    if not before:
        return
    if scope is None and old_scope is not None:
        yield Record(tenant, entity_id, SCOPE, {"type": "Property", "value": []}, at, deleted=True)
    for attr, datasets in before.items():
        if attr == SCOPE:
            continue
        now = {i.get("datasetId") for i in attrs.get(attr, ())}
        for dataset, kind in datasets.items():
            if dataset not in now:
                gone = {"type": kind} if dataset is None else {"type": kind, "datasetId": dataset}
                yield Record(tenant, entity_id, attr, tombstone(gone), at, deleted=True)


def shape(entity: dict[str, Any]) -> dict[str, dict[str | None, Any]]:
    """Each attribute of an entity: its datasetIds and their types; and its scope under
    SCOPE (what `derive` compares against)."""
    out: dict[str, dict[str | None, Any]] = {
        a: {i.get("datasetId"): i.get("type", "Property") for i in insts}
        for a, insts in entity["attrs"].items()
    }
    if "scope" in entity:
        out[SCOPE] = {None: entity["scope"]}
    return out
