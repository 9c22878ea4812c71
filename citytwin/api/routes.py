"""The routes table: every NGSI-LD resource under /ngsi-ld/v1, collections with and without '/'."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.convertors import StringConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from citytwin.api import (
    batch,
    contexts,
    devices,
    discovery,
    entities,
    query,
    stream,
    subscriptions,
    temporal,
    web,
)
from citytwin.errors import MethodNotAllowed

BASE = "/ngsi-ld/v1"
Endpoint = Callable[[Request], Awaitable[Response]]
_ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Segment(StringConvertor):
    """A path segment that may be empty, so that /entities//attrs is a 400, not a 404."""

    regex = "[^/]*"


register_url_convertor("segment", _Segment())


def _collection(path: str, methods: dict[str, Endpoint]) -> list[BaseRoute]:
    """A collection answers both /path and /path/ (clients and the ETSI suite use both)."""
    return [_route(p, methods) for p in (path, path + "/")]


def _route(path: str, methods: dict[str, Endpoint], base: str = BASE) -> BaseRoute:
    allow = ", ".join(methods)

    async def dispatch(request: Request) -> Response:
        handler = methods.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not supported on {path}", allow=allow)
        return await handler(request)

    return Route(base + path, dispatch, methods=_ALL)


def routes() -> list[BaseRoute]:
    e = entities
    table = [
        *_collection(
            "/entities",
            {
                "POST": e.create_entity,
                "GET": query.query_entities,
                "DELETE": e.purge_entities,
                # PATCH and PUT here name an empty entity id: answered as bad input (400)
                "PATCH": e.merge_entity,
                "PUT": e.replace_entity,
            },
        ),
        _route(
            "/entities/{entity_id:segment}",
            {
                "GET": e.retrieve_entity,
                "DELETE": e.delete_entity,
                "PATCH": e.merge_entity,
                "PUT": e.replace_entity,
            },
        ),
        *_collection(
            "/entities/{entity_id:segment}/attrs", {"POST": e.append_attrs, "PATCH": e.update_attrs}
        ),
        _route(
            "/entities/{entity_id:segment}/attrs/{attr}",
            {"PATCH": e.partial_update, "PUT": e.replace_attr, "DELETE": e.delete_attr},
        ),
        *_collection(
            "/jsonldContexts", {"POST": contexts.add_context, "GET": contexts.list_contexts}
        ),
        _route(
            "/jsonldContexts/{context_id:path}",
            {"GET": contexts.serve_context, "DELETE": contexts.delete_context},
        ),
    ]
    table += [
        *_collection("/subscriptions", {"POST": subscriptions.create, "GET": subscriptions.query}),
        _route(
            "/subscriptions/{sub_id:path}",
            {
                "GET": subscriptions.retrieve,
                "PATCH": subscriptions.update,
                "DELETE": subscriptions.delete,
            },
        ),
        *_collection("/types", {"GET": discovery.types}),
        _route("/types/{type:path}", {"GET": discovery.entity_type}),
        *_collection("/attributes", {"GET": discovery.attributes}),
        _route("/attributes/{attr:path}", {"GET": discovery.attribute}),
    ]
    t = temporal
    table += [
        *_collection("/temporal/entities", {"POST": t.upsert, "GET": t.query}),
        _route("/temporal/entities/{entity_id:segment}", {"GET": t.retrieve, "DELETE": t.delete}),
        *_collection("/temporal/entities/{entity_id:segment}/attrs", {"POST": t.add_attrs}),
        _route(
            "/temporal/entities/{entity_id:segment}/attrs/{attr:segment}",
            {"DELETE": t.delete_attr},
        ),
        _route(
            "/temporal/entities/{entity_id:segment}/attrs/{attr:segment}/{instance_id:segment}",
            {"PATCH": t.modify_instance, "DELETE": t.delete_instance},
        ),
        *_collection("/temporal/entityOperations/query", {"POST": t.post_query}),
    ]
    table.append(Route("/citytwin/v1/stream", stream.stream, methods=["GET"]))
    table += _iot_routes()
    table += [
        Route("/", web.page, methods=["GET"]),
        Route("/map/{name}", web.own_file, methods=["GET"]),
        Route("/assets/{path:path}", web.asset, methods=["GET"]),
        Route("/citytwin/v1/basemap", web.basemap, methods=["GET"]),
    ]
    for op in batch.OPERATIONS:
        table += _collection(f"/entityOperations/{op}", {"POST": _batch(op)})
    table += _collection("/entityOperations/query", {"POST": query.post_query})
    return table


def _iot_routes() -> list[BaseRoute]:
    """The FIWARE IoT Agent API of the device gateway, at the paths IoT Agents use."""
    d = devices
    table = {
        "/iot/services": {
            "GET": d.list_groups,
            "POST": d.create_groups,
            "PUT": d.update_group,
            "DELETE": d.delete_group,
        },
        "/iot/devices": {"GET": d.list_devices, "POST": d.create_devices},
        "/iot/devices/{device_id}": {
            "GET": d.retrieve_device,
            "PUT": d.update_device,
            "DELETE": d.delete_device,
        },
        "/iot/json": {"POST": d.measure, "GET": d.poll},
        "/iot/json/commands": {"POST": d.command_answer},
        "/iot/about": {"GET": d.about},
        "/citytwin/v1/metrics": {"GET": d.metrics},
    }
    return [_route(path, methods, base="") for path, methods in table.items()]


def _batch(op: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await batch.batch(request, op)

    return endpoint
