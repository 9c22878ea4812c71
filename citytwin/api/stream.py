"""GET /citytwin/v1/stream: the twin's changes as server-sent events (a citytwin extension).

Filtered with the parameters of an entity query (type, id, q, scopeQ, geo-query, attrs); each
event is an NGSI-LD Notification whose id is the change's sequence number, so Last-Event-ID
resumes a broken stream without loss.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from citytwin.api import params
from citytwin.api.query import QUERY_PARAMS, selection
from citytwin.api.state import request_context, state, tenant_of
from citytwin.errors import BadRequestData, NotAcceptable
from citytwin.notify.stream import events


async def stream(request: Request) -> Response:
    params.check_params(request, QUERY_PARAMS | {"lastEventId"})
    wanted = request.headers.get("accept", "text/event-stream")
    if not any(m in wanted for m in ("text/event-stream", "*/*")):
        raise NotAcceptable("the stream is text/event-stream")
    ctx = await request_context(request)
    query = selection(request.query_params, ctx)
    view = params.view(request)
    app = state(request)
    tenant = tenant_of(request)
    await app.broker.require_tenant(tenant)
    after = _last_event_id(request)
    body = events(app.broker.store, app.feed, tenant, query, ctx, view, after)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequestData("Last-Event-ID must be an event id given by this stream")
    return int(raw)
