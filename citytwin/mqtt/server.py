"""An embedded MQTT 3.1.1 broker, so that `citytwin serve` needs no other service.

What devices and the gateway use: QoS 0, 1 and 2 in (2 delivered as 1), QoS 0 and 1 out,
wildcards, retained messages, will messages, keep-alive, and sessions that persist (their
subscriptions and up to `max_queued` QoS 1 messages) while a client with clean session 0 is
away. No authentication: it listens on loopback unless told otherwise. For production use a
full broker (mosquitto, EMQX) with `--mqtt`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from citytwin.mqtt.codec import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP_PACKET,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Message,
    ProtocolError,
    decode_connect,
    decode_mid,
    decode_publish,
    decode_subscribe,
    decode_unsubscribe,
    encode_ack,
    encode_connack,
    encode_publish,
    encode_suback,
    matches,
    valid_filter,
    valid_topic,
)
from citytwin.mqtt.peer import Peer

log = logging.getLogger("citytwin.mqtt")
CONNECT_WAIT = 10.0  # seconds a new connection has to send CONNECT
MAX_INFLIGHT = 20_000  # QoS 1 messages sent to one client and not yet acknowledged


@dataclass
class Session:
    client_id: str
    clean: bool
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    inflight: dict[int, Message] = field(default_factory=dict)  # sent QoS 1, not acknowledged
    queued: deque[Message] = field(default_factory=deque)  # waiting while offline or blocked
    mids: itertools.cycle[int] = field(default_factory=lambda: itertools.cycle(range(1, 65536)))
    conn: _Conn | None = None


class _Conn(Peer):
    def __init__(self, server: MqttServer) -> None:
        super().__init__(server.max_packet)
        self.server = server
        self.session: Session | None = None
        self.will: Message | None = None
        self.keepalive = 0
        self.seen = time.monotonic()
        self.blocked = False
        self.qos2: set[int] = set()  # QoS 2 ids received, PUBREL not yet

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.conns.add(self)

    def data_received(self, data: bytes) -> None:
        self.seen = time.monotonic()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.discard(self)
        session = self.session
        if session is None or session.conn is not self:
            return
        session.conn = None
        if self.will is not None:
            self.server.route(self.will)
        if session.clean:  # a clean session ends with its connection, subscriptions and all
            self.server.unsubscribe(session, list(session.subscriptions))
            self.server.sessions.pop(session.client_id, None)

    def pause_writing(self) -> None:
        self.blocked = True

    def resume_writing(self) -> None:
        self.blocked = False
        if self.session is not None:
            self.server.drain(self.session)

    def name(self) -> str:
        return self.session.client_id if self.session else "(connecting)"

    def packet(self, kind: int, flags: int, body: bytes) -> None:
        if self.session is None:
            if kind != CONNECT:
                raise ProtocolError("the first packet must be CONNECT")  # 3.1
            self._connect(body)
            return
        if kind == PUBLISH:
            self._publish(decode_publish(flags, body))
        elif kind == PUBACK:
            self.session.inflight.pop(decode_mid(body), None)
            self.server.drain(self.session)
        elif kind == PUBREL:
            mid = decode_mid(body)
            self.qos2.discard(mid)
            self.write(encode_ack(PUBCOMP, mid))
        elif kind == SUBSCRIBE:
            self._subscribe(body)
        elif kind == UNSUBSCRIBE:
            mid, filters = decode_unsubscribe(body)
            self.server.unsubscribe(self.session, filters)
            self.write(encode_ack(UNSUBACK, mid))
        elif kind == PINGREQ:
            self.write(PINGRESP_PACKET)
        elif kind == DISCONNECT:
            self.will = None  # a clean disconnect sends no will (3.14.4)
            self.close()
        elif kind in (PUBREC, PUBCOMP):
            pass  # the server sends QoS 2 as QoS 1: nothing of its own to complete
        else:
            raise ProtocolError(f"unexpected packet type {kind}")

    def _connect(self, body: bytes) -> None:
        hello = decode_connect(body)
        if hello.level not in (3, 4):
            self.write(encode_connack(False, 1))  # unacceptable protocol version
            self.close()
            return
        if not hello.client_id and not hello.clean:
            self.write(encode_connack(False, 2))  # identifier rejected (3.1.3.1)
            self.close()
            return
        client_id = hello.client_id or f"auto-{uuid.uuid4().hex}"
        self.keepalive = hello.keepalive
        self.will = hello.will
        session, present = self.server.attach(client_id, hello.clean, self)
        self.session = session
        self.write(encode_connack(present, 0))
        self.server.resume(session)

    def _publish(self, msg: Message) -> None:
        if not valid_topic(msg.topic):
            raise ProtocolError(f"cannot publish to {msg.topic!r}")
        if msg.qos == 2:
            if msg.mid not in self.qos2:  # a resent QoS 2 message is delivered once
                self.qos2.add(msg.mid)
                self.server.route(msg)
            self.write(encode_ack(PUBREC, msg.mid))
            return
        self.server.route(msg)
        if msg.qos == 1:
            self.write(encode_ack(PUBACK, msg.mid))

    def _subscribe(self, body: bytes) -> None:
        assert self.session is not None
        mid, filters = decode_subscribe(body)
        codes = []
        for topic_filter, qos in filters:
            shared = _shared(topic_filter)
            if topic_filter.startswith("$share/") and (shared is None or "+" in shared[0]):
                codes.append(0x80)
            elif valid_filter(topic_filter):
                granted = min(qos, 1)
                self.server.subscribe(self.session, topic_filter, granted)
                codes.append(granted)
            else:
                codes.append(0x80)
        self.write(encode_suback(mid, codes))
        for topic_filter, _ in filters:
            self.server.send_retained(self.session, topic_filter)


class MqttServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        max_queued: int = 100_000,
        max_packet: int = 1024 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self.max_queued = max_queued
        self.max_packet = max_packet
        self.sessions: dict[str, Session] = {}
        self.exact: dict[str, dict[str, int]] = {}  # topic -> client id -> QoS
        self.wild: dict[str, tuple[list[str], dict[str, int]]] = {}  # filter -> levels, clients
        self.shared: dict[tuple[str, str], tuple[list[str], dict[str, int]]] = {}
        self.turn = 0
        self.retained: dict[str, Message] = {}
        self.conns: set[_Conn] = set()
        self.server: asyncio.Server | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> int:
        """Listen; returns the port (given 0, the one the system chose)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.sweeper = asyncio.create_task(self._sweep())
        return self.port

    async def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        if self.server is not None:
            self.server.close()
            for conn in list(self.conns):
                conn.close()
            await self.server.wait_closed()

    async def _sweep(self) -> None:
        """Close connections silent for 1.5 keep-alive periods (3.1.2.10) or never CONNECTed."""
        while True:
            await asyncio.sleep(1)
            moment = time.monotonic()
            for conn in list(self.conns):
                limit = conn.keepalive * 1.5 if conn.session else CONNECT_WAIT
                if limit and moment - conn.seen > limit:
                    conn.close()

    # -- sessions --------------------------------------------------------------------------------

    def attach(self, client_id: str, clean: bool, conn: _Conn) -> tuple[Session, bool]:
        old = self.sessions.get(client_id)
        if old is not None and old.conn is not None:
            old.conn.session = None  # its close must not end the session taken over
            old.conn.close()
        if old is not None and (clean or old.clean):
            self.unsubscribe(old, list(old.subscriptions))
            old = None
        present = old is not None
        session = old or Session(client_id, clean)
        session.clean = clean
        session.conn = conn
        self.sessions[client_id] = session
        return session, present

    def resume(self, session: Session) -> None:
        """Send again what a returning session had in flight (with DUP), then its queue."""
        conn = session.conn
        assert conn is not None
        for mid, msg in session.inflight.items():
            conn.write(encode_publish(Message(msg.topic, msg.payload, 1, False, mid, True)))
        self.drain(session)

    def subscribe(self, session: Session, topic_filter: str, qos: int) -> None:
        session.subscriptions[topic_filter] = qos
        shared = _shared(topic_filter)
        if shared is not None:
            entry = self.shared.setdefault(shared, (shared[1].split("/"), {}))
            entry[1][session.client_id] = qos
        elif "+" in topic_filter or "#" in topic_filter:
            entry = self.wild.setdefault(topic_filter, (topic_filter.split("/"), {}))
            entry[1][session.client_id] = qos
        else:
            self.exact.setdefault(topic_filter, {})[session.client_id] = qos

    def unsubscribe(self, session: Session, filters: list[str]) -> None:
        for topic_filter in filters:
            session.subscriptions.pop(topic_filter, None)
            shared = _shared(topic_filter)
            if shared is not None and shared in self.shared:
                self.shared[shared][1].pop(session.client_id, None)
                if not self.shared[shared][1]:
                    del self.shared[shared]
            self.exact.get(topic_filter, {}).pop(session.client_id, None)
            entry = self.wild.get(topic_filter)
            if entry is not None:
                entry[1].pop(session.client_id, None)
                if not entry[1]:
                    del self.wild[topic_filter]

    # -- routing ---------------------------------------------------------------------------------

    def route(self, msg: Message) -> None:
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg
            else:
                self.retained.pop(msg.topic, None)  # an empty retained message clears it
        targets = dict(self.exact.get(msg.topic, {}))
        if self.wild or self.shared:
            levels = msg.topic.split("/")
            for filter_levels, clients in self.wild.values():
                if matches(filter_levels, levels):
                    for client_id, qos in clients.items():
                        targets[client_id] = max(qos, targets.get(client_id, 0))
            for filter_levels, members in self.shared.values():
                if matches(filter_levels, levels):
                    client_id = self._member(members)
                    targets[client_id] = max(members[client_id], targets.get(client_id, 0))
        for client_id, qos in targets.items():
            session = self.sessions.get(client_id)
            if session is not None:
                self.deliver(session, msg, min(qos, msg.qos), False)

    def _member(self, members: dict[str, int]) -> str:
        """The member of a shared subscription that gets the next message: the connected
        ones in turn (a persistent member that is away only when none is connected)."""
        self.turn += 1
        ids = list(members)
        connected = [i for i in ids if (s := self.sessions.get(i)) is not None and s.conn]
        pool = connected or ids
        return pool[self.turn % len(pool)]

    def send_retained(self, session: Session, topic_filter: str) -> None:
        if _shared(topic_filter) is not None:
            return  # shared subscriptions get no retained messages (MQTT 5, 4.8.2)
        levels = topic_filter.split("/")
        qos = session.subscriptions.get(topic_filter, 0)
        for topic, msg in self.retained.items():
            if matches(levels, topic.split("/")):
                self.deliver(session, msg, min(qos, msg.qos), True)

    def deliver(self, session: Session, msg: Message, qos: int, retain: bool) -> None:
        conn = session.conn
        if qos == 0:
            if conn is not None and not conn.blocked:
                conn.write(encode_publish(Message(msg.topic, msg.payload, 0, retain)))
            else:
                self.dropped += 1  # QoS 0 to a client that cannot take it now: dropped
            return
        out = Message(msg.topic, msg.payload, 1, retain)
        if len(session.queued) >= self.max_queued:
            self.dropped += 1
            return
        session.queued.append(out)
        if conn is not None and not conn.blocked:
            self.drain(session)

    def drain(self, session: Session) -> None:
        """Send queued QoS 1 messages while the connection takes them."""
        conn = session.conn
        while (
            session.queued
            and conn is not None
            and not conn.blocked
            and len(session.inflight) < MAX_INFLIGHT
        ):
            msg = session.queued.popleft()
            mid = next(session.mids)
            while mid in session.inflight:
                mid = next(session.mids)
            session.inflight[mid] = msg
            conn.write(encode_publish(Message(msg.topic, msg.payload, 1, msg.retain, mid)))


def _shared(topic_filter: str) -> tuple[str, str] | None:
    """(group, filter) of a shared subscription, $share/{group}/{filter} (as in MQTT 5, 4.8.2,
    which mosquitto and EMQX also accept from MQTT 3.1.1 clients)."""
    if not topic_filter.startswith("$share/"):
        return None
    _, group, rest = topic_filter.split("/", 2) if topic_filter.count("/") >= 2 else ("", "", "")
    return (group, rest) if group and rest else None
