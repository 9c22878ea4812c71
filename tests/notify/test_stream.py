"""GET /citytwin/v1/stream against a real server: filtered events, resumed with Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.test_durability import Servers, servers  # noqa: F401 (fixture)

STREAM = "/citytwin/v1/stream"


def sensor(n: int, pm25: float, kind: str = "Sensor") -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:{kind}:{n}", "type": kind,
            "pm25": {"type": "Property", "value": pm25}}  # fmt: skip


async def read_events(lines: AsyncIterator[str], count: int) -> list[tuple[int, dict[str, Any]]]:
    """The first `count` entities of a stream: (id of the event that brought it, entity). One
    event may bring several (the changes the stream found at once)."""
    found: list[tuple[int, dict[str, Any]]] = []
    event: dict[str, str] = {}
    async for line in lines:
        if line.startswith(("id:", "data:")):
            key, _, value = line.partition(":")
            event[key] = value.strip()
        elif not line and "data" in event:
            body = orjson.loads(event["data"])
            assert body["type"] == "Notification"
            found += [(int(event["id"]), entity) for entity in body["data"]]
            event = {}
            if len(found) >= count:
                return found
    return found


async def test_stream_filters_and_resumes(servers: Servers) -> None:  # noqa: F811
    url = await servers.start()
    root = url.removesuffix("/ngsi-ld/v1")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        params = {"type": "Sensor", "q": "pm25>35"}

        async def post(*entities: dict[str, Any]) -> None:
            for entity in entities:
                assert (await client.post(url + "/entities", json=entity)).status_code == 201

        async with client.stream("GET", root + STREAM, params=params) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            await post(sensor(1, 10), sensor(2, 50))
            [(first_id, first)] = await asyncio.wait_for(read_events(lines, 1), 10)
            await post(sensor(3, 99, "Camera"), sensor(4, 70))
            [(_, second)] = await asyncio.wait_for(read_events(lines, 1), 10)
        assert [first["id"], second["id"]] == ["urn:ngsi-ld:Sensor:2", "urn:ngsi-ld:Sensor:4"]
        await client.patch(url + "/entities/urn:ngsi-ld:Sensor:2/attrs/pm25", json={"value": 80})
        headers = {"Last-Event-ID": str(first_id)}
        async with client.stream("GET", root + STREAM, params=params, headers=headers) as again:
            resumed = await asyncio.wait_for(read_events(again.aiter_lines(), 2), 10)
        assert [entity["id"] for _, entity in resumed] == [
            "urn:ngsi-ld:Sensor:4", "urn:ngsi-ld:Sensor:2"]  # fmt: skip
        assert resumed[1][1]["pm25"]["value"] == 80
        assert resumed[0][0] <= resumed[1][0]  # ids grow: a later resume starts after both


async def test_stream_refuses_bad_input(servers: Servers) -> None:  # noqa: F811
    root = (await servers.start()).removesuffix("/ngsi-ld/v1")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        bad_q = await client.get(root + STREAM, params={"q": "pm25>>"})
        assert bad_q.status_code == 400
        bad_id = await client.get(root + STREAM, headers={"Last-Event-ID": "x"})
        assert bad_id.status_code == 400


async def test_stream_applies_id_pattern(servers: Servers) -> None:  # noqa: F811
    url = await servers.start()
    root = url.removesuffix("/ngsi-ld/v1")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        params = {"type": "Sensor", "idPattern": r":Sensor:[12]$"}
        async with client.stream("GET", root + STREAM, params=params) as response:
            lines = response.aiter_lines()
            for entity in (sensor(3, 10), sensor(1, 20), sensor(2, 30)):
                assert (await client.post(url + "/entities", json=entity)).status_code == 201
            events = await asyncio.wait_for(read_events(lines, 2), 10)
        assert [entity["id"] for _, entity in events] == [
            "urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]  # fmt: skip


async def test_stream_carries_changes_made_through_another_process(
    servers: Servers,  # noqa: F811
) -> None:
    """Two servers on one file (as two workers are): a write through one reaches a stream
    of the other well before the next keep-alive (15 s), which used to be the first wake-up."""
    streaming, writing = await servers.start(), await servers.start()
    root = streaming.removesuffix("/ngsi-ld/v1")
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        async with client.stream("GET", root + STREAM, params={"type": "Sensor"}) as response:
            lines = response.aiter_lines()
            await asyncio.sleep(0.3)
            assert (await client.post(writing + "/entities", json=sensor(7, 12))).status_code == 201
            [(_, entity)] = await asyncio.wait_for(read_events(lines, 1), 5)
            assert entity["id"] == "urn:ngsi-ld:Sensor:7"


async def test_stream_carries_a_burst_whole_and_in_order(servers: Servers) -> None:  # noqa: F811
    """A batch of 1,200 changes (more than the stream reads from the log at once) arrives whole,
    in order, grouped into a few events whose ids grow; none waits for the next commit."""
    url = await servers.start()
    root = url.removesuffix("/ngsi-ld/v1")
    burst = [sensor(n, n % 100) for n in range(1200)]
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        async with client.stream("GET", root + STREAM, params={"type": "Sensor"}) as response:
            lines = response.aiter_lines()
            await asyncio.sleep(0.3)
            got = await client.post(url + "/entityOperations/create", json=burst)
            assert got.status_code == 201
            events = await asyncio.wait_for(read_events(lines, 1200), 10)
    assert [entity["id"] for _, entity in events] == [e["id"] for e in burst]
    ids = [event_id for event_id, _ in events]
    assert ids == sorted(ids) and 1 < len(set(ids)) < 100
