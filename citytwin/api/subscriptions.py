"""Subscriptions: /subscriptions and /subscriptions/{id} (GS CIM 009 5.8.1-5.8.5)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import accept, item_context, json_response
from citytwin.api.query import page_of
from citytwin.api.state import body_and_context, request_context, state, tenant_of
from citytwin.model.context import CORE_CONTEXT_URL
from citytwin.model.subscription import render_subscription


def _sub_id(request: Request) -> str:
    return request.path_params.get("sub_id", "")


async def create(request: Request) -> Response:
    """5.8.1: 201 with the Location of the new subscription."""
    params.check_params(request, set())
    body, ctx = await body_and_context(request, entity=True)
    source = item_context(body, body.data)
    url = state(request).contexts.implicit(source) if source is not None else CORE_CONTEXT_URL
    broker = state(request).broker
    sub_id = await broker.create_subscription(tenant_of(request), body.data, ctx, url)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{sub_id}"})


async def retrieve(request: Request) -> Response:
    """5.8.3."""
    params.check_params(request, {"local"})
    media = accept(request)
    ctx = await request_context(request)
    doc = await state(request).broker.get_subscription(tenant_of(request), _sub_id(request))
    return json_response(render_subscription(doc, ctx), media=media, ctx=ctx)


async def query(request: Request) -> Response:
    """5.8.4: every subscription of the tenant, paginated."""
    params.check_params(request, {"limit", "offset", "count", "local"})
    media = accept(request)
    ctx = await request_context(request)
    docs = await state(request).broker.subscriptions(tenant_of(request))
    page, headers = page_of(request, docs)
    body = [render_subscription(doc, ctx) for doc in page]
    return json_response(body, media=media, ctx=ctx, headers=headers)


async def update(request: Request) -> Response:
    """5.8.2: 204; the members given replace the stored ones."""
    params.check_params(request, set())
    body, ctx = await body_and_context(request, merge=True, entity=True)
    await state(request).broker.update_subscription(
        tenant_of(request), _sub_id(request), body.data, ctx
    )
    return Response(status_code=204)


async def delete(request: Request) -> Response:
    """5.8.5."""
    params.check_params(request, set())
    await state(request).broker.delete_subscription(tenant_of(request), _sub_id(request))
    return Response(status_code=204)
