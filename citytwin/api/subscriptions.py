"""Subscriptions: /subscriptions and /subscriptions/{id} (GS CIM 009 5.8.1-5.8.5)."""

from __future__ import annotations

from typing import Any

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
    body, ctx = await body_and_context(request)
    data, url = body.data, CORE_CONTEXT_URL
    if isinstance(data, dict):
        data, url = await _with_context_url(request, data, item_context(body, data))
    sub_id = await state(request).broker.create_subscription(tenant_of(request), data, ctx, url)
    return Response(status_code=201, headers={"Location": f"/ngsi-ld/v1/subscriptions/{sub_id}"})


async def _with_context_url(
    request: Request, data: dict[str, Any], source: Any
) -> tuple[dict[str, Any], str]:
    """The body, and the @context URL notifications will name: jsonldContext (fetched now, so
    that an unreachable one is refused), the request's single context URL, or one made for an
    inline @context (then shown as the subscription's jsonldContext)."""
    contexts = state(request).contexts
    given = data.get("jsonldContext")
    if isinstance(given, str) and given.startswith(("http://", "https://")):
        await contexts.resolve(given)
        return data, given
    if given is not None:
        return data, CORE_CONTEXT_URL  # refused as BadRequestData when parsed
    single = source[0] if isinstance(source, list) and len(source) == 1 else source
    if single is None or isinstance(single, str):
        return data, single or CORE_CONTEXT_URL
    url = contexts.implicit(source)
    return {**data, "jsonldContext": url}, url


async def retrieve(request: Request) -> Response:
    """5.8.3."""
    params.check_params(request, {"local"})
    media = accept(request)
    ctx = await request_context(request)
    broker = state(request).broker
    doc = await broker.get_subscription(tenant_of(request), _sub_id(request))
    delivery = broker.delivery_status(tenant_of(request), doc["id"])
    return json_response(render_subscription(doc, ctx, delivery), media=media, ctx=ctx)


async def query(request: Request) -> Response:
    """5.8.4: every subscription of the tenant, paginated."""
    params.check_params(request, {"limit", "offset", "count", "local"})
    media = accept(request)
    ctx = await request_context(request)
    broker, tenant = state(request).broker, tenant_of(request)
    docs = await broker.subscriptions(tenant)
    page, headers = page_of(request, docs)
    body = [render_subscription(d, ctx, broker.delivery_status(tenant, d["id"])) for d in page]
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
