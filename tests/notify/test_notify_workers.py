"""Several servers on one database (as workers and machines are): every change, whichever
server took it, is notified once, including changes made right after the subscription was
made through another server (issue 8; on the store under test, so on PostgreSQL too)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.conftest import BASE
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


async def test_a_subscription_committed_while_the_notifier_reads_applies_to_the_change_after_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another server commits a subscription and then a change it matches while this
    server's notifier is reading the change log (forced here: the commits are made from inside
    that read). The notifier must see the subscription before it handles the change."""
    async with contextlib.AsyncExitStack() as stack:
        first, second = [await stack.enter_async_context(_app(database_url)) for _ in range(2)]
        with receiver() as sink:
            other = {"id": "urn:ngsi-ld:Subscription:other", "type": "Subscription",
                     "entities": [{"type": "Other"}],
                     "notification": {"endpoint": {"uri": sink.url}}}  # fmt: skip
            assert (await first.client.post("/subscriptions", json=other)).status_code == 201
            store = first.app.state.citytwin.broker.store
            read = store.changes_since
            armed = [True]

            async def racing(*args: Any, **kwargs: Any) -> Any:
                if armed and armed.pop():
                    sub = {**other, "id": "urn:ngsi-ld:Subscription:sensors",
                           "entities": [{"type": "Sensor"}]}  # fmt: skip
                    assert (await second.client.post("/subscriptions", json=sub)).status_code == 201
                    body = {"id": "urn:ngsi-ld:Sensor:w", "type": "Sensor"}
                    assert (await second.client.post("/entities", json=body)).status_code == 201
                return await read(*args, **kwargs)

            monkeypatch.setattr(store, "changes_since", racing)
            body = {"id": "urn:ngsi-ld:Other:1", "type": "Other"}
            assert (await first.client.post("/entities", json=body)).status_code == 201
            bodies = await asyncio.to_thread(sink.wait, 2, 10.0)
    notified = {e["id"] for b in bodies for e in b["data"]}
    assert notified == {"urn:ngsi-ld:Other:1", "urn:ngsi-ld:Sensor:w"}


@dataclasses.dataclass
class _Served:
    app: Any
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def _app(database: str) -> AsyncIterator[_Served]:
    """A server in this process (the first one started holds the notifier lease)."""
    app = create_app(Settings(database=database, mqtt="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE) as client:
            yield _Served(app, client)
