"""An MQTT 3.1.1 client on asyncio.Protocol: reconnects by itself, subscribes again after each
connect, and leaves acknowledging a received QoS 1 or 2 message to the application, so that a
message is acknowledged only once the application is done with it (ack after commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from citytwin.mqtt.codec import (
    CONNACK,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    Connect,
    Message,
    ProtocolError,
    decode_mid,
    decode_publish,
    encode_ack,
    encode_connect,
    encode_publish,
    encode_subscribe,
)
from citytwin.mqtt.peer import Peer

log = logging.getLogger("citytwin.mqtt")
CONNECT_TIMEOUT = 10.0
BACKOFF = (0.2, 10.0)  # first and longest wait between connection attempts


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = None


class _Link(Peer):
    """One TCP connection to the broker."""

    def __init__(self, client: MqttClient) -> None:
        super().__init__()
        self.client = client
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.writable = asyncio.Event()
        self.writable.set()
        self.pong = True

    def packet(self, kind: int, flags: int, body: bytes) -> None:
        self.client._packet(self, kind, flags, body)

    def name(self) -> str:
        return f"broker {self.client.endpoint.host}:{self.client.endpoint.port}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.writable.set()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


Ack = Callable[[], None]


def _no_ack() -> None:
    pass


class MqttClient:
    """`on_message(message, ack)` is called for every message received; for QoS 1 and 2, `ack`
    acknowledges it on the connection it came in on (after a reconnect the broker sends again
    what was not acknowledged, under new packet ids, so an old ack must not reach the new
    connection)."""

    def __init__(
        self,
        endpoint: Endpoint,
        client_id: str,
        on_message: Callable[[Message, Ack], None] = lambda m, a: None,
        *,
        clean: bool = True,
        keepalive: int = 30,
        subscriptions: list[tuple[str, int]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.on_message = on_message
        self.clean = clean
        self.keepalive = keepalive
        self.subscriptions = subscriptions or []
        self.link: _Link | None = None
        self.connected = asyncio.Event()
        self.mids = itertools.cycle(range(1, 65536))
        self.waiting: dict[int, asyncio.Future[None]] = {}  # outgoing QoS 1 mid -> PUBACK
        self.task: asyncio.Task[None] | None = None
        self.failures = 0
        self.paused = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, wait: float | None = None) -> None:
        """Connect in the background; with `wait`, until connected (TimeoutError otherwise)."""
        self.task = asyncio.create_task(self._run())
        if wait is not None:
            await asyncio.wait_for(self.connected.wait(), wait)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.link is not None:
            self.link.write(b"\xe0\x00")  # DISCONNECT: no will message
            self.link.close()

    async def _run(self) -> None:
        delay = BACKOFF[0]
        while True:
            try:
                await self._session()
                delay = BACKOFF[0]
            except (OSError, ProtocolError, TimeoutError) as exc:
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.warning("MQTT %s:%s: %s", self.endpoint.host, self.endpoint.port, exc)
            except Exception:  # a bug must not end the connection for good
                log.exception("MQTT connection to %s failed", self.endpoint.host)
            finally:
                self._lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        _, link = await asyncio.wait_for(
            loop.create_connection(lambda: _Link(self), ep.host, ep.port), CONNECT_TIMEOUT
        )
        try:
            password = ep.password.encode() if ep.password is not None else None
            hello = Connect(self.client_id, self.clean, self.keepalive, 4, ep.username, password)
            link.write(encode_connect(hello))
            code = await asyncio.wait_for(link.connack, CONNECT_TIMEOUT)
            if code != 0:
                raise ProtocolError(f"connection refused (CONNACK return code {code})")
            if self.subscriptions:
                link.write(encode_subscribe(next(self.mids), self.subscriptions))
            if self.paused and link.transport is not None:
                link.transport.pause_reading()  # still held back: the new link too
            self.link = link
            self.failures = 0
            self.connected.set()
            pinger = asyncio.create_task(self._ping(link))
            try:
                await link.closed
            finally:
                pinger.cancel()
        finally:
            link.close()

    def _lost(self) -> None:
        self.connected.clear()
        self.link = None
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("connection to the MQTT broker lost"))
        self.waiting.clear()

    async def _ping(self, link: _Link) -> None:
        while True:
            await asyncio.sleep(self.keepalive / 2)
            if self.paused:  # not reading: the answer cannot be seen, and data is waiting
                continue
            if not link.pong:
                log.warning("MQTT broker stopped answering; reconnecting")
                link.close()
                return
            link.pong = False
            link.write(PINGREQ_PACKET)

    # -- incoming --------------------------------------------------------------------------------

    def _packet(self, link: _Link, kind: int, flags: int, body: bytes) -> None:
        if kind == PUBLISH:
            msg = decode_publish(flags, body)
            self.on_message(msg, self._acker(link, msg) if msg.qos else _no_ack)
        elif kind == PUBACK:
            future = self.waiting.pop(decode_mid(body), None)
            if future is not None and not future.done():
                future.set_result(None)
        elif kind == PUBREL:
            link.write(encode_ack(PUBCOMP, decode_mid(body)))
        elif kind == CONNACK:
            if len(body) != 2:
                raise ProtocolError("malformed CONNACK")
            if not link.connack.done():
                link.connack.set_result(body[1])
        elif kind == PINGRESP:
            link.pong = True
        elif kind == SUBACK and b"\x80" in body[2:]:
            log.warning("MQTT broker refused a subscription of %s", self.client_id)

    @staticmethod
    def _acker(link: _Link, msg: Message) -> Ack:
        """PUBACK (QoS 1) or PUBREC (QoS 2) on the link the message came on, once."""
        packet = encode_ack(PUBACK if msg.qos == 1 else PUBREC, msg.mid)
        return lambda: link.write(packet)  # a closed link writes nothing

    def pause(self) -> None:
        """Stop reading: the broker holds further messages (backpressure)."""
        self.paused = True
        if self.link is not None and self.link.transport is not None:
            self.link.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        if self.link is not None and self.link.transport is not None:
            self.link.transport.resume_reading()

    # -- outgoing --------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Send a message; QoS 1 returns once the broker acknowledged it. ConnectionError if
        there is no connection."""
        link = self.link
        if link is None:
            raise ConnectionError("not connected to the MQTT broker")
        if not link.writable.is_set():
            await link.writable.wait()
        if qos == 0:
            link.write(encode_publish(Message(topic, payload, 0, retain)))
            return
        mid = next(self.mids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[mid] = future
        link.write(encode_publish(Message(topic, payload, 1, retain, mid)))
        await future

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        """QoS 0 without waiting for the socket to drain; False if not connected."""
        if self.link is None:
            return False
        self.link.write(encode_publish(Message(topic, payload)))
        return True
