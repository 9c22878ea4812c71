"""Input entities and attributes into the stored form (GS CIM 009 4.5, 5.6.1).

The stored form keeps names and types expanded to IRIs so that any client context reads them:
    {"id": ..., "type": [type IRIs], "scope": [...], "createdAt": ..., "modifiedAt": ...,
     "attrs": {attribute IRI: [instance, ...]}}
An instance is a normalized attribute whose NGSI-LD members keep their core names and whose
sub-attributes are keyed by IRI. Normalized and concise input are both accepted (4.5.3).
"""

from __future__ import annotations

from typing import Any

from citytwin.errors import BadRequestData, InvalidRequest
from citytwin.model.context import NGSI_LD, Context
from citytwin.model.validate import (
    check_datetime,
    check_iri,
    check_name,
    check_scope,
    check_uri,
    is_geometry,
)

Instance = dict[str, Any]
Entity = dict[str, Any]

ATTRIBUTE_TYPES = {
    "Property": "value",
    "Relationship": "object",
    "GeoProperty": "value",
    "LanguageProperty": "languageMap",
    "VocabProperty": "vocab",
    "ListProperty": "valueList",
    "ListRelationship": "objectList",
    "JsonProperty": "json",
}
_CONCISE_KEYS = [
    ("object", "Relationship"),
    ("languageMap", "LanguageProperty"),
    ("vocab", "VocabProperty"),
    ("valueList", "ListProperty"),
    ("objectList", "ListRelationship"),
    ("json", "JsonProperty"),
    ("value", None),
]
MEMBERS = {
    "type", "value", "object", "objectType", "languageMap", "vocab", "valueList", "objectList",
    "json", "observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "deletedAt",
    "instanceId", "@context", "lang",
}  # fmt: skip
SYSTEM = ("createdAt", "modifiedAt", "deletedAt")
ENTITY_MEMBERS = {"id", "@id", "type", "@type", "scope", "@context", *SYSTEM}
GEO_NAMES = {"location", "observationSpace", "operationSpace"}
NULL = "urn:ngsi-ld:null"


