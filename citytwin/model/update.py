"""Pure update semantics on stored entities (GS CIM 009 5.6.2-5.6.5, 5.6.17-5.6.19).

Each function takes the store's fresh, private copy of an entity, changes it in place and returns
it. The store throws that copy away when a function raises, so a failing request can never leave
half an update behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citytwin.errors import BadRequestData, ResourceNotFound
from citytwin.model.entity import ATTRIBUTE_TYPES, NULL, SYSTEM, Entity, Instance


@dataclass
class Outcome:
    """What an attribute operation did: the new entity and the names it could not update."""

    entity: Entity
    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)
    changed: bool = False


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


def append_attrs(entity: Entity, fragment: Entity, now: str, no_overwrite: bool) -> Outcome:
    """5.6.3: add attributes; existing ones are replaced unless noOverwrite."""
    out = Outcome(entity, changed=_add_types(entity, fragment))
    if "scope" in fragment:
        scope = fragment["scope"]
        merged = _union(entity.get("scope", []), scope) if no_overwrite else scope
        out.changed |= _set_scope(entity, merged)
    for name, instances in fragment["attrs"].items():
        current = entity["attrs"].setdefault(name, [])
        for inst in instances:
            i = _find(current, inst.get("datasetId"))
            if i >= 0 and no_overwrite:
                out.not_updated.append((name, "attribute exists and noOverwrite was asked"))
            else:
                _put(current, i, inst, now)
                out.updated.append(name)
        if not current:
            del entity["attrs"][name]
    return _finish(out, now)


def update_attrs(entity: Entity, fragment: Entity, now: str) -> Outcome:
    """5.6.2: replace the fragment's attribute instances (by datasetId); new ones are added.

    Adding what does not exist yet follows the ETSI conformance suite (011_01_03 and the
    subscription tests that add attributes this way); scope is only updated where present.
    """
    out = Outcome(entity, changed=_add_types(entity, fragment))
    if "scope" in fragment:
        if "scope" in entity:
            out.changed |= _set_scope(entity, fragment["scope"])
        else:
            out.not_updated.append(("scope", "the entity has no scope to update"))
    for name, instances in fragment["attrs"].items():
        current = entity["attrs"].setdefault(name, [])
        for inst in instances:
            _put(current, _find(current, inst.get("datasetId")), inst, now)
            out.updated.append(name)
        if not current:
            del entity["attrs"][name]
    return _finish(out, now)


def _finish(out: Outcome, now: str) -> Outcome:
    """Stamp the entity only if the operation changed something."""
    out.changed |= bool(out.updated)
    if out.changed:
        _touched(out.entity, now)
    return out


def _put(current: list[Instance], i: int, inst: Instance, now: str) -> None:
    """Write an instance at index i (-1: append); an NGSI-LD Null deletes it instead."""
    if is_null(inst):
        if i >= 0:
            del current[i]
    elif i >= 0:
        current[i] = _stamp(inst, current[i], now)
    else:
        current.append(_stamp(inst, None, now))


def _add_types(entity: Entity, fragment: Entity) -> bool:
    if not fragment.get("type"):
        return False
    types = _union(entity["type"], fragment["type"])
    changed = types != entity["type"]
    entity["type"] = types
    return changed


def _set_scope(entity: Entity, scope: list[str]) -> bool:
    changed = entity.get("scope") != scope
    entity["scope"] = scope
    return changed


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


Instances = list[Instance]


def partial_update(current: Instances | None, name: str, patch: Instance, now: str) -> Instances:
    """5.6.4: merge the fragment's members into one existing instance of an attribute."""
    current = _present(current, name)
    i = _find(current, patch.get("datasetId"))
    if i < 0:
        raise ResourceNotFound(f"attribute {name} has no instance {patch.get('datasetId')}")
    if patch.get("type", current[i]["type"]) != current[i]["type"]:
        raise BadRequestData(f"{name} is a {current[i]['type']}, not a {patch['type']}")
    patch = {"type": current[i]["type"], **patch}
    if is_null(patch):
        del current[i]
    else:
        current[i] = _stamp(_merge_instance(current[i], patch), current[i], now)
    return current


