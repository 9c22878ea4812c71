"""Batch entity operations (GS CIM 009 5.6.7-5.6.10, 5.6.20)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import JSON_LD, json_response, link_context
from citytwin.api.state import body_and_context, state, tenant_of
from citytwin.broker import BatchResult
from citytwin.errors import BadRequestData, NgsiError
from citytwin.model.context import Context

OPERATIONS = ("create", "upsert", "update", "delete", "merge")


async def batch(request: Request, op: str) -> Response:
    """POST /entityOperations/{op}: 201/204 when every entity succeeds, else 207."""
    params.check_params(request, {"options", "local"})
    options = params.options(request)
    body, ctx = await body_and_context(request)
    if not isinstance(body.data, list):
        raise BadRequestData("a batch operation takes a JSON array")
    items = [(item, await _item_context(request, item, body.media_type, ctx)) for item in body.data]
    result = await state(request).broker.batch(tenant_of(request), op, items, options)
    return _answer(op, result)


async def _item_context(request: Request, item: Any, media: str, ctx: Context) -> Context:
    """With application/ld+json each entity of the array carries its own @context."""
    if media != JSON_LD or not isinstance(item, dict):
        return ctx
    if link_context(request) is not None:
        raise BadRequestData("with application/ld+json the @context goes in the body, not Link")
    if "@context" not in item:
        raise BadRequestData("each entity of an application/ld+json batch needs an @context")
    return await state(request).contexts.resolve(item["@context"])


def _answer(op: str, result: BatchResult) -> Response:
    if result.errors:
        body = {
            "success": result.success,
            "errors": [_error(entity_id, exc) for entity_id, exc in result.errors],
        }
        return json_response(body, 207)
    if op == "create":
        return json_response(result.success, 201)
    if op == "upsert" and result.created:
        return json_response(result.created, 201)
    return Response(status_code=204)


def _error(entity_id: str | None, exc: NgsiError) -> dict[str, Any]:
    return {"entityId": entity_id, "error": exc.problem()}
