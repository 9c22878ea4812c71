"""Notifications to mqtt:// endpoints, through a real mosquitto broker on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson

from tests.mosquitto import mosquitto


def subscription(port: int, qos: str) -> dict[str, Any]:
    return {
        "id": "urn:ngsi-ld:Subscription:mqtt",
        "type": "Subscription",
        "entities": [{"type": "Robot"}],
        "notification": {
            "endpoint": {
                "uri": f"mqtt://127.0.0.1:{port}/citytwin/robots",
                "receiverInfo": [{"key": "fleet", "value": "pudong"}],
                "notifierInfo": [{"key": "MQTT-QoS", "value": qos}],
            }
        },
    }


async def test_notification_published_to_topic(client: httpx.AsyncClient, tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        async with aiomqtt.Client("127.0.0.1", port) as listener:
            await listener.subscribe("citytwin/robots", qos=1)
            assert (
                await client.post("/subscriptions", json=subscription(port, "1"))
            ).status_code == 201
            robot = {"id": "urn:ngsi-ld:Robot:7", "type": "Robot",
                     "battery": {"type": "Property", "value": 0.4}}  # fmt: skip
            assert (await client.post("/entities", json=robot)).status_code == 201
            message = await asyncio.wait_for(anext(aiter(listener.messages)), 10)
        body = orjson.loads(message.payload)  # type: ignore[arg-type]
        assert message.qos == 1
        assert body["metadata"]["fleet"] == "pudong"
        assert body["metadata"]["Content-Type"] == "application/json"
        assert body["body"]["type"] == "Notification"
        assert body["body"]["data"][0]["battery"]["value"] == 0.4
        await asyncio.sleep(0.7)
        got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:mqtt")).json()
        assert got["notification"]["timesSent"] == 1


async def test_unreachable_broker_is_a_failure(client: httpx.AsyncClient, tmp_path: Path) -> None:
    with mosquitto(tmp_path) as port:
        pass  # stopped: nothing listens on the port any more
    await client.post("/subscriptions", json=subscription(port, "0"))
    robot = {"id": "urn:ngsi-ld:Robot:8", "type": "Robot", "battery": 0.9}
    await client.post("/entities", json=robot)
    await asyncio.sleep(1.0)
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:mqtt")).json()
    assert got["notification"]["status"] == "failed"
    assert got["notification"]["timesFailed"] >= 1
