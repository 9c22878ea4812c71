"""The mutations of one request, worked out in Python the same way for every store.

A store reads the current documents of the entities a request names, hands them to a Plan, lets
it apply each mutation function to a fresh copy (a failing function changes nothing), and then
writes what the plan says: the final documents, the change-log rows, the history records, and
the entities whose index rows (types, geometries) need rewriting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from citytwin.model.entity import Entity
from citytwin.model.history import Record, derive, shape
from citytwin.store.base import Change, MutateFn

ChangeRow = tuple[str, str, str | None, str | None, str | None, str]
"""(tenant, id, touched attributes as JSON or None for all, before, after, at)"""


class Plan:
    """What the mutations of one request do to the entities they name (`docs`: each one's
    stored JSON, None when it does not exist)."""

    def __init__(self, tenant: str, docs: dict[str, bytes | None]) -> None:
        self.tenant = tenant
        self.docs = dict(docs)  # as each entity is after the mutations applied so far
        self.original = docs
        self.history: dict[str, dict[Any, Record]] = {}
        self.deleted: set[str] = set()
        self.final: dict[str, Entity | None] = {}
        self.touched: dict[str, tuple[list[str], dict[str, Any]] | None] = {}
        self.suspect: set[str] = set()  # entities whose index rows a write may have changed

    def apply(self, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        """Each op's result, or the exception it raised (which wrote nothing)."""
        return [self._apply(entity_id, fn) for entity_id, fn in ops]

    def existed(self, entity_id: str) -> bool:
        return self.original[entity_id] is not None

    def doc(self, entity_id: str) -> str:
        """The final stored JSON of an entity the plan writes."""
        return self.docs[entity_id].decode()  # type: ignore[union-attr]

    def records(self) -> Iterator[Record]:
        """The history the writes add."""
        return (r for rs in self.history.values() for r in rs.values())

    def reindexed(self) -> dict[str, Entity | None]:
        """The entities whose index rows changed (None: deleted)."""
        return {
            i: e
            for i, e in self.final.items()
            if (i in self.suspect or not self.existed(i))
            and index_key(e) != index_key(_parsed(self.original[i]))
        }

    def _apply(self, entity_id: str, fn: MutateFn) -> Any:
        raw = self.docs[entity_id]
        current = orjson.loads(raw) if raw is not None else None
        try:
            change = fn(current)
            entity = change.entity
            doc = orjson.dumps(entity) if change.write and entity is not None else None
        except Exception as exc:  # (a value JSON cannot hold fails this op alone)
            return exc
        if change.write:
            self.docs[entity_id] = doc
            self.final[entity_id] = entity
            if _may_reindex(change):
                self.suspect.add(entity_id)
            self._remember(entity_id, raw, change)
            self._touch(entity_id, change.touched)
        return change.result

    def _remember(self, entity_id: str, raw: bytes | None, change: Change) -> None:
        """What the change adds to the entity's history (`raw`: the entity before it, read
        again only if the change leaves the history to be worked out). Several changes of one
        entity in one batch share their instant, so a later one replaces what an earlier one
        wrote of the same attribute instance; a deletion drops everything before it (and the
        history)."""
        entity = change.entity
        if entity is None:
            self.history[entity_id] = {}
            self.deleted.add(entity_id)
            return
        at = entity["modifiedAt"]
        kept = self.history.setdefault(entity_id, {})
        if change.history is None:
            if change.touched is not None:  # only these attributes changed
                names, was = change.touched
                before = shape({"attrs": was})
                attrs = entity["attrs"]
                entity = {"attrs": {n: attrs[n] for n in names if n in attrs}, "modifiedAt": at}
            else:
                before = shape(orjson.loads(raw)) if raw is not None else None
            for r in derive(self.tenant, entity_id, before, entity, at):
                kept[(r.attr, r.instance.get("datasetId"))] = r
            return
        for n, h in enumerate(change.history, start=len(kept)):
            kept[n] = Record(self.tenant, entity_id, h.attr, h.instance, at, h.deleted, h.replaces)

    def _touch(self, entity_id: str, touched: tuple[list[str], dict[str, Any]] | None) -> None:
        """Which attributes the entity's writes in this batch touched, and how they were first
        (None: the whole entity is logged)."""
        if entity_id not in self.touched:
            self.touched[entity_id] = touched and (list(touched[0]), dict(touched[1]))
            return
        known = self.touched[entity_id]
        if known is None or touched is None:
            self.touched[entity_id] = None
            return
        names, before = known
        for name in touched[0]:
            if name not in names:
                names.append(name)
                if name in touched[1]:
                    before[name] = touched[1][name]

    def changes(self, at: str) -> Iterator[ChangeRow]:
        """The change-log rows of the writes."""
        for entity_id in self.final:
            before, after = self.original[entity_id], self.docs[entity_id]
            touched = self.touched.get(entity_id)
            if touched is not None and before is not None and after is not None:
                names, was = touched
                partial = orjson.dumps({"id": entity_id, "attrs": was}).decode()
                touched_names = orjson.dumps(names).decode()
                yield self.tenant, entity_id, touched_names, partial, _text(after), at
            elif before is not None or after is not None:
                yield self.tenant, entity_id, None, _text(before), _text(after), at


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def _may_reindex(change: Change) -> bool:
    """Can the write have changed the entity's index rows (types, geometries)? Not if it
    touched only attributes that were and are no GeoProperty (it then says it kept the types)."""
    if change.touched is None or change.entity is None:
        return True
    names, was = change.touched
    attrs = change.entity["attrs"]
    return any(has_geo(was.get(n)) or has_geo(attrs.get(n)) for n in names)


def _parsed(raw: bytes | None) -> Entity | None:
    return orjson.loads(raw) if raw is not None else None


def has_geo(instances: list[Entity] | None) -> bool:
    return any(i.get("type") == "GeoProperty" for i in instances or ())


IndexKey = tuple[tuple[str, ...], tuple[tuple[str, Any, bytes], ...]]


def index_key(entity: Entity | None) -> IndexKey | None:
    """What the index rows of an entity are made of (its types, its geometries): a write that
    leaves this as it was needs no reindexing. Geometries are kept as bytes, since a write
    function may change the parsed ones in place."""
    if entity is None:
        return None
    geo = tuple(
        (attr, inst.get("datasetId"), orjson.dumps(inst["value"]))
        for attr, instances in entity["attrs"].items()
        for inst in instances
        if inst.get("type") == "GeoProperty" and isinstance(inst.get("value"), dict)
    )
    return tuple(entity["type"]), geo
