"""The device gateway over HTTP: the FIWARE IoT Agent provisioning API (/iot/services,
/iot/devices), the JSON southbound (/iot/json measurements, command polls and answers), and the
gateway's counters (/citytwin/v1/metrics).

`fiware-service` names the tenant (as NGSILD-Tenant does), `fiware-servicepath` the service
path (default "/"). Errors are ProblemDetails that also carry the IoT Agent's name and message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from citytwin import __version__
from citytwin.api.negotiation import read_body, tenant_of
from citytwin.api.state import state
from citytwin.devices import provision as p
from citytwin.devices.gateway import Dropped, Gateway
from citytwin.devices.registry import DEVICE, GROUP, device_key, group_key
from citytwin.errors import BadRequestData, NgsiError, ServiceUnavailable

JSON = "application/json"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type=JSON)


def _scope(request: Request) -> tuple[str, str]:
    """(tenant, service path) of a request."""
    service = request.headers.get("fiware-service")
    tenant = tenant_of(request) if service is None else service.lower()
    if service is not None and tenant and not tenant.replace("_", "").isalnum():
        raise p.wrong(f"invalid fiware-service {service!r}")
    path = request.headers.get("fiware-servicepath") or "/"
    if not path.startswith("/"):
        raise p.wrong("fiware-servicepath must start with '/'")
    return tenant, path


async def _body(request: Request) -> Any:
    settings = state(request).settings
    try:
        return (await read_body(request, settings.max_body_bytes, settings.max_json_depth)).data
    except NgsiError as exc:
        exc.extra.setdefault("name", "WRONG_SYNTAX")
        exc.extra.setdefault("message", exc.detail)
        raise


def _page(request: Request, items: list[dict[str, Any]], key: str) -> Response:
    try:
        limit = int(request.query_params.get("limit", "20"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise p.wrong("limit and offset must be integers") from None
    if limit < 1 or offset < 0:
        raise p.wrong("limit must be positive and offset not negative")
    return _json({"count": len(items), key: items[offset : offset + limit]})


def _shown(doc: dict[str, Any], tenant: str, path: str) -> dict[str, Any]:
    return {**doc, "service": tenant, "subservice": path}


def _gateway(request: Request) -> Gateway:
    return state(request).gateway


# -- service groups ------------------------------------------------------------------------------


async def list_groups(request: Request) -> Response:
    tenant, path = _scope(request)
    gateway = _gateway(request)
    await gateway.registry.refresh()
    docs = [
        _shown(doc, tenant, key.split("\x1f")[0])
        for key, doc in gateway.registry.groups(tenant, request.headers.get("fiware-servicepath"))
    ]
    return _page(request, docs, "services")


async def create_groups(request: Request) -> Response:
    tenant, path = _scope(request)
    groups = p.parse_groups(await _body(request))
    gateway = _gateway(request)
    for g in groups:  # the twin a device of the group would get must be valid
        gateway.twin_of(tenant, path, p.parse_device({"device_id": "check"}), g)
    keys = [group_key(path, g["resource"], g["apikey"]) for g in groups]
    if len(set(keys)) != len(keys):
        raise p.duplicate("DUPLICATE_GROUP", "the body provisions a group twice")
    items = [(tenant, k, g) for k, g in zip(keys, groups, strict=True)]
    if not await gateway.broker.store.provision(GROUP, items, create=True):
        raise p.duplicate("DUPLICATE_GROUP", "a group with this resource and apikey exists")
    await gateway.registry.load()
    return Response(status_code=201)


def _group_query(request: Request) -> tuple[str, str]:
    resource = request.query_params.get("resource")
    apikey = request.query_params.get("apikey")
    if not resource or not apikey:
        raise p.wrong("resource and apikey must be given as query parameters")
    return resource, apikey


async def _group(request: Request) -> tuple[str, str, dict[str, Any]]:
    tenant, path = _scope(request)
    key = group_key(path, *_group_query(request))
    gateway = _gateway(request)
    await gateway.registry.refresh()
    doc = gateway.registry.maps.groups.get((tenant, key))
    if doc is None:
        raise p.not_found("DEVICE_GROUP_NOT_FOUND", "no group has this resource and apikey")
    return tenant, key, doc


async def update_group(request: Request) -> Response:
    tenant, key, doc = await _group(request)
    new = p.updated(doc, await _body(request), p.parse_group, ("apikey", "resource"))
    gateway = _gateway(request)
    gateway.twin_of(tenant, key.split("\x1f")[0], p.parse_device({"device_id": "check"}), new)
    await gateway.broker.store.provision(GROUP, [(tenant, key, new)], create=False)
    await gateway.registry.load()
    return Response(status_code=204)


async def delete_group(request: Request) -> Response:
    tenant, key, _ = await _group(request)
    gateway = _gateway(request)
    await gateway.broker.store.unprovision(GROUP, tenant, [key])
    await gateway.registry.load()
    return Response(status_code=204)


# -- devices -------------------------------------------------------------------------------------


async def list_devices(request: Request) -> Response:
    tenant, _ = _scope(request)
    gateway = _gateway(request)
    await gateway.registry.refresh()
    listed = gateway.registry.devices(tenant, request.headers.get("fiware-servicepath"))
    docs = [_shown(doc, tenant, key.split("\x1f")[0]) for key, doc in listed]
    return _page(request, docs, "devices")


async def create_devices(request: Request) -> Response:
    tenant, path = _scope(request)
    devices = p.parse_devices(await _body(request))
    if not await _gateway(request).provision(tenant, path, devices):
        raise p.duplicate("DUPLICATE_DEVICE_ID", "a device with this device_id exists")
    return Response(status_code=201)


async def _device(request: Request) -> tuple[str, str, str, dict[str, Any]]:
    tenant, path = _scope(request)
    device_id = request.path_params["device_id"]
    gateway = _gateway(request)
    await gateway.registry.refresh()
    key = device_key(path, device_id)
    doc = gateway.registry.maps.devices.get((tenant, key))
    if doc is None:
        raise p.not_found("DEVICE_NOT_FOUND", f"device {device_id} is not provisioned")
    return tenant, path, key, doc


async def retrieve_device(request: Request) -> Response:
    tenant, path, _, doc = await _device(request)
    return _json(_shown(doc, tenant, path))


async def update_device(request: Request) -> Response:
    tenant, path, key, doc = await _device(request)
    new = p.updated(doc, await _body(request), p.parse_device, ("device_id",))
    gateway = _gateway(request)
    await gateway.reprovision(tenant, path, key, new)
    return Response(status_code=204)


async def delete_device(request: Request) -> Response:
    tenant, _, key, _ = await _device(request)
    gateway = _gateway(request)
    await gateway.broker.store.unprovision(DEVICE, tenant, [key])
    await gateway.registry.load()
    return Response(status_code=204)


# -- the JSON southbound -------------------------------------------------------------------------


async def _sender(request: Request) -> Any:
    apikey, device_id = request.query_params.get("k"), request.query_params.get("i")
    if not apikey or not device_id:
        raise p.wrong("the apikey (k) and the device id (i) must be given as query parameters")
    gateway = _gateway(request)
    try:
        return await gateway.device(apikey, device_id, "HTTP")
    except Dropped as exc:
        gateway.drop(exc, "/iot/json")
        raise p.not_found("DEVICE_GROUP_NOT_FOUND", str(exc)) from None


async def measure(request: Request) -> Response:
    """POST /iot/json?k=&i=: measurements; with getCmd=1 the answer holds pending commands."""
    gateway = _gateway(request)
    gateway.metrics["received"] += 1
    device = await _sender(request)
    try:
        payload = await _body(request)
        done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        reading = gateway.reading(device, payload, lambda e: done.done() or done.set_result(e))
    except Dropped as exc:
        gateway.drop(exc, "/iot/json")
        raise BadRequestData(str(exc), name="BAD_REQUEST", message=str(exc)) from None
    if not gateway.ingest.offer(reading):
        raise ServiceUnavailable("the gateway's queue is full; try again", retry_after="1")
    error = await done
    if error is not None:
        raise error if isinstance(error, NgsiError) else ServiceUnavailable(str(error))
    return await _commands_reply(request, device)


async def poll(request: Request) -> Response:
    """GET /iot/json?k=&i=&getCmd=1: the device's pending commands."""
    return await _commands_reply(request, await _sender(request))


async def _commands_reply(request: Request, device: Any) -> Response:
    if request.query_params.get("getCmd") not in ("1", "true"):
        return Response(status_code=200)
    return _json(await _gateway(request).commands.polled(device))


async def command_answer(request: Request) -> Response:
    """POST /iot/json/commands?k=&i=: a polling device's answers {"<command>": result}."""
    device = await _sender(request)
    body = await _body(request)
    if not isinstance(body, dict) or not body:
        raise p.wrong('the body must be {"<command>": result}')
    await _gateway(request).commands.answered(device, body)
    return Response(status_code=200)


async def about(request: Request) -> Response:
    return _json({"libVersion": __version__, "version": f"citytwin {__version__}", "port": 0})


async def metrics(request: Request) -> Response:
    gateway = _gateway(request)
    counters = dict(sorted(gateway.metrics.items()))
    linked = gateway.mqtt is not None and gateway.mqtt.connected.is_set()
    return _json({"gateway": {**counters, "queued": len(gateway.ingest.queue), "mqtt": linked}})
