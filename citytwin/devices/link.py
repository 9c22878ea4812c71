"""The gateway's MQTT side.

Every worker process takes a share of the device messages: it subscribes to the device topics
as a member of the shared subscription `$share/citytwin/...`, so the broker hands each message
to one worker, and the workers parse them in parallel. Each worker holds a numbered slot (a
lease), whose number names its MQTT session, so that a restarted worker resumes its persistent
session and the broker keeps its QoS 1 messages while it is away. A QoS 1 message is
acknowledged only once its reading is committed, and a worker stops reading while its queue
is full (the broker then holds the flood).

One worker, the holder of the gateway lease, also runs the command flow and, unless `--mqtt`
names an external broker, the embedded MQTT broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import unquote, urlsplit

from citytwin.devices.gateway import Gateway
from citytwin.devices.ingest import CommitFailed
from citytwin.mqtt.client import Ack, Endpoint, MqttClient
from citytwin.mqtt.codec import Message
from citytwin.mqtt.server import MqttServer
from citytwin.store.base import Store

log = logging.getLogger("citytwin.devices")
LEASE = "gateway"
SLOTS = 256  # worker slots: MQTT sessions citytwin-gateway-0 ... -255
LEASE_RETRY = 2.0
SHARE = "$share/citytwin/"
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
        self.slot: int | None = None  # the lease naming this worker's MQTT session
        self.leading = False
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.watch(lambda: loop.call_soon_threadsafe(self.gateway.commands.wake.set))
        if await self.store.try_lease(LEASE):
            await self._lead()
        if self.mqtt != "off":
            await self._connect()
        self.task = asyncio.create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        """Lead once the leader is gone. On PostgreSQL a lease can be lost (the store's
        connection broke and another process took it meanwhile): then stop leading, or go on
        under another slot."""
        while True:
            await asyncio.sleep(LEASE_RETRY)
            try:
                await self._check_leases()
            except Exception:  # the database may be unreachable for a while
                log.exception("gateway lease check failed")

    async def _check_leases(self) -> None:
        if self.leading and not await self.store.holds(LEASE):
            log.warning("gateway lease lost: another process runs the commands now")
            await self._unlead()
        if not self.leading and await self.store.try_lease(LEASE):
            await self._lead()
        elif self.leading and self.mqtt == "embedded" and self.server is None:
            await self._serve()  # the port was taken (an old leader still had it): again
        if self.slot is not None and not await self.store.holds(f"{LEASE}-{self.slot}"):
            await self._move()

    async def _lead(self) -> None:
        """The one worker's extra duties: commands, and the embedded broker."""
        self.leading = True
        await self.gateway.commands.start()
        if self.mqtt == "embedded":
            await self._serve()

    async def _serve(self) -> None:
        """Start the embedded broker; if its port is taken, the lease check tries again."""
        server = MqttServer(self.host, self.port)
        try:
            await server.start()
        except OSError as exc:
            log.error("embedded MQTT broker not started on %s:%s: %s", self.host, self.port, exc)
            return
        self.server = server

    async def _unlead(self) -> None:
        self.leading = False
        await self.gateway.commands.stop()
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def _connect(self) -> None:
        if self.mqtt == "embedded":  # the leading worker's; the others wait for it
            target = Endpoint("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host, self.port)
        else:
            target = endpoint(self.mqtt)
        self.slot = await self._free_slot()
        if self.slot is None:
            log.error("no gateway slot is free: this worker takes no MQTT messages")
            return
        client = MqttClient(
            target,
            f"citytwin-gateway-{self.slot}",
            self._received,
            clean=False,
            subscriptions=[(SHARE + t, 1) for t in TOPICS],
        )
        self.client = client
        self.gateway.mqtt = client
        self.gateway.publish = lambda topic, data: client.publish(topic, data, qos=1)
        self.gateway.ingest.full_listeners.append(
            lambda full: client.pause() if full else client.resume()
        )
        await client.start()

    async def _free_slot(self) -> int | None:
        for n in range(SLOTS):
            if await self.store.try_lease(f"{LEASE}-{n}"):
                return n
        return None

    async def _move(self) -> None:
        """This worker's slot was lost (another process has its MQTT session): go on under a
        free one."""
        client = self.client
        if client is None:  # (it never started)
            return
        self.slot = await self._free_slot()
        if self.slot is None:
            log.error("gateway slot lost, and no other is free: this worker takes no messages")
            await client.stop()
            return
        log.warning("gateway slot lost: going on as %d", self.slot)
        client.client_id = f"citytwin-gateway-{self.slot}"
        if client.link is not None:
            client.link.close()  # it connects again, under its new name

    def _received(self, msg: Message, ack: Ack) -> None:
        client = self.client
        assert client is not None

        def done(error: Exception | None) -> None:
            if isinstance(error, CommitFailed):  # not written: the broker sends it again
                if client.link is not None:
                    client.link.close()
                return
            ack()

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
