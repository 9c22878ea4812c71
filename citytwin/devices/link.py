"""The gateway's MQTT side, run by the one process that holds the gateway lease.

It starts the embedded MQTT broker (unless `--mqtt` names an external one), subscribes to the
device topics with a persistent session (so the broker keeps QoS 1 messages while citytwin
restarts), acknowledges each QoS 1 message only once its reading is committed, and stops
reading when the gateway's queue is full (the broker then holds the flood).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import unquote, urlsplit

from citytwin.devices.gateway import Gateway
from citytwin.devices.ingest import CommitFailed
from citytwin.mqtt.client import Endpoint, MqttClient
from citytwin.mqtt.codec import Message
from citytwin.mqtt.server import MqttServer
from citytwin.store.base import Store

log = logging.getLogger("citytwin.devices")
LEASE = "gateway"
LEASE_RETRY = 2.0
CLIENT_ID = "citytwin-gateway"
TOPICS = [
    f"{prefix}+/+/{suffix}"
    for prefix in ("/", "/json/", "", "json/")
    for suffix in ("attrs", "attrs/+", "cmdexe")
]


def endpoint(url: str) -> Endpoint:
    """mqtt://[user[:password]@]host[:port]"""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"{url!r} is not mqtt://host[:port]")
    return Endpoint(
        parts.hostname,
        parts.port or 1883,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


class DeviceLink:
    def __init__(self, gateway: Gateway, store: Store, mqtt: str, host: str, port: int) -> None:
        self.gateway = gateway
        self.store = store
        self.mqtt = mqtt  # "embedded", "off" or an mqtt:// URL
        self.host = host
        self.port = port
        self.server: MqttServer | None = None
        self.client: MqttClient | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self.gateway.commands.wake.set))
        if self.store.try_lease(LEASE):
            await self._begin()
        else:
            self.task = asyncio.create_task(self._await_lease())

    async def _await_lease(self) -> None:
        while not self.store.try_lease(LEASE):
            await asyncio.sleep(LEASE_RETRY)
        await self._begin()

    async def _begin(self) -> None:
        await self.gateway.commands.start()
        if self.mqtt == "off":
            return
        if self.mqtt == "embedded":
            self.server = MqttServer(self.host, self.port)
            try:
                port = await self.server.start()
            except OSError as exc:
                where = f"{self.host}:{self.port}"
                log.error("embedded MQTT broker not started on %s: %s", where, exc)
                self.server = None
                return
            target = Endpoint("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host, port)
        else:
            target = endpoint(self.mqtt)
        client = MqttClient(
            target, CLIENT_ID, self._received, clean=False, subscriptions=[(t, 1) for t in TOPICS]
        )
        self.client = client
        self.gateway.mqtt = client
        self.gateway.publish = lambda topic, data: client.publish(topic, data, qos=1)
        self.gateway.ingest.full_listeners.append(
            lambda full: client.pause() if full else client.resume()
        )
        await client.start()

    def _received(self, msg: Message) -> None:
        client = self.client
        assert client is not None

        def done(error: Exception | None) -> None:
            if isinstance(error, CommitFailed):  # not written: the broker sends it again
                if client.link is not None:
                    client.link.close()
                return
            client.ack(msg)

        self.gateway.message(msg.topic, msg.payload, done)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.gateway.ingest.flush()
        if self.client is not None:
            await self.client.stop()
        if self.server is not None:
            await self.server.stop()
