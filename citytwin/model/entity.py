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
_SKIPPED = {"type", "@context", "instanceId", *SYSTEM}
_VALUE_KEY = ATTRIBUTE_TYPES
_VALUE_KEYS = set(ATTRIBUTE_TYPES.values())
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
    """Check a type or attribute name and expand it to its IRI (memoized per context)."""
    hit = ctx.checked.get(name) if isinstance(name, str) else None
    if hit is None:
        hit = check_iri(ctx.expand(check_name(name, what)), name, what)
        ctx.checked[name] = hit
    return hit


def parse_attributes(body: dict[str, Any], ctx: Context, now: str) -> dict[str, list[Instance]]:
    """Every attribute of an entity or fragment body, keyed by expanded name."""
    parser = _Parser(ctx, now)
    return {
        expand_name(name, ctx): parser.attribute(name, raw)
        for name, raw in body.items()
        if name not in ENTITY_MEMBERS
    }


def parse_attribute(name: str, raw: Any, ctx: Context, now: str) -> list[Instance]:
    """One attribute, possibly a multi-attribute (a list of instances with datasetIds)."""
    return _Parser(ctx, now).attribute(name, raw)


def parse_instances(name: str, items: list[Any], ctx: Context, now: str) -> list[Instance]:
    """Instances of one attribute at several times (a temporal body): datasetIds may repeat."""
    parser = _Parser(ctx, now)
    return [parser.instance(name, item) for item in items]


def parse_patch(name: str, raw: Any, ctx: Context) -> Instance:
    """5.6.4: a partial attribute fragment; type and value may be left out."""
    if not isinstance(raw, dict) or not any(k != "@context" for k in raw):
        raise BadRequestData(f"a partial update of {name} needs a non-empty JSON object")
    declared = "type" in raw
    kind = attribute_type(name, raw, ctx) if declared else _kind_of(raw)
    return _Parser(ctx, None).members(name, kind, raw, {"type": kind} if declared else {})


class _Parser:
    """Normalized and concise attributes into stored instances, checked on the way.

    This is the hot path of every write, so it dispatches on plain dict lookups. (The nesting
    limit is enforced on the raw body before parsing.)
    """

    def __init__(self, ctx: Context, now: str | None) -> None:
        self.ctx = ctx
        self.now = now

    def attribute(self, name: str, raw: Any) -> list[Instance]:
        if type(raw) is list and raw and all(_looks_like_instance(i) for i in raw):
            instances = [self.instance(name, item) for item in raw]
            ids = [i.get("datasetId") for i in instances]
            if len(set(ids)) != len(ids):
                raise BadRequestData(f"attribute {name} repeats a datasetId")
            return instances
        return [self.instance(name, raw)]

    def instance(self, name: str, raw: Any) -> Instance:
        kind = raw.get("type") if type(raw) is dict else None
        if kind not in ATTRIBUTE_TYPES:  # concise, an expanded type name, or a bare value
            if raw is None:
                raise BadRequestData(f"attribute {name} has no value")
            if type(raw) is not dict or not _is_attribute_object(raw):
                raw = {"value": raw}
            kind = attribute_type(name, raw, self.ctx)
        inst = self.members(name, kind, raw, {"type": kind})
        _check_complete(name, kind, inst)
        if self.now is not None:
            inst["createdAt"] = inst["modifiedAt"] = self.now
        return inst

    def members(self, name: str, kind: str, raw: dict[str, Any], inst: Instance) -> Instance:
        value_key = _VALUE_KEY[kind]
        for key, value in raw.items():
            if key == value_key and key != "vocab":
                inst[key] = value
            elif key in _SKIPPED:
                continue
            elif key in MEMBERS:
                inst[key] = _member(name, kind, key, value, self.ctx)
            else:
                inst[expand_name(key, self.ctx)] = self.instance(key, value)
        return inst


def _looks_like_instance(item: Any) -> bool:
    return type(item) is dict and ("type" in item or "datasetId" in item)


def _is_attribute_object(raw: dict[str, Any]) -> bool:
    """Normalized or concise attribute object, as opposed to a bare (concise) JSON value."""
    declared = raw.get("type")
    if declared is not None:
        return declared in ATTRIBUTE_TYPES or not is_geometry(raw)
    return any(k in raw for k in _VALUE_KEYS)


def _kind_of(raw: dict[str, Any]) -> str:
    for key, kind in _CONCISE_KEYS:
        if key in raw and kind:
            return kind
    return "Property"


def attribute_type(name: str, raw: dict[str, Any], ctx: Context) -> str:
    declared = raw.get("type")
    if declared is not None:
        if declared in ATTRIBUTE_TYPES:
            return declared
        kind = _core_term(declared, ctx)
        if kind not in ATTRIBUTE_TYPES:
            raise BadRequestData(f"attribute {name} has an unknown type {declared!r}")
        return kind  # type: ignore[return-value]
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
    return "GeoProperty" if name in GEO_NAMES or is_geometry(value) else "Property"


def _member(name: str, kind: str, key: str, value: Any, ctx: Context) -> Any:
    if key in _VALUE_KEYS:
        if _VALUE_KEY[kind] != key:
            raise BadRequestData(f"a {kind} ({name}) cannot have a {key} member")
        return _vocab(name, value, ctx) if key == "vocab" else value
    if key == "observedAt":
        return check_datetime(value, f"{name}.observedAt")
    if key == "datasetId":
        return check_uri(value, f"{name}.datasetId")
    if key == "unitCode" and not isinstance(value, str):
        raise BadRequestData(f"{name}.unitCode must be a string")
    if key == "objectType":
        return [ctx.expand(v) for v in value] if isinstance(value, list) else ctx.expand(value)
    return value


def _vocab(name: str, value: Any, ctx: Context) -> Any:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        raise BadRequestData(f"{name}.vocab must be a string or a list of strings")
    return [ctx.expand(v) for v in items] if isinstance(value, list) else ctx.expand(value)


def _check_complete(name: str, kind: str, inst: Instance) -> None:
    key = _VALUE_KEY[kind]
    value = inst.get(key)
    if value is None:
        raise BadRequestData(f"a {kind} ({name}) needs a {key} member")
    if kind == "Property":
        if name in GEO_NAMES and value != NULL:
            raise BadRequestData(f"{name} must be a GeoProperty")
        return
    check = _CHECKS.get(kind)
    if check is not None and not check(value):
        raise BadRequestData(f"{name} has an invalid {key} for a {kind}: {value!r}")
    if kind != "GeoProperty" and name in GEO_NAMES and value != NULL:
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
