"""create_app(settings) -> the Starlette application; the lifespan opens and closes the store."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from citytwin.api.routes import routes
from citytwin.api.state import AppState
from citytwin.broker import Broker
from citytwin.contexts import ContextResolver
from citytwin.devices.gateway import Gateway
from citytwin.devices.link import DeviceLink
from citytwin.errors import InternalError, NgsiError, ResourceNotFound, StoreUnavailable
from citytwin.notify.notifier import Notifier
from citytwin.notify.stream import Feed
from citytwin.settings import Settings
from citytwin.store import is_outage, open_store, outages
from citytwin.timeline import Timeline, retain

log = logging.getLogger("citytwin")


_HEADERS = {"allow": "Allow", "retry_after": "Retry-After"}  # error extras sent as headers


def problem_response(exc: NgsiError) -> Response:
    """The one place an error becomes a response: ProblemDetails (6.3.2)."""
    headers = {h: exc.extra[k] for k, h in _HEADERS.items() if k in exc.extra} or None
    body = {k: v for k, v in exc.problem().items() if k not in _HEADERS}
    return Response(orjson.dumps(body), exc.status, headers, media_type="application/json")


async def _ngsi_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NgsiError)
    return problem_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return problem_response(ResourceNotFound(f"no resource at {request.url.path}"))
    error = NgsiError(exc.detail)
    error.status = exc.status_code
    return problem_response(error)


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(InternalError(f"{type(exc).__name__}: {exc}"))


async def _outage(request: Request, exc: Exception) -> Response:
    """The database went away: 503 (try again), or a 500 for what only looks like it."""
    if not is_outage(exc):
        return await _crash(request, exc)
    log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
    response = problem_response(StoreUnavailable(f"{type(exc).__name__}: {exc}"))
    response.headers["Retry-After"] = "1"
    return response


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.database, settings.read_replica)
        await store.open()
        resolver = ContextResolver(settings.base_url, settings.context_timeout)
        broker = Broker(store)
        feed = Feed()
        notifier = Notifier(store, resolver, feed)
        await notifier.start()
        broker.subscriptions_changed = notifier.reload
        broker.delivery_status = notifier.delivery_status
        timeline = Timeline(broker, settings.temporal_limit)
        gateway = Gateway(broker, resolver.core, settings.gateway_queue, settings.command_timeout)
        await gateway.start()
        link = DeviceLink(gateway, store, settings.mqtt, settings.mqtt_host, settings.mqtt_port)
        await link.start()
        app.state.citytwin = AppState(broker, resolver, settings, feed, timeline, gateway)
        retention = asyncio.create_task(retain(store, settings.history_days))
        polling = asyncio.create_task(feed.poll(store))
        try:
            yield
        finally:
            retention.cancel()
            polling.cancel()
            await link.stop()
            await gateway.stop()
            await notifier.stop()
            await resolver.close()
            await store.close()

    return Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={
            NgsiError: _ngsi_error,
            HTTPException: _http_error,
            Exception: _crash,
            **dict.fromkeys(outages(), _outage),
        },
    )


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings come from CITYTWIN_* variables."""
    _tune_gc()
    return create_app(Settings.from_env())


def _tune_gc() -> None:
    """A server process: what is loaded by now lives as long as the process, so the collector
    stops walking it (freeze); and since every request makes and drops many thousands of
    dicts (few in reference cycles), it collects every 50,000 allocations instead of every
    700 (measured: a tenth of the time of a batch update went to the collector); the oldest
    generation still every 10 million (seconds at full load), so cycles do not pile up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)
