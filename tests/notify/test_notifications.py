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


async def test_attribute_deletion_shows_null(client: httpx.AsyncClient, sink: Received) -> None:
    sub = subscription(
        sink.url,
        notificationTrigger=["attributeDeleted"],
        notification={"endpoint": {"uri": sink.url}, "showChanges": True},
    )
    await client.post("/subscriptions", json=sub)
    await client.post("/entities", json={**sensor(12), "name": "kiosk"})
    await client.delete(f"/entities/{SENSOR}/attrs/pm25")
    (body,) = await received(sink, 1)
    data = body["data"][0]
    assert data["pm25"] == {"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": 12}
    assert data["name"] == {"type": "Property", "value": "kiosk"}


async def test_one_dataset_instance_deleted(client: httpx.AsyncClient, sink: Received) -> None:
    await client.post("/subscriptions", json=subscription(sink.url, notificationTrigger=[
        "attributeDeleted"]))  # fmt: skip
    raw = "urn:ngsi-ld:Dataset:raw"
    pm25 = [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": raw}]
    await client.post("/entities", json={**sensor(), "pm25": pm25})
    await client.delete(f"/entities/{SENSOR}/attrs/pm25?datasetId={raw}")
    (body,) = await received(sink, 1)
    assert body["data"][0]["pm25"] == [
        {"type": "Property", "value": 1},
        {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": raw},
    ]


async def test_time_interval_sends_all_matching(client: httpx.AsyncClient, sink: Received) -> None:
    await client.post("/entities", json=sensor(7))
    other = {**sensor(9), "id": "urn:ngsi-ld:AirQualitySensor:2"}
    await client.post("/entities", json=other)
    await client.post("/subscriptions", json=subscription(sink.url, timeInterval=1))
    await asyncio.sleep(0.5)
    assert sink.bodies() == []  # the first one comes one interval after creation
    bodies = await received(sink, 2)
    ids = sorted(e["id"] for e in bodies[0]["data"])
    assert ids == [SENSOR, "urn:ngsi-ld:AirQualitySensor:2"]
    assert bodies[1]["triggerReason"] == "timeInterval"


async def test_ld_json_endpoint_puts_context_in_each_entity(
    client: httpx.AsyncClient, sink: Received
) -> None:
    endpoint = {"uri": sink.url, "accept": "application/ld+json"}
    await client.post(
        "/subscriptions", json=subscription(sink.url, notification={"endpoint": endpoint})
    )
    await client.post("/entities", json=sensor())
    (body,) = await received(sink, 1)
    headers = sink.items[0][0]
    assert "Link" not in headers and headers["Content-Type"] == "application/ld+json"
    assert "@context" in body["data"][0] and "@context" not in body


async def test_subscription_echoes_what_was_given(client: httpx.AsyncClient) -> None:
    await client.post("/subscriptions", json=subscription("http://127.0.0.1:9/x"))
    got = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).json()
    assert got == {
        "id": "urn:ngsi-ld:Subscription:aq",
        "type": "Subscription",
        "entities": [{"type": "AirQualitySensor"}],
        "notification": {"endpoint": {"uri": "http://127.0.0.1:9/x"}},
        "notificationTrigger": ["attributeCreated", "attributeUpdated"],
        "status": "active",
    }
    await client.patch("/subscriptions/urn:ngsi-ld:Subscription:aq", json={"isActive": False})
    paused = (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).json()
    assert paused["status"] == "paused" and paused["isActive"] is False
    listed = (await client.get("/subscriptions")).json()
    assert [s["id"] for s in listed] == ["urn:ngsi-ld:Subscription:aq"]
    assert (await client.delete("/subscriptions/urn:ngsi-ld:Subscription:aq")).status_code == 204
    assert (await client.get("/subscriptions/urn:ngsi-ld:Subscription:aq")).status_code == 404


async def test_a_slow_endpoint_does_not_delay_others(client: httpx.AsyncClient) -> None:
    with receiver() as slow, receiver() as fast:
        slow.delay = 2.0
        for name, sink in (("slow", slow), ("fast", fast)):
            sub = subscription(sink.url, id=f"urn:ngsi-ld:Subscription:{name}")
            assert (await client.post("/subscriptions", json=sub)).status_code == 201
        await client.post("/entities", json=sensor())
        await client.patch(f"/entities/{SENSOR}/attrs/pm25", json={"value": 41})
        bodies = await asyncio.to_thread(fast.wait, 2, 5.0)
        assert len(bodies) == 2
        # the slow endpoint holds each notification 2 s: it cannot have both yet
        assert len(slow.bodies()) < 2


async def test_subscriptions_sharing_an_endpoint_do_not_wait_for_each_other(
    client: httpx.AsyncClient,
) -> None:
    """One endpoint, two subscriptions in different lanes: the one whose notifications the
    endpoint holds 1.5 s each does not hold up the other's; each arrives in its own order."""
    slow_id, fast_id = _in_two_lanes()
    with receiver() as sink:
        sink.delay, sink.delayed = 1.5, slow_id
        for sub_id in (slow_id, fast_id):
            sub = subscription(sink.url, id=sub_id)
            assert (await client.post("/subscriptions", json=sub)).status_code == 201
        await client.post("/entities", json=sensor(40))
        for value in (41, 42):
            await client.patch(f"/entities/{SENSOR}/attrs/pm25", json={"value": value})

        def of(sub_id: str, bodies: list[Any]) -> list[Any]:
            return [b["data"][0]["pm25"]["value"] for b in bodies if b["subscriptionId"] == sub_id]

        deadline = asyncio.get_running_loop().time() + 5
        while len(of(fast_id, sink.bodies())) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert of(fast_id, sink.bodies()) == [40, 41, 42]
        assert len(of(slow_id, sink.bodies())) < 3  # 4.5 s of answers: not all of them yet
        bodies = await asyncio.to_thread(sink.wait, 6, 10.0)
        assert of(slow_id, bodies) == [40, 41, 42]


def _in_two_lanes() -> tuple[str, str]:
    from citytwin.notify.deliver import lane

    ids = [f"urn:ngsi-ld:Subscription:lane{n}" for n in range(20)]
    first = ids[0]
    return first, next(i for i in ids if lane(("", i)) != lane(("", first)))


async def test_a_change_whose_announcement_was_lost_is_notified(
    client: httpx.AsyncClient, sink: Received, settings: Any
) -> None:
    """Another process's commit that woke no notifier (on PostgreSQL a NOTIFY is sent after the
    commit, and can be lost with a cancelled request or a broken connection) is still found:
    the notifier looks at the log every few seconds without being woken."""
    from bench.store import update
    from citytwin.store import open_store

    assert (await client.post("/subscriptions", json=subscription(sink.url))).status_code == 201
    await client.post("/entities", json=sensor(40))
    assert len(await received(sink, 1)) == 1
    other = open_store(settings.database)  # another process's store, announcing nothing
    await other.open()
    try:
        other._announce = lambda: None
        pm25 = "https://uri.etsi.org/ngsi-ld/default-context/pm25"
        assert await other.mutate("", [(SENSOR, update(41, "2026-11-30T10:00:00Z", pm25))])
        bodies = await asyncio.to_thread(sink.wait, 2, 10.0)
        assert [b["data"][0]["pm25"]["value"] for b in bodies] == [40, 41]
    finally:
        await other.close()
