"""Batch entity operations (GS CIM 009 5.6.7-5.6.10, 5.6.20)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import Body, item_context, json_response, read_body
from citytwin.api.state import state, tenant_of
from citytwin.broker import BatchResult
from citytwin.errors import BadRequestData, NgsiError
from citytwin.model.context import Context

OPERATIONS = ("create", "upsert", "update", "delete", "merge")


async def batch(request: Request, op: str) -> Response:
    """POST /entityOperations/{op}: 201/204 when every entity succeeds, else 207."""
    params.check_params(request, {"options", "local"})
    options = params.options(request)
    settings = state(request).settings
    body = await read_body(request, settings.max_body_bytes, settings.max_json_depth)
    if not isinstance(body.data, list) or not body.data:
        raise BadRequestData("a batch operation takes a non-empty JSON array")
    items = [(item, await _item_context(request, body, item)) for item in body.data]
    result = await state(request).broker.batch(tenant_of(request), op, items, options)
    return _answer(op, result)


async def _item_context(request: Request, body: Body, item: Any) -> Context | NgsiError:
    """Each entity of the array is judged alone: a bad or unavailable @context fails it only."""
    if not isinstance(item, dict):
        return await state(request).contexts.resolve(body.context)
    try:
        return await state(request).contexts.resolve(item_context(body, item))
    except NgsiError as exc:
        return exc


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
