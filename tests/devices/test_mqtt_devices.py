"""End to end: a device that uses paho-mqtt as a FIWARE JSON IoT Agent device does, against a
real mosquitto (and against citytwin's embedded broker): provisioning, measurements, commands
and their answers, all checked on the twin and its history."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.devices.test_provisioning import (
    NGSI,
    ROBOT,
    SERVICE,
    TENANT,
    group,
    robot,
    until,
)
from tests.mosquitto import mosquitto

APIKEY = "museum-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Device:
    """A paho-mqtt device: publishes measurements and answers, collects its commands."""

    def __init__(self, port: int, device_id: str = "guide-1") -> None:
        self.device_id = device_id
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id)
        self.client.on_message = lambda c, u, msg: self.commands.put(orjson.loads(msg.payload))
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"/{APIKEY}/{device_id}/cmd", qos=1)
        self.client.loop_start()

    async def ready(self) -> None:
        """Subscribed to its commands (a command sent before that is lost: QoS 1 keeps
        nothing for a subscription that does not exist yet). Off the event loop: the embedded
        broker runs on it."""
        assert await asyncio.to_thread(self.subscribed.wait, 10), "no SUBACK"

    async def measure(self, payload: Any, qos: int = 1, topic: str | None = None) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        topic = topic or f"/{APIKEY}/{self.device_id}/attrs"
        await self._publish(topic, data, qos)

    async def answer(self, result: dict[str, Any]) -> None:
        await self._publish(f"/{APIKEY}/{self.device_id}/cmdexe", orjson.dumps(result), 1)

    async def _publish(self, topic: str, data: bytes, qos: int) -> None:
        """Off the event loop: the embedded broker runs on it and must answer meanwhile."""
        await self.ready()
        info = self.client.publish(topic, data, qos=qos)
        await asyncio.to_thread(info.wait_for_publish, 5)
        assert info.is_published()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def device(port: int, device_id: str = "guide-1") -> Iterator[Device]:
    d = Device(port, device_id)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(params=["mosquitto", "embedded"])
async def broker_port(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[int]:
    if request.param == "mosquitto":
        with mosquitto(tmp_path) as port:
            yield port
    else:
        yield free_port()


@pytest.fixture
async def twin_app(
    broker_port: int, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    embedded = request.node.callspec.params["broker_port"] == "embedded"
    settings = Settings(
        database=str(tmp_path / "twin.db"),
        mqtt="embedded" if embedded else f"mqtt://127.0.0.1:{broker_port}",
        mqtt_port=broker_port,
        **getattr(request, "param", {}),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            await connected(app)
            yield c


async def connected(app: Any, timeout: float = 10) -> None:
    """Wait until the gateway's MQTT client is connected and subscribed."""
    gateway = app.state.citytwin.gateway
    deadline = asyncio.get_running_loop().time() + timeout
    while gateway.mqtt is None or not gateway.mqtt.connected.is_set():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the gateway did not connect to the MQTT broker")
        await asyncio.sleep(0.05)


async def provision(iot: httpx.AsyncClient) -> None:
    mqtt_robot = robot(transport="MQTT")
    mqtt_robot["devices"][0]["commands"].append({"name": "goTo"})
    assert (await iot.post("/iot/services", json=group(), headers=SERVICE)).status_code == 201
    assert (await iot.post("/iot/devices", json=mqtt_robot, headers=SERVICE)).status_code == 201


async def command(iot: httpx.AsyncClient, name: str, value: Any) -> None:
    body = {"type": "Property", "value": value}
    got = await iot.patch(f"{NGSI}/entities/{ROBOT}/attrs/{name}", json=body, headers=TENANT)
    assert got.status_code == 204, got.text


async def next_command(d: Device, timeout: float = 10) -> dict[str, Any]:
    return await asyncio.to_thread(d.commands.get, True, timeout)


async def test_a_fiware_device_end_to_end(twin_app: httpx.AsyncClient, broker_port: int) -> None:
    iot = twin_app
    await provision(iot)
    with device(broker_port) as d:
        await d.measure({"b": 91, "s": "idle", "l": "31.1865,121.5440"})  # observed now
        later = f"{datetime.now(UTC) + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"  # newer, so kept
        await d.measure({"b": "90.5", "TimeInstant": later})
        await d.measure(b"17", topic=f"/json/{APIKEY}/guide-1/attrs/n")  # one value, /json prefix
        body = await until(iot, "visitors", 17)
        assert body["battery"]["value"] == 90.5
        assert body["battery"]["observedAt"] == later
        assert body["location"]["value"]["coordinates"] == [121.544, 31.1865]
        assert body["model"]["value"] == "H1"

        await command(iot, "goTo", {"exhibit": "Spacecraft hall"})
        assert await next_command(d) == {"goTo": {"exhibit": "Spacecraft hall"}}
        await until(iot, "goTo_status", "PENDING")
        await d.answer({"goTo": "arrived"})
        body = await until(iot, "goTo_status", "OK")
        assert body["goTo_info"]["value"] == "arrived"

        await command(iot, "greet", "ni hao")
        assert await next_command(d) == {"greet": "ni hao"}
        await d.answer({"greet": {"error": "speaker broken"}})
        body = await until(iot, "greet_status", "ERROR")
        assert body["greet_info"]["value"] == {"error": "speaker broken"}

    params = {"attrs": "battery,goTo_status", "options": "temporalValues"}
    history = await iot.get(f"{NGSI}/temporal/entities/{ROBOT}", params=params, headers=TENANT)
    body = history.json()
    assert [v for v, _ in body["battery"]["values"]] == [91, 90.5]
    assert [v for v, _ in body["goTo_status"]["values"]] == ["PENDING", "OK"]


