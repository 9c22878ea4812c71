"""Several servers on one database (as workers and machines are): every change, whichever
server took it, is notified once, including changes made right after the subscription was
made through another server (issue 8; on the store under test, so on PostgreSQL too)."""

from __future__ import annotations

import asyncio
import collections

import httpx

from tests.receiver import receiver
from tests.test_durability import Servers, servers  # noqa: F401 (fixture)

CHANGES = 60
SETTLE = 1.5  # seconds to wait after the last expected notification, for any duplicate


async def test_each_change_is_notified_once_whichever_server_took_it(
    servers: Servers,  # noqa: F811
) -> None:
    urls = [await servers.start() for _ in range(3)]
    with receiver() as sink:
        sub = {
            "id": "urn:ngsi-ld:Subscription:workers",
            "type": "Subscription",
            "entities": [{"type": "Sensor"}],
            "notification": {"endpoint": {"uri": sink.url}, "attributes": ["n"]},
        }
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            assert (await client.post(urls[1] + "/subscriptions", json=sub)).status_code == 201
            for n in range(CHANGES):
                body = {"id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor",
                        "n": {"type": "Property", "value": n}}  # fmt: skip
                got = await client.post(urls[n % len(urls)] + "/entities", json=body)
                assert got.status_code == 201, got.text
        await asyncio.to_thread(sink.wait, CHANGES, 30.0)
        await asyncio.sleep(SETTLE)
        bodies = sink.bodies()
    seen = collections.Counter(e["id"] for b in bodies for e in b["data"])
    assert len(seen) == CHANGES, f"missing: {CHANGES - len(seen)}"
    assert set(seen.values()) == {1}, [i for i, k in seen.items() if k > 1]
