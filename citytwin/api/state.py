"""What every handler needs from the application: broker, contexts, settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from citytwin.api.negotiation import Body, item_context, link_context, read_body, tenant_of
from citytwin.broker import Broker
from citytwin.contexts import ContextResolver
from citytwin.devices.gateway import Gateway
from citytwin.errors import InvalidRequest
from citytwin.model.context import Context
from citytwin.notify.stream import Feed
from citytwin.settings import Settings
from citytwin.timeline import Timeline


@dataclass
class AppState:
    broker: Broker
    contexts: ContextResolver
    settings: Settings
    feed: Feed
    timeline: Timeline
    gateway: Gateway


def state(request: Request) -> AppState:
    return request.app.state.citytwin


async def request_context(request: Request, body: Body | None = None) -> Context:
    """The processed @context of a request: from its body, else its Link header, else core."""
    source: Any = item_context(body, body.data) if body is not None else link_context(request)
    return await state(request).contexts.resolve(source)


async def body_and_context(
    request: Request, merge: bool = False, entity: bool = False
) -> tuple[Body, Context]:
    """The parsed body and its @context; entity=True wants a whole entity (a non-empty object)."""
    settings = state(request).settings
    body = await read_body(request, settings.max_body_bytes, settings.max_json_depth, merge)
    if entity and (not isinstance(body.data, dict) or not body.data):
        raise InvalidRequest("the body must be an entity: a non-empty JSON object")
    return body, await request_context(request, body)


__all__ = ["AppState", "body_and_context", "request_context", "state", "tenant_of"]
