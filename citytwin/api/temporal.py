"""The temporal API (GS CIM 009 6.18-6.22, 6.24): /temporal/entities and its query."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import accept, json_response
from citytwin.api.query import PAGE_PARAMS, body_selection, page_params, query_body, selection
from citytwin.api.state import body_and_context, request_context, state, tenant_of
from citytwin.errors import BadRequestData, MethodNotAllowed, ResourceNotFound
from citytwin.model.context import Context
from citytwin.model.history import HistoryQuery, series_attr
from citytwin.model.render import View
from citytwin.model.temporal import AGGREGATED, Temporal, parse_temporal
from citytwin.model.temporal_render import render_aggregates, render_history
from citytwin.timeline import History

TEMPORAL_PARAMS = {"timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "aggrMethods",
                   "aggrPeriodDuration"}  # fmt: skip
_RETRIEVE = params.VIEW_PARAMS | TEMPORAL_PARAMS | {"datasetId", "type"}
_QUERY = _RETRIEVE | {"id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates",
                      "geoproperty", "csf", "limit", "offset", "count", "orderBy", "collation",
                      "expandValues", "jsonKeys"}  # fmt: skip
NO_CONTENT = 204


def _path(request: Request, name: str) -> str:
    return request.path_params.get(name, "")


def _temporal(request: Request, values: Mapping[str, Any], required: bool) -> Temporal:
    options = [o.strip() for v in request.query_params.getlist("options") for o in v.split(",")]
    return parse_temporal(values, [o for o in options if o], required)


def _view(request: Request, extra: Mapping[str, str] | None = None) -> View:
    """pick/omit/attrs/lang/datasetId as for entities (the temporal forms are Temporal's)."""
    values = {k: v for k, v in request.query_params.items() if k not in ("options", "format")}
    return params.view_of({**values, **(extra or {})}, frozenset())


def _attrs(view: View, ctx: Context) -> frozenset[str] | None:
    """The attributes to read: those pick (or attrs) names; None for all (also when pick names
    only id and type: an entity is still selected by having instances)."""
    if view.pick is None:
        return None
    names = view.pick.names - {"id", "type"}
    if not names:
        return None
    return frozenset(series_attr(n, ctx) for n in names)


def _select(temporal: Temporal, view: View, ctx: Context) -> HistoryQuery:
    return HistoryQuery(temporal.window, _attrs(view, ctx), datasets=view.dataset_ids)


def _respond(
    media: str, history: History, ctx: Context, view: View, temporal: Temporal, one: bool
) -> Response:
    bodies = []
    for entity in history.entities:
        if temporal.form == AGGREGATED:
            periods = history.periods[entity["id"]]
            bodies.append(render_aggregates(entity, periods, ctx, view, temporal))
        else:
            series = history.series[entity["id"]]
            bodies.append(render_history(entity, series, ctx, view, temporal))
    headers = {}
    status = 200
    if history.content_range is not None:
        status = 206
        headers["Content-Range"] = history.content_range
    if one:
        if not bodies[0]:
            raise ResourceNotFound("pick/omit leave nothing of the entity to show")
        return json_response(bodies[0], status, media, ctx, headers)
    return json_response(bodies, status, media, ctx, headers)


async def retrieve(request: Request) -> Response:
    """5.7.3: GET /temporal/entities/{entityId}."""
    params.check_params(request, _RETRIEVE)
    media = accept(request)
    ctx = await request_context(request)
    temporal = _temporal(request, request.query_params, required=False)
    view = _view(request)
    timeline = state(request).timeline
    tenant, entity_id = tenant_of(request), _path(request, "entity_id")
    history = await timeline.retrieve(tenant, entity_id, temporal, _select(temporal, view, ctx))
    return _respond(media, history, ctx, view, temporal, one=True)


async def query(request: Request) -> Response:
    """5.7.4: GET /temporal/entities."""
    params.check_params(request, _QUERY | {"local"})
    media = accept(request)
    ctx = await request_context(request)
    temporal = _temporal(request, request.query_params, required=True)
    view = _view(request)
    what = selection(request.query_params, ctx, require=True)
    return await _answer(request, media, what, ctx, view, temporal)


async def post_query(request: Request) -> Response:
    """5.7.4 via POST /temporal/entityOperations/query: a Query with temporalQ (5.2.23)."""
    params.check_params(request, PAGE_PARAMS)
    media = accept(request)
    data, ctx = await query_body(request)
    temporal_q = data.get("temporalQ")
    if not isinstance(temporal_q, dict):
        raise BadRequestData("a temporal query needs temporalQ")
    aggr = data.get("aggrParams") or {}
    if not isinstance(aggr, dict):
        raise BadRequestData("aggrParams must be an object")
    values = {**request.query_params, **temporal_q, **aggr}
    temporal = _temporal(request, values, required=True)
    extra = {
        k: ",".join(data[k]) for k in ("attrs", "pick", "omit") if isinstance(data.get(k), list)
    }
    view = _view(request, extra)
    what = body_selection(data, ctx)
    return await _answer(request, media, what, ctx, view, temporal)


async def _answer(
    request: Request, media: str, what: Any, ctx: Context, view: View, temporal: Temporal
) -> Response:
    limit, offset, count = page_params(request)
    what = replace(what, limit=limit, offset=offset)
    timeline = state(request).timeline
    select = _select(temporal, view, ctx)
    history, total = await timeline.query(tenant_of(request), what, temporal, select)
    response = _respond(media, history, ctx, view, temporal, one=False)
    if count:
        response.headers["NGSILD-Results-Count"] = str(total)
    return response


async def upsert(request: Request) -> Response:
    """5.6.11: POST /temporal/entities: 201 for a new entity, 204 when added to."""
    params.check_params(request, {"local"})
    body, ctx = await body_and_context(request, entity=True)
    created = await state(request).timeline.upsert(tenant_of(request), body.data, ctx)
    if created:
        location = f"/ngsi-ld/v1/temporal/entities/{body.data.get('id', body.data.get('@id'))}"
        return Response(status_code=201, headers={"Location": location})
    return Response(status_code=NO_CONTENT)


async def delete(request: Request) -> Response:
    """5.6.16: DELETE /temporal/entities/{entityId} (its current state goes with it)."""
    params.check_params(request, {"local", "via"})
    await state(request).broker.delete_entity(tenant_of(request), _path(request, "entity_id"))
    return Response(status_code=NO_CONTENT)


async def add_attrs(request: Request) -> Response:
    """5.6.12: POST /temporal/entities/{entityId}/attrs."""
    params.check_params(request, {"local"})
    entity_id = _path(request, "entity_id")
    body, ctx = await body_and_context(request, entity=True)
    await state(request).timeline.add_attrs(tenant_of(request), entity_id, body.data, ctx)
    return Response(status_code=NO_CONTENT)


async def delete_attr(request: Request) -> Response:
    """5.6.13: DELETE /temporal/entities/{entityId}/attrs/{attrId}."""
    params.check_params(request, {"datasetId", "deleteAll", "local"})
    ctx = await request_context(request)
    await state(request).timeline.delete_attr(
        tenant_of(request),
        _path(request, "entity_id"),
        _path(request, "attr"),
        ctx,
        request.query_params.get("datasetId"),
        params.flag(request, "deleteAll"),
    )
    return Response(status_code=NO_CONTENT)


async def modify_instance(request: Request) -> Response:
    """5.6.14: PATCH /temporal/entities/{entityId}/attrs/{attrId}/{instanceId}."""
    attr, instance = _path(request, "attr"), _path(request, "instance_id")
    if not attr or not instance:  # .../attrs/x/ or .../attrs//y: not an instance resource
        raise MethodNotAllowed("PATCH needs an attribute and an instance", allow="DELETE")
    params.check_params(request, {"local"})
    body, ctx = await body_and_context(request)
    await state(request).timeline.modify_instance(
        tenant_of(request), _path(request, "entity_id"), attr, instance, body.data, ctx
    )
    return Response(status_code=NO_CONTENT)


async def delete_instance(request: Request) -> Response:
    """5.6.15: DELETE /temporal/entities/{entityId}/attrs/{attrId}/{instanceId}."""
    params.check_params(request, {"local"})
    ctx = await request_context(request)
    await state(request).timeline.delete_instance(
        tenant_of(request),
        _path(request, "entity_id"),
        _path(request, "attr"),
        _path(request, "instance_id"),
        ctx,
    )
    return Response(status_code=NO_CONTENT)
