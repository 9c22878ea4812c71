"""Delivery to endpoints: a few lanes per endpoint, each a queue and one worker, retries with
backoff.

A subscription always goes by the same lane of its endpoint, so its notifications arrive in
order; the subscriptions sharing an endpoint are spread over LANES lanes, so that one endpoint
(a city's data platform, say, subscribed to thousands of things) takes several notifications
at once. A slow or dead endpoint only holds up its own lanes. Every attempt's outcome is
reported, so the subscription's status fields stay true.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from citytwin.model.context import link_header
from citytwin.notify.mqtt import MqttLink

log = logging.getLogger("citytwin.notify")
BACKOFF = (0.2, 1.0, 3.0)  # seconds before the 2nd, 3rd and 4th attempt
LANES = 4  # per endpoint; a subscription's notifications keep to one (see the docstring)


@dataclass
class Delivery:
    """One notification for one endpoint, and the change it came from."""

    uri: str
    payload: dict[str, Any]
    headers: dict[str, str]
    seq: int
    key: tuple[str, str]  # (tenant, subscription id)
    notifier_info: dict[str, str] = field(default_factory=dict)
    attempts: int = field(default=0)


Report = Callable[[Delivery, bool, str], None]


class Deliverer:
    def __init__(self, report: Report, timeout: float = 5.0) -> None:
        self.report = report
        self.timeout = timeout
        self.queues: dict[str, asyncio.Queue[Delivery]] = {}
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.client: aiohttp.ClientSession | None = None
        self.mqtt: dict[str, MqttLink] = {}

    def submit(self, delivery: Delivery) -> None:
        name = f"{delivery.uri}#{lane(delivery.key)}"
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = asyncio.Queue()
            self.workers[name] = asyncio.create_task(self._work(queue))
        queue.put_nowait(delivery)

    async def close(self) -> None:
        for task in self.workers.values():
            task.cancel()
        await asyncio.gather(*self.workers.values(), return_exceptions=True)
        if self.client is not None:
            await self.client.close()
        for link in self.mqtt.values():
            await link.close()

    async def _work(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._attempts(delivery)
            except Exception:  # never let one notification stop the endpoint's worker
                log.exception("delivery to %s failed", delivery.uri)
            queue.task_done()

    async def _attempts(self, delivery: Delivery) -> None:
        for pause in (0.0, *BACKOFF):
            if pause:
                await asyncio.sleep(pause)
            delivery.attempts += 1
            ok, why = await self._send(delivery)
            self.report(delivery, ok, why)
            if ok:
                return

    async def _send(self, delivery: Delivery) -> tuple[bool, str]:
        if delivery.uri.startswith(("mqtt://", "mqtts://")):
            link = self.mqtt.get(delivery.uri)
            if link is None:
                link = self.mqtt[delivery.uri] = MqttLink(delivery.uri, delivery.notifier_info)
            return await link.publish(delivery.payload, delivery.headers)
        if self.client is None:  # aiohttp: a fraction of httpx's cost per request (profiled)
            self.client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = orjson.dumps(delivery.payload)
        try:
            async with self.client.post(delivery.uri, data=body, headers=delivery.headers) as got:
                await got.read()
                status = got.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        if status >= 300:
            return False, f"HTTP {status}"
        return True, ""


def lane(key: tuple[str, str]) -> int:
    """The lane of a subscription (tenant, id) at its endpoint."""
    tenant, sub_id = key
    return zlib.crc32(f"{tenant}\0{sub_id}".encode()) % LANES


def headers_for(params: dict[str, Any], context: Any, tenant: str) -> dict[str, str]:
    """Headers of a notification (5.8.6, 6.3.6): receiverInfo, media type, @context Link."""
    endpoint = params["endpoint"]
    headers = {info["key"]: info["value"] for info in endpoint.get("receiverInfo", [])}
    if endpoint.get("accept") == "application/ld+json":  # each entity carries the @context
        headers["Content-Type"] = "application/ld+json"
    else:
        headers["Content-Type"] = "application/json"
        if isinstance(context, str):
            headers["Link"] = link_header(context)
    if tenant:
        headers["NGSILD-Tenant"] = tenant
    return headers
