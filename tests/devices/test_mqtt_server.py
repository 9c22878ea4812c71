"""The embedded MQTT broker with paho-mqtt clients: sessions, wildcards, shared subscriptions."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator

import paho.mqtt.client as mqtt
import pytest

from citytwin.mqtt.server import MqttServer


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = MqttServer("127.0.0.1", 0)
    yield await server.start()
    await server.stop()


class Client:
    def __init__(self, port: int, client_id: str, clean: bool = True) -> None:
        self.got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id, clean_session=clean)
        self.paho.on_message = lambda c, u, m: self.got.put((m.topic, m.payload))
        self.port = port

    async def connect(self, *filters: str) -> Client:
        await asyncio.to_thread(self.paho.connect, "127.0.0.1", self.port)
        self.paho.loop_start()
        for f in filters:
            info = self.paho.subscribe(f, qos=1)
            assert info[0] == mqtt.MQTT_ERR_SUCCESS
        await asyncio.sleep(0.2)
        return self

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.paho.publish(topic, payload, qos=qos)
        await asyncio.to_thread(info.wait_for_publish, 5)

    async def received(self, wait: float = 0.5) -> list[tuple[str, bytes]]:
        await asyncio.sleep(wait)
        out = []
        while not self.got.empty():
            out.append(self.got.get())
        return out

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


async def test_wildcards_and_qos(port: int) -> None:
    sub = await Client(port, "sub").connect("/+/+/attrs", "city/#")
    pub = await Client(port, "pub").connect()
    for topic in ("/k/d/attrs", "/k/d/attrs/t", "city", "city/a/b", "other"):
        await pub.publish(topic, topic.encode())
    assert sorted(t for t, _ in await sub.received()) == ["/k/d/attrs", "city", "city/a/b"]
    sub.close()
    pub.close()


async def test_a_clean_session_ends_with_its_subscriptions(port: int) -> None:
    first = await Client(port, "a").connect("x/y", "w/#")
    first.close()
    await asyncio.sleep(0.2)
    again = await Client(port, "a").connect()
    pub = await Client(port, "pub").connect()
    await pub.publish("x/y", b"1")
    await pub.publish("w/z", b"2")
    assert await again.received() == []
    again.close()
    pub.close()


async def test_a_persistent_session_keeps_qos1_messages_while_away(port: int) -> None:
    away = await Client(port, "keeper", clean=False).connect("news/#")
    away.close()
    await asyncio.sleep(0.2)
    pub = await Client(port, "pub").connect()
    for n in range(5):
        await pub.publish(f"news/{n}", str(n).encode())
    back = await Client(port, "keeper", clean=False).connect()
    assert [p for _, p in await back.received()] == [b"0", b"1", b"2", b"3", b"4"]
    back.close()
    pub.close()


async def test_shared_subscription_hands_each_message_to_one_member(port: int) -> None:
    members = [await Client(port, f"m{n}").connect("$share/g/s/+") for n in range(2)]
    pub = await Client(port, "pub").connect()
    for n in range(10):
        await pub.publish(f"s/{n}", b"x")
    got = [await m.received(0.3) for m in members]
    assert sorted(t for g in got for t, _ in g) == sorted(f"s/{n}" for n in range(10))
    assert all(g for g in got)  # both took a share
    for c in [*members, pub]:
        c.close()


async def test_will_is_sent_when_a_client_vanishes(port: int) -> None:
    watcher = await Client(port, "watcher").connect("status/#")
    robot = Client(port, "robot")
    robot.paho.will_set("status/robot", b"offline", qos=1)
    await robot.connect()
    robot.paho.loop_stop()
    robot.paho.socket().close()  # no DISCONNECT: an abnormal end
    assert await watcher.received(1.0) == [("status/robot", b"offline")]
    watcher.close()
