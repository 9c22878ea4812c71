"""Discovery of entity types and attributes (GS CIM 009 5.7.5-5.7.10)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import accept, json_response
from citytwin.api.state import request_context, state, tenant_of
from citytwin.errors import ResourceNotFound
from citytwin.model.context import Context
from citytwin.model.entity import expand_name

_PARAMS = {"details", "local", "via"}
Rows = list[tuple[str, str | None, str | None, int]]
Grouped = dict[str, dict[str, set[str]]]


async def _context(request: Request) -> Context:
    params.check_params(request, _PARAMS)
    accept(request)
    return await request_context(request)


async def _summary(request: Request) -> tuple[Context, Rows]:
    ctx = await _context(request)
    return ctx, await state(request).broker.summary(tenant_of(request))


def _listing(
    request: Request, ctx: Context, kind: str, member: str, names: list[str], details: Any
) -> Response:
    """details=true: the details of each (details() makes them); else one list of names."""
    if params.flag(request, "details"):
        return json_response(details(), ctx=ctx)
    body = {"id": f"urn:ngsi-ld:{kind}:{uuid.uuid4()}", "type": kind, member: names}
    return json_response(body, ctx=ctx)


def _attrs_by_type(rows: Rows) -> Grouped:
    by_type: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for kind, attr, attr_type, _ in rows:
        attrs = by_type[kind]
        if attr is not None:
            attrs.setdefault(attr, set()).add(attr_type or "Property")
    return by_type


async def types(request: Request) -> Response:
    """5.7.5 (EntityTypeList) and 5.7.6 (details=true: EntityType for each)."""
    ctx, rows = await _summary(request)
    by_type = _attrs_by_type(rows)
    names = [ctx.compact(iri) for iri in by_type]
    return _listing(request, ctx, "EntityTypeList", "typeList", names, lambda: [
        {
            "id": iri,
            "type": "EntityType",
            "typeName": ctx.compact(iri),
            "attributeNames": [ctx.compact(a) for a in attrs],
        }
        for iri, attrs in by_type.items()
    ])  # fmt: skip


async def entity_type(request: Request) -> Response:
    """5.7.7: EntityTypeInfo of one type."""
    ctx = await _context(request)
    broker, tenant = state(request).broker, tenant_of(request)
    counts = await broker.type_counts(tenant)  # the type index: cheap, before the summary
    iri = expand_name(request.path_params["type"], ctx, "entity type")
    if iri not in counts:
        raise ResourceNotFound(f"no entity of type {request.path_params['type']}")
    attrs = _attrs_by_type(await broker.summary(tenant)).get(iri, {})
    body = {
        "id": iri,
        "type": "EntityTypeInfo",
        "typeName": ctx.compact(iri),
        "entityCount": counts[iri],
        "attributeDetails": [
            {
                "id": attr,
                "type": "Attribute",
                "attributeName": ctx.compact(attr),
                "attributeTypes": sorted(kinds),
            }
            for attr, kinds in attrs.items()
        ],
    }
    return json_response(body, ctx=ctx)


def _types_by_attr(rows: Rows) -> Grouped:
    """attribute -> {"types": entity types, "kinds": attribute types}."""
    by_attr: Grouped = {}
    for kind, attr, attr_type, _ in rows:
        if attr is not None:
            entry = by_attr.setdefault(attr, {"types": set(), "kinds": set()})
            entry["types"].add(kind)
            entry["kinds"].add(attr_type or "Property")
    return by_attr


async def attributes(request: Request) -> Response:
    """5.7.8 (AttributeList) and 5.7.9 (details=true: Attribute for each)."""
    ctx, rows = await _summary(request)
    by_attr = _types_by_attr(rows)
    names = [ctx.compact(a) for a in by_attr]
    return _listing(request, ctx, "AttributeList", "attributeList", names, lambda: [
        {
            "id": attr,
            "type": "Attribute",
            "attributeName": ctx.compact(attr),
            "typeNames": sorted(ctx.compact(t) for t in entry["types"]),
        }
        for attr, entry in by_attr.items()
    ])  # fmt: skip


async def attribute(request: Request) -> Response:
    """5.7.10: one Attribute with its count, attribute types and entity types."""
    ctx, rows = await _summary(request)
    iri = expand_name(request.path_params["attr"], ctx)
    entry = _types_by_attr(rows).get(iri)
    if entry is None:
        raise ResourceNotFound(f"no entity has an attribute {request.path_params['attr']}")
    body = {
        "id": iri,
        "type": "Attribute",
        "attributeName": ctx.compact(iri),
        "attributeCount": await state(request).broker.attribute_count(tenant_of(request), iri),
        "attributeTypes": sorted(entry["kinds"]),
        "typeNames": sorted(ctx.compact(t) for t in entry["types"]),
    }
    return json_response(body, ctx=ctx)
