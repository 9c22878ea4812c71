"""@context management: /jsonldContexts (GS CIM 009 5.13)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import JSON, JSON_LD, accept, json_response, read_body
from citytwin.api.state import state
from citytwin.contexts import CACHED, HOSTED, IMPLICIT, PATH
from citytwin.errors import BadRequestData

_KINDS = {k.lower(): k for k in (HOSTED, CACHED, IMPLICIT)}


async def add_context(request: Request) -> Response:
    """5.13.2: POST /jsonldContexts hosts a context document; 201 with its Location."""
    params.check_params(request, set())
    app = state(request)
    body = await read_body(request, app.settings.max_body_bytes, app.settings.max_json_depth)
    entry = app.contexts.host(body.data)
    return Response(status_code=201, headers={"Location": PATH + entry.local_id})


async def list_contexts(request: Request) -> Response:
    """5.13.3: GET /jsonldContexts, URLs or (details=true) descriptions, by kind."""
    params.check_params(request, {"details", "kind"})
    accept(request)
    kind = request.query_params.get("kind")
    if kind is not None:
        if kind.lower() not in _KINDS:
            raise BadRequestData(f"kind must be one of {sorted(_KINDS.values())}")
        kind = _KINDS[kind.lower()]
    entries = state(request).contexts.entries(kind)
    if _details(request):
        return json_response([e.details() for e in entries])
    return json_response([e.url for e in entries])


async def serve_context(request: Request) -> Response:
    """5.13.4: GET /jsonldContexts/{contextId}: the document, or its details."""
    params.check_params(request, {"details"})
    media = accept(request)
    entry = state(request).contexts.find(request.path_params["context_id"])
    body = entry.details() if _details(request) else entry.document
    response = json_response(body, media=JSON_LD if media == JSON_LD else JSON)
    entry.hit()
    return response


def _details(request: Request) -> bool:
    raw = request.query_params.get("details", "false").lower()
    if raw not in ("true", "false"):
        raise BadRequestData("details must be true or false")
    return raw == "true"


async def delete_context(request: Request) -> Response:
    """5.13.5: DELETE /jsonldContexts/{contextId}, or reload=true to fetch a cached one anew."""
    params.check_params(request, {"reload"})
    contexts = state(request).contexts
    ident = request.path_params["context_id"]
    if params.flag(request, "reload"):
        await contexts.reload(ident)
    else:
        contexts.delete(ident)
    return Response(status_code=204)
