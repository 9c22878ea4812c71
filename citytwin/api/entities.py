"""Entity and attribute resources (GS CIM 009 5.6.1-5.6.6, 5.6.17-5.6.19, 5.6.21, 5.7.1)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import accept, json_response
from citytwin.api.query import selection
from citytwin.api.represent import check_shown, represent
from citytwin.api.state import body_and_context, request_context, state, tenant_of
from citytwin.errors import BadRequestData, ResourceNotFound
from citytwin.model.context import Context
from citytwin.model.update import Outcome

NO_CONTENT = 204
_RETRIEVE = params.VIEW_PARAMS | {"type", "datasetId", "join", "joinLevel", "containedBy"}
_QUERY = _RETRIEVE | {"id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates",
                      "geoproperty", "csf", "limit", "offset", "count", "orderBy", "collation",
                      "expandValues", "jsonKeys", "entityMap", "doNotCompact"}  # fmt: skip


def _entity_id(request: Request) -> str:
    return request.path_params.get("entity_id", "")


def _empty(status: int = NO_CONTENT, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


async def create_entity(request: Request) -> Response:
    """5.6.1: POST /entities."""
    params.check_params(request, {"local"})
    body, ctx = await body_and_context(request, entity=True)
    entity_id = await state(request).broker.create_entity(tenant_of(request), body.data, ctx)
    return _empty(201, {"Location": f"/ngsi-ld/v1/entities/{entity_id}"})


async def retrieve_entity(request: Request) -> Response:
    """5.7.1: GET /entities/{entityId}."""
    params.check_params(request, _RETRIEVE)
    media = accept(request, geo=True)
    view = params.view(request)
    ctx = await request_context(request)
    broker, tenant = state(request).broker, tenant_of(request)
    entity = await broker.get_entity(tenant, _entity_id(request))
    _check_type(entity, params.csv(request, "type"), ctx)
    shown = await represent(broker, tenant, [entity], ctx, view, media)
    check_shown(shown[0], entity, params.csv(request, "attrs"), ctx)
    body = shown if view.join == "flat" and len(shown) > 1 else shown[0]
    return json_response(body, media=media, ctx=ctx)


def _check_type(entity: dict[str, Any], types: list[str] | None, ctx: Context) -> None:
    if types and not {ctx.expand(t) for t in types} & set(entity["type"]):
        raise ResourceNotFound(f"entity {entity['id']} is not of type {','.join(types)}")


async def delete_entity(request: Request) -> Response:
    """5.6.6: DELETE /entities/{entityId}."""
    params.check_params(request, {"type", "local", "via"})
    await state(request).broker.delete_entity(tenant_of(request), _entity_id(request))
    return _empty()


async def merge_entity(request: Request) -> Response:
    """5.6.17: PATCH /entities/{entityId} (also application/merge-patch+json)."""
    params.check_params(request, {"type", "local", "options", "observedAt", "lang", "format"})
    body, ctx = await body_and_context(request, merge=True)
    broker = state(request).broker
    await broker.merge_entity(tenant_of(request), _entity_id(request), body.data, ctx)
    return _empty()


async def replace_entity(request: Request) -> Response:
    """5.6.18: PUT /entities/{entityId}."""
    params.check_params(request, {"type", "local", "options", "lang", "format"})
    body, ctx = await body_and_context(request)
    broker = state(request).broker
    await broker.replace_entity(tenant_of(request), _entity_id(request), body.data, ctx)
    return _empty()


async def append_attrs(request: Request) -> Response:
    """5.6.3: POST /entities/{entityId}/attrs."""
    params.check_params(request, {"options", "type", "local"})
    no_overwrite = "noOverwrite" in params.options(request)
    body, ctx = await body_and_context(request)
    broker = state(request).broker
    outcome = await broker.append_attrs(
        tenant_of(request), _entity_id(request), body.data, ctx, no_overwrite
    )
    return _update_result(outcome)


async def update_attrs(request: Request) -> Response:
    """5.6.2: PATCH /entities/{entityId}/attrs."""
    params.check_params(request, {"options", "type", "local"})
    body, ctx = await body_and_context(request, merge=True)
    broker = state(request).broker
    outcome = await broker.update_attrs(tenant_of(request), _entity_id(request), body.data, ctx)
    return _update_result(outcome)


def _update_result(outcome: Outcome) -> Response:
    """204 when every attribute was written, else 207 with an UpdateResult (5.2.18)."""
    if not outcome.not_updated:
        return _empty()
    # Names are given expanded, as the ETSI conformance suite expects (010_04_01).
    result = {
        "updated": list(dict.fromkeys(outcome.updated)),
        "notUpdated": [
            {"attributeName": name, "reason": reason} for name, reason in outcome.not_updated
        ],
    }
    return json_response(result, 207)


async def partial_update(request: Request) -> Response:
    """5.6.4: PATCH /entities/{entityId}/attrs/{attrId}."""
    params.check_params(request, {"type", "local", "options"})
    body, ctx = await body_and_context(request, merge=True)
    await state(request).broker.partial_update(
        tenant_of(request), _entity_id(request), request.path_params["attr"], body.data, ctx
    )
    return _empty()


async def replace_attr(request: Request) -> Response:
    """5.6.19: PUT /entities/{entityId}/attrs/{attrId}."""
    params.check_params(request, {"type", "local"})
    body, ctx = await body_and_context(request)
    await state(request).broker.replace_attr(
        tenant_of(request), _entity_id(request), request.path_params["attr"], body.data, ctx
    )
    return _empty()


async def delete_attr(request: Request) -> Response:
    """5.6.5: DELETE /entities/{entityId}/attrs/{attrId}."""
    params.check_params(request, {"datasetId", "deleteAll", "type", "local", "lang"})
    ctx = await request_context(request)
    await state(request).broker.delete_attr(
        tenant_of(request),
        _entity_id(request),
        request.path_params["attr"],
        ctx,
        dataset_id=request.query_params.get("datasetId"),
        delete_all=params.flag(request, "deleteAll"),
    )
    return _empty()


async def purge_entities(request: Request) -> Response:
    """5.6.21: DELETE /entities, for the entities a filter selects."""
    allowed = {"type", "id", "idPattern", "q", "scopeQ", "local", "via", "keep", "drop"}
    params.check_params(request, allowed)
    ctx = await request_context(request)
    what = selection(request.query_params, ctx)
    keep, drop = params.csv(request, "keep"), params.csv(request, "drop")
    if keep is not None and drop is not None:
        raise BadRequestData("keep and drop cannot be used together")
    if what.everything and not params.flag(request, "local"):
        raise BadRequestData("purge needs at least one of type, id, idPattern, q or local=true")
    names = keep if keep is not None else drop
    attrs = frozenset(ctx.expand(n) for n in names) if names is not None else None
    await state(request).broker.purge(tenant_of(request), what, attrs, keep=keep is not None)
    return _empty()
