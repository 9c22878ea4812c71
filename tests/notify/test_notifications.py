"""Subscriptions deliver notifications to a real HTTP receiver on loopback (5.8.6)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.receiver import Received, receiver

SENSOR = "urn:ngsi-ld:AirQualitySensor:1"


@pytest.fixture
def sink() -> Iterator[Received]:
    with receiver() as received:
        yield received


def subscription(uri: str, **extra: Any) -> dict[str, Any]:
    body = {
        "id": "urn:ngsi-ld:Subscription:aq",
        "type": "Subscription",
        "entities": [{"type": "AirQualitySensor"}],
        "notification": {"endpoint": {"uri": uri}},
    }
    body.update(extra)
    return body


def sensor(pm25: float = 12.0) -> dict[str, Any]:
    return {"id": SENSOR, "type": "AirQualitySensor", "pm25": {"type": "Property", "value": pm25}}


async def received(sink: Received, count: int) -> list[Any]:
    return await asyncio.to_thread(sink.wait, count)


async def test_create_and_update_notify(client: httpx.AsyncClient, sink: Received) -> None:
    assert (await client.post("/subscriptions", json=subscription(sink.url))).status_code == 201
    await client.post("/entities", json=sensor())
    await client.patch(f"/entities/{SENSOR}/attrs/pm25", json={"value": 40})
    bodies = await received(sink, 2)
    assert [b["data"][0]["pm25"]["value"] for b in bodies] == [12.0, 40]
    first = bodies[0]
    assert first["type"] == "Notification"
    assert first["subscriptionId"] == "urn:ngsi-ld:Subscription:aq"
    headers = sink.items[0][0]
    assert headers["Content-Type"] == "application/json"
    assert "json-ld#context" in headers["Link"]


async def test_q_and_watched_attributes_filter(client: httpx.AsyncClient, sink: Received) -> None:
    sub = subscription(sink.url, q="pm25>35", watchedAttributes=["pm25"])
    await client.post("/subscriptions", json=sub)
    await client.post("/entities", json=sensor(12))
    await client.post(f"/entities/{SENSOR}/attrs", json={"name": "kiosk"})
    await client.patch(f"/entities/{SENSOR}/attrs/pm25", json={"value": 50})
    bodies = await received(sink, 1)
    await asyncio.sleep(0.3)
    assert [b["data"][0]["pm25"]["value"] for b in sink.bodies()] == [50]
    assert bodies[0]["triggerReason"] == "attributeUpdated"


async def test_format_attributes_and_show_changes(
    client: httpx.AsyncClient, sink: Received
) -> None:
    sub = subscription(
        sink.url,
        notification={"endpoint": {"uri": sink.url}, "attributes": ["pm25"], "showChanges": True},
    )
    await client.post("/subscriptions", json=sub)
    await client.post("/entities", json={**sensor(12), "name": "kiosk"})
    await client.patch(f"/entities/{SENSOR}/attrs/pm25", json={"value": 60})
    bodies = await received(sink, 2)
    update = bodies[1]["data"][0]
    assert set(update) == {"id", "type", "pm25"}
    assert update["pm25"]["previousValue"] == 12


async def test_deletion_trigger(client: httpx.AsyncClient, sink: Received) -> None:
    sub = subscription(sink.url, notificationTrigger=["entityDeleted"])
    await client.post("/subscriptions", json=sub)
    await client.post("/entities", json=sensor())
    await client.delete(f"/entities/{SENSOR}")
    bodies = await received(sink, 1)
    assert bodies[0]["data"][0]["id"] == SENSOR and "deletedAt" in bodies[0]["data"][0]
    assert bodies[0]["triggerReason"] == "entityDeleted"


async def test_status_fields_follow_deliveries(client: httpx.AsyncClient, sink: Received) -> None:
    sink.status = 500
    await client.post("/subscriptions", json=subscription(sink.url))
    await client.post("/entities", json=sensor())
    await received(sink, 1)
    await asyncio.sleep(0.8)
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).json()
    assert got["notification"]["timesFailed"] >= 1
    assert got["notification"]["status"] == "failed"
    assert "lastFailure" in got["notification"]


async def test_inactive_subscription_is_silent(client: httpx.AsyncClient, sink: Received) -> None:
    await client.post("/subscriptions", json=subscription(sink.url, isActive=False))
    await client.post("/entities", json=sensor())
    await asyncio.sleep(0.4)
    assert sink.bodies() == []
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).json()
    assert got["status"] == "paused"


@pytest.mark.parametrize(
    "change",
    [
        {"q": "pm25>>1"},
        {"notificationTrigger": ["somethingElse"]},
        {"notification": {"endpoint": {"uri": "not a uri"}}},
        {"expiresAt": "2001-01-01T00:00:00Z"},
        {"entities": []},
        {"type": "Other"},
    ],
)
async def test_invalid_subscriptions_are_not_stored(
    client: httpx.AsyncClient, change: dict[str, Any]
) -> None:
    got = await client.post(
        "/subscriptions", json={**subscription("http://127.0.0.1:9/x"), **change}
    )
    assert got.status_code == 400
    assert got.json()["type"].endswith("BadRequestData")
    assert (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).status_code == 404