@pytest.mark.parametrize("twin_app", [{"command_timeout": 0.5}], indirect=True)
async def test_unanswered_command_expires(twin_app: httpx.AsyncClient, broker_port: int) -> None:
    iot = twin_app
    await provision(iot)
    with device(broker_port) as d:
        await d.ready()
        await command(iot, "goTo", "exit")
        assert await next_command(d) == {"goTo": "exit"}
        await until(iot, "goTo_status", "EXPIRED")
        await d.answer({"goTo": "late"})  # an answer after expiry is still recorded
        await until(iot, "goTo_status", "OK")


async def test_bad_messages_are_dropped_and_counted(
    twin_app: httpx.AsyncClient, broker_port: int
) -> None:
    iot = twin_app
    await provision(iot)
    with device(broker_port) as d, device(broker_port, "stranger") as s:
        await s.measure(b"not json at all", topic=f"/{APIKEY}/guide-1/attrs")
        await s.measure({"b": 1}, topic="/unknown-key/guide-1/attrs")
        await s.measure({"b": "flat"}, topic=f"/{APIKEY}/guide-1/attrs")
        await s.measure({"b": 1}, topic=f"/{APIKEY}/guide-1/bogus")
        await d.measure({"b": 33})
        await until(iot, "battery", 33)
    metrics = await counted(iot, "dropped.bad-value", "applied")  # two connections: any order
    assert metrics["dropped.not-json"] == 1
    assert metrics["dropped.unknown-apikey"] == 1
    assert metrics["dropped.bad-value"] == 1
    assert metrics["applied"] == 1


async def counted(iot: httpx.AsyncClient, *keys: str, timeout: float = 10) -> dict[str, Any]:
    """The gateway's metrics once every one of `keys` was counted."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        metrics = (await iot.get("/citytwin/v1/metrics")).json()["gateway"]
        if all(k in metrics for k in keys) or asyncio.get_running_loop().time() > deadline:
            return metrics
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("twin_app", [{"gateway_queue": 100}], indirect=True)
async def test_a_flood_at_qos1_loses_nothing(twin_app: httpx.AsyncClient, broker_port: int) -> None:
    """More readings than the gateway's queue holds: the broker holds the rest back."""
    iot = twin_app
    await provision(iot)
    count = 3000
    with device(broker_port) as d:
        for n in range(count):
            d.client.publish(f"/{APIKEY}/guide-1/attrs", orjson.dumps({"n": n}), qos=1)
        await until(iot, "visitors", count - 1, timeout=60)
    params = {"attrs": "visitors", "options": "temporalValues", "lastN": str(count + 10)}
    history = await iot.get(f"{NGSI}/temporal/entities/{ROBOT}", params=params, headers=TENANT)
    values = [v for v, _ in history.json()["visitors"]["values"]]
    assert sorted(values) == list(range(count))


@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
async def test_citytwin_serve_with_two_workers_links_a_device(
    broker: str, tmp_path: Path, database_url: str
) -> None:
    """The same device against a real `citytwin serve --workers 2` (uvicorn, uvloop): the two
    workers share the device messages, and every reading reaches the twin's history."""
    from tests.test_durability import Servers

    servers = Servers(database_url, tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(servers.kill_all)
        if broker == "mosquitto":
            port = stack.enter_context(mosquitto(tmp_path))
            url = await servers.start("--workers", "2", "--mqtt", f"mqtt://127.0.0.1:{port}")
        else:
            port = free_port()
            url = await servers.start("--workers", "2", "--mqtt-port", str(port))
        async with httpx.AsyncClient(base_url=url.removesuffix(NGSI)) as iot:
            await _linked(iot)
            await provision(iot)
            with device(port) as d:
                for n in range(200):  # two workers take them in any order: the device's
                    at = f"2026-11-30T08:00:{n // 4:02d}.{n % 4 * 25:02d}Z"  # times order them
                    await d.measure({"n": n, "b": 64, "TimeInstant": at})
                await until(iot, "visitors", 199)
                # the other worker may still be writing readings older than the newest
                assert await _history(iot, 200) == list(range(200))
                await command(iot, "goTo", "entrance")
                assert await next_command(d) == {"goTo": "entrance"}
                await d.answer({"goTo": "there"})
                body = await until(iot, "goTo_status", "OK")
                assert body["goTo_info"]["value"] == "there"


async def _history(iot: httpx.AsyncClient, count: int, timeout: float = 10) -> list[int]:
    """The robot's visitor readings in its history, sorted, once there are `count` of them
    (or what there is when the timeout passes)."""
    params = {"attrs": "visitors", "options": "temporalValues", "lastN": "500"}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await iot.get(f"{NGSI}/temporal/entities/{ROBOT}", params=params, headers=TENANT)
        values = sorted(v for v, _ in got.json()["visitors"]["values"])
        if len(values) >= count or asyncio.get_running_loop().time() > deadline:
            return values
        await asyncio.sleep(0.05)


async def _linked(iot: httpx.AsyncClient, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (await iot.get("/citytwin/v1/metrics")).json()["gateway"]["mqtt"]:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the server's gateway did not connect to its MQTT broker")
        await asyncio.sleep(0.05)