def replace_attr(current: Instances | None, name: str, new: Instances, now: str) -> Instances:
    """5.6.19: replace an existing attribute (per datasetId) with a new one."""
    current = _present(current, name)
    for inst in new:
        i = _find(current, inst.get("datasetId"))
        if i < 0:
            raise ResourceNotFound(f"attribute {name} has no instance {inst.get('datasetId')}")
        _put(current, i, inst, now)
    return current


def delete_attr(
    current: Instances | None, name: str, dataset_id: str | None, delete_all: bool
) -> Instances:
    """5.6.5: delete one instance (default or by datasetId) or every instance."""
    current = _present(current, name)
    if delete_all:
        return []
    i = _find(current, dataset_id)
    if i < 0:
        raise ResourceNotFound(f"attribute {name} has no instance {dataset_id or 'default'}")
    del current[i]
    return current


def delete_scope(entity: Entity, now: str) -> Entity:
    """5.6.5 on scope, which is an entity member rather than an attribute."""
    if entity.pop("scope", None) is None:
        raise ResourceNotFound(f"entity {entity['id']} has no scope")
    return _touched(entity, now)


def _present(current: Instances | None, name: str) -> Instances:
    if not current:
        raise ResourceNotFound(f"the entity has no attribute {name}")
    return current


def merge_entity(entity: Entity, patch: Entity, now: str) -> Entity:
    """5.6.17: JSON merge-patch of an entity; urn:ngsi-ld:null deletes what it names."""
    new = entity
    _add_types(new, patch)
    if "scope" in patch:
        new["scope"] = patch["scope"]
    for name, instances in patch["attrs"].items():
        current = new["attrs"].setdefault(name, [])
        for inst in instances:
            i = _find(current, inst.get("datasetId"))
            if i >= 0 and not is_null(inst):
                inst = _merge_instance(current[i], inst)
            _put(current, i, _drop_nulls(inst), now)
        if not current:
            del new["attrs"][name]
    return _touched(new, now)


def replace_entity(entity: Entity, replacement: Entity, now: str) -> Entity:
    """5.6.18: the entity becomes the replacement; only its id and createdAt remain."""
    new = replacement
    new["id"] = entity["id"]
    new["createdAt"] = entity["createdAt"]
    return _touched(new, now)


def upsert_update(entity: Entity, patch: Entity, now: str) -> Entity:
    """Batch upsert with options=update: add the types, overwrite the given attributes."""
    return append_attrs(entity, patch, now, no_overwrite=False).entity


def is_null(inst: Instance) -> bool:
    """4.5.0: urn:ngsi-ld:null as an attribute's value (per kind) means delete it."""
    value = inst.get(ATTRIBUTE_TYPES[inst["type"]])
    return value == NULL or value == [NULL] or value == {"@none": NULL}


def _merge_instance(old: Instance, patch: Instance) -> Instance:
    """Members of the patch replace those of old; sub-attributes merge, null ones go."""
    merged = {k: v for k, v in old.items() if k not in SYSTEM}
    if patch["type"] != old["type"]:
        for key in ATTRIBUTE_TYPES.values():
            merged.pop(key, None)
    for key, value in patch.items():
        if key in SYSTEM:
            continue
        if ":" in key and isinstance(value, dict) and "type" in value:
            if is_null(value):
                merged.pop(key, None)
                continue
            if isinstance(merged.get(key), dict):
                value = _merge_instance(merged[key], value)
        merged[key] = value
    return merged


def _drop_nulls(inst: Instance) -> Instance:
    return {
        k: v for k, v in inst.items() if not (isinstance(v, dict) and "type" in v and is_null(v))
    }
