"""A notification survives the server dying between the write and its delivery (outbox)."""

from __future__ import annotations

import asyncio

import httpx

from tests.receiver import receiver
from tests.test_durability import Servers, free_port, servers  # noqa: F401 (fixture)

SENSOR = {"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "pm25": {"type": "Property", "value": 3}}


async def test_delivery_resumes_after_sigkill(servers: Servers) -> None:  # noqa: F811
    port = free_port()
    url = await servers.start()
    sub = {
        "id": "urn:ngsi-ld:Subscription:1",
        "type": "Subscription",
        "entities": [{"type": "Sensor"}],
        "notification": {"endpoint": {"uri": f"http://127.0.0.1:{port}/notify"}},
    }
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        assert (await client.post("/subscriptions", json=sub)).status_code == 201
        assert (await client.post("/entities", json=SENSOR)).status_code == 201
    await asyncio.sleep(0.5)  # the receiver is down: the first attempts fail and are retried
    servers.kill(servers.started[0])
    with receiver(port=port) as sink:
        await servers.start()
        bodies = await asyncio.to_thread(sink.wait, 1, 10.0)
    assert bodies, "the notification of a write made before the crash was never delivered"
    assert bodies[0]["subscriptionId"] == "urn:ngsi-ld:Subscription:1"
    assert bodies[0]["data"][0]["pm25"]["value"] == 3
