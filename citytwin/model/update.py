"""Pure update semantics on stored entities (GS CIM 009 5.6.2-5.6.5, 5.6.17-5.6.19).

Each function takes the stored entity and returns a new one; nothing is changed in place, so a
failing request can never leave half an update behind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from citytwin.errors import BadRequestData, ResourceNotFound
from citytwin.model.entity import ATTRIBUTE_TYPES, NULL, SYSTEM, Entity, Instance

Attrs = dict[str, list[Instance]]


@dataclass
class Outcome:
    """What an attribute operation did: the new entity and the names it could not update."""

    entity: Entity
    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _find(instances: list[Instance], dataset_id: str | None) -> int:
    for i, inst in enumerate(instances):
        if inst.get("datasetId") == dataset_id:
            return i
    return -1


def _stamp(inst: Instance, previous: Instance | None, now: str) -> Instance:
    inst = dict(inst)
    inst["createdAt"] = previous.get("createdAt", now) if previous else now
    inst["modifiedAt"] = now
    return inst


def _touched(entity: Entity, now: str) -> Entity:
    entity["modifiedAt"] = now
    return entity


def append_attrs(entity: Entity, attrs: Attrs, now: str, no_overwrite: bool) -> Outcome:
    """5.6.3: add attributes; existing ones are replaced unless noOverwrite."""
    new = copy.deepcopy(entity)
    out = Outcome(new)
    for name, instances in attrs.items():
        current = new["attrs"].setdefault(name, [])
        for inst in instances:
            i = _find(current, inst.get("datasetId"))
            if i >= 0 and no_overwrite:
                out.not_updated.append((name, "attribute exists and noOverwrite was asked"))
                continue
            if i >= 0:
                current[i] = _stamp(inst, current[i], now)
            else:
                current.append(_stamp(inst, None, now))
            out.updated.append(name)
        if not current:
            del new["attrs"][name]
    _touched(new, now)
    return out


def update_attrs(entity: Entity, attrs: Attrs, now: str) -> Outcome:
    """5.6.2: replace attributes that exist; the others are reported as not updated."""
    new = copy.deepcopy(entity)
    out = Outcome(new)
    for name, instances in attrs.items():
        current = new["attrs"].get(name, [])
        for inst in instances:
            i = _find(current, inst.get("datasetId"))
            if i < 0:
                out.not_updated.append((name, "attribute does not exist"))
                continue
            current[i] = _stamp(inst, current[i], now)
            out.updated.append(name)
    _touched(new, now)
    return out


def partial_update(entity: Entity, name: str, instances: list[Instance], now: str) -> Entity:
    """5.6.4: merge the fragment's members into an existing attribute instance."""
    new = copy.deepcopy(entity)
    current = _existing(new, name)
    for inst in instances:
        i = _find(current, inst.get("datasetId"))
        if i < 0:
            raise ResourceNotFound(f"attribute {name} has no instance {inst.get('datasetId')}")
        merged = _merge_instance(current[i], inst, keep_type=True)
        current[i] = _stamp(merged, current[i], now)
    return _touched(new, now)


def replace_attr(entity: Entity, name: str, instances: list[Instance], now: str) -> Entity:
    """5.6.19: replace an existing attribute (per datasetId) with a new one."""
    new = copy.deepcopy(entity)
    current = _existing(new, name)
    for inst in instances:
        i = _find(current, inst.get("datasetId"))
        if i < 0:
            raise ResourceNotFound(f"attribute {name} has no instance {inst.get('datasetId')}")
        current[i] = _stamp(inst, current[i], now)
    return _touched(new, now)


def delete_attr(
    entity: Entity, name: str, dataset_id: str | None, delete_all: bool, now: str
) -> Entity:
    """5.6.5: delete one instance (default or by datasetId) or every instance."""
    new = copy.deepcopy(entity)
    current = _existing(new, name)
    if delete_all:
        del new["attrs"][name]
    else:
        i = _find(current, dataset_id)
        if i < 0:
            raise ResourceNotFound(f"attribute {name} has no instance {dataset_id or 'default'}")
        del current[i]
        if not current:
            del new["attrs"][name]
    return _touched(new, now)


def _existing(entity: Entity, name: str) -> list[Instance]:
    current = entity["attrs"].get(name)
    if not current:
        raise ResourceNotFound(f"entity {entity['id']} has no attribute {name}")
    return current


def merge_entity(entity: Entity, patch: Entity, now: str) -> Entity:
    """5.6.17: JSON merge-patch of an entity; urn:ngsi-ld:null deletes what it names."""
    new = copy.deepcopy(entity)
    if patch.get("type"):
        new["type"] = list(dict.fromkeys(new["type"] + patch["type"]))
    if "scope" in patch:
        new["scope"] = patch["scope"]
    for name, instances in patch["attrs"].items():
        current = new["attrs"].setdefault(name, [])
        for inst in instances:
            i = _find(current, inst.get("datasetId"))
            if _is_null(inst):
                if i >= 0:
                    del current[i]
            elif i >= 0:
                current[i] = _stamp(_merge_instance(current[i], inst), current[i], now)
            else:
                current.append(_stamp(_drop_nulls(inst), None, now))
        if not current:
            del new["attrs"][name]
    return _touched(new, now)


def replace_entity(entity: Entity, replacement: Entity, now: str) -> Entity:
    """5.6.18: the entity becomes the replacement; only its id and createdAt remain."""
    new = copy.deepcopy(replacement)
    new["id"] = entity["id"]
    new["createdAt"] = entity["createdAt"]
    return _touched(new, now)


def upsert_update(entity: Entity, patch: Entity, now: str) -> Entity:
    """Batch upsert with options=update: add the types and overwrite the given attributes."""
    new = append_attrs(entity, patch["attrs"], now, no_overwrite=False).entity
    new["type"] = list(dict.fromkeys(new["type"] + patch["type"]))
    if "scope" in patch:
        new["scope"] = patch["scope"]
    return new


def _is_null(inst: Instance) -> bool:
    return inst.get(ATTRIBUTE_TYPES[inst["type"]]) == NULL


def _merge_instance(old: Instance, patch: Instance, keep_type: bool = False) -> Instance:
    """Members of the patch replace those of old; sub-attributes merge, null ones go."""
    merged = {k: v for k, v in old.items() if k not in SYSTEM}
    value_key = ATTRIBUTE_TYPES[patch["type"]]
    if keep_type and value_key not in patch:
        raise BadRequestData(f"a partial update of a {old['type']} needs {value_key}")
    if patch["type"] != old["type"]:
        for key in ATTRIBUTE_TYPES.values():
            merged.pop(key, None)
    for key, value in patch.items():
        if key in SYSTEM:
            continue
        if ":" in key and isinstance(value, dict) and "type" in value:
            if _is_null(value):
                merged.pop(key, None)
                continue
            if isinstance(merged.get(key), dict):
                value = _merge_instance(merged[key], value)
        merged[key] = value
    return merged


def _drop_nulls(inst: Instance) -> Instance:
    return {
        k: v for k, v in inst.items() if not (isinstance(v, dict) and "type" in v and _is_null(v))
    }


def any_value(inst: Instance) -> Any:
    return inst.get(ATTRIBUTE_TYPES[inst["type"]])