def parse_entity(body: Any, ctx: Context, now: str, *, need_id: bool = True) -> Entity:
    """A whole entity from a request body (create, replace, batch)."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("an entity is a non-empty JSON object")
    ident = body.get("id", body.get("@id"))
    if need_id or ident is not None:
        check_uri(ident, "entity id")
    entity: Entity = {"id": ident, "type": parse_types(body.get("type", body.get("@type")), ctx)}
    if "scope" in body:
        entity["scope"] = check_scope(body["scope"])
    entity["createdAt"] = entity["modifiedAt"] = now
    entity["attrs"] = parse_attributes(body, ctx, now)
    return entity


def parse_types(value: Any, ctx: Context) -> list[str]:
    names = value if isinstance(value, list) else [value]
    if not names or value is None:
        raise BadRequestData("an entity needs a type")
    return list(dict.fromkeys(expand_name(n, ctx, "entity type") for n in names))


def expand_name(name: Any, ctx: Context, what: str = "attribute name") -> str:
    """Check a type or attribute name and expand it to its IRI."""
    return check_iri(ctx.expand(check_name(name, what)), name, what)


def parse_attributes(body: dict[str, Any], ctx: Context, now: str) -> dict[str, list[Instance]]:
    """Every attribute of an entity or fragment body, keyed by expanded name."""
    attrs: dict[str, list[Instance]] = {}
    for name, raw in body.items():
        if name in ENTITY_MEMBERS:
            continue
        attrs[expand_name(name, ctx)] = parse_attribute(name, raw, ctx, now)
    return attrs


def parse_attribute(name: str, raw: Any, ctx: Context, now: str) -> list[Instance]:
    """One attribute, possibly a multi-attribute (a list of instances with datasetIds)."""
    if _is_instance_list(raw):
        instances = [parse_instance(name, item, ctx, now) for item in raw]
        ids = [i.get("datasetId") for i in instances]
        if len(set(ids)) != len(ids):
            raise BadRequestData(f"attribute {name} repeats a datasetId")
        return instances
    return [parse_instance(name, raw, ctx, now)]


def _is_instance_list(raw: Any) -> bool:
    return (
        isinstance(raw, list)
        and bool(raw)
        and all(isinstance(i, dict) and ("type" in i or "datasetId" in i) for i in raw)
    )


def parse_instance(
    name: str, raw: Any, ctx: Context, now: str | None, top: bool = True
) -> Instance:
    """One attribute instance, normalized or concise, validated."""
    if raw is None:
        raise BadRequestData(f"attribute {name} has no value")
    if not isinstance(raw, dict) or not _has_type_or_member(raw):
        raw = {"value": raw}
    kind = attribute_type(name, raw, ctx)
    inst: Instance = {"type": kind}
    for key, value in raw.items():
        if key == "type" or key in SYSTEM or key in ("@context", "instanceId"):
            continue
        if key in MEMBERS:
            inst[key] = _member(name, kind, key, value, ctx)
        else:
            inst[expand_name(key, ctx)] = parse_instance(key, value, ctx, None)
    _check_complete(name, kind, inst)
    if now is not None:
        inst["createdAt"] = inst["modifiedAt"] = now
    return inst


def parse_patch(name: str, raw: Any, ctx: Context) -> Instance:
    """5.6.4: a partial attribute fragment; type and value may be left out."""
    if not isinstance(raw, dict) or not any(k != "@context" for k in raw):
        raise BadRequestData(f"a partial update of {name} needs a non-empty JSON object")
    patch: Instance = {}
    for key, value in raw.items():
        if key == "type":
            patch["type"] = attribute_type(name, raw, ctx)
        elif key in MEMBERS:
            if key not in SYSTEM and key not in ("@context", "instanceId"):
                patch[key] = _member(name, patch.get("type") or _kind_of(raw), key, value, ctx)
        else:
            patch[expand_name(key, ctx)] = parse_instance(key, value, ctx, None)
    return patch


def _kind_of(raw: dict[str, Any]) -> str:
    for key, kind in _CONCISE_KEYS:
        if key in raw and kind:
            return kind
    return "Property"


def _has_type_or_member(raw: dict[str, Any]) -> bool:
    return "type" in raw and not is_geometry(raw) or any(k in raw for k, _ in _CONCISE_KEYS)


def attribute_type(name: str, raw: dict[str, Any], ctx: Context) -> str:
    declared = raw.get("type")
    if declared is not None and not is_geometry(raw):
        kind = declared if declared in ATTRIBUTE_TYPES else _core_term(declared, ctx)
        if kind not in ATTRIBUTE_TYPES:
            raise BadRequestData(f"attribute {name} has an unknown type {declared!r}")
        return kind
    for key, kind in _CONCISE_KEYS:
        if key in raw:
            return kind or _value_kind(name, raw[key])
    return "Property"


def _core_term(declared: Any, ctx: Context) -> str | None:
    if not isinstance(declared, str):
        return None
    iri = ctx.expand(declared)
    return iri[len(NGSI_LD) :] if iri.startswith(NGSI_LD) else None


def _value_kind(name: str, value: Any) -> str:
    return "GeoProperty" if is_geometry(value) or name in GEO_NAMES else "Property"


def _member(name: str, kind: str, key: str, value: Any, ctx: Context) -> Any:
    if key == "observedAt":
        return check_datetime(value, f"{name}.observedAt")
    if key == "datasetId":
        return check_uri(value, f"{name}.datasetId")
    if key == "unitCode" and not isinstance(value, str):
        raise BadRequestData(f"{name}.unitCode must be a string")
    if key == "objectType":
        return [ctx.expand(v) for v in value] if isinstance(value, list) else ctx.expand(value)
    if key == "vocab":
        return _vocab(name, value, ctx)
    if ATTRIBUTE_TYPES[kind] != key and key in ATTRIBUTE_TYPES.values():
        raise BadRequestData(f"a {kind} ({name}) cannot have a {key} member")
    return value


def _vocab(name: str, value: Any, ctx: Context) -> Any:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        raise BadRequestData(f"{name}.vocab must be a string or a list of strings")
    return [ctx.expand(v) for v in items] if isinstance(value, list) else ctx.expand(value)


def _check_complete(name: str, kind: str, inst: Instance) -> None:
    key = ATTRIBUTE_TYPES[kind]
    value = inst.get(key)
    if value is None:
        raise BadRequestData(f"a {kind} ({name}) needs a {key} member")
    check = _CHECKS.get(kind)
    if check is not None and not check(value):
        raise BadRequestData(f"{name} has an invalid {key} for a {kind}: {value!r}")
    if name in GEO_NAMES and kind != "GeoProperty" and value != NULL:
        raise BadRequestData(f"{name} must be a GeoProperty")


def _relationship_object(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(_is_uri(v) for v in items)


def _object_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        _is_uri(v["object"] if isinstance(v, dict) and "object" in v else v) for v in value
    )


def _language_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v))
        for v in value.values()
    )


def _is_uri(value: Any) -> bool:
    try:
        check_uri(value, "")
        return True
    except BadRequestData:
        return value == NULL


_CHECKS = {
    "Relationship": _relationship_object,
    "GeoProperty": lambda v: is_geometry(v) or v == NULL,
    "LanguageProperty": _language_map,
    "ListProperty": lambda v: isinstance(v, list) or v == NULL,
    "ListRelationship": _object_list,
    "JsonProperty": lambda v: isinstance(v, dict | list) or v == NULL,
}
