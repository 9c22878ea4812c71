"""PostgreSQL stopped and started again under load (issue 8): requests meanwhile get a 503
ProblemDetails, the server reconnects by itself, and no acknowledged write is lost. The test
has a cluster of its own, since it stops it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.cluster import cluster
from citytwin.app import create_app
from citytwin.settings import Settings

WRITERS = 4
GUARD = 60.0  # seconds: a guard against hanging, not a measurement


async def until(condition: Callable[[], bool], what: str) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(wait(), GUARD)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


class Load:
    """Writers creating entities as fast as they are answered, keeping what was acknowledged."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.acked: list[str] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.problems: list[tuple[dict[str, Any], str | None]] = []
        self.running = True

    async def writer(self, k: int) -> None:
        n = 0
        while self.running:
            n += 1
            entity_id = f"urn:ngsi-ld:Thing:{k}-{n}"
            body = {"id": entity_id, "type": "Thing", "n": {"type": "Property", "value": n}}
            response = await self.client.post("/entities", json=body)
            self.statuses[response.status_code] += 1
            if response.status_code == 201:
                self.acked.append(entity_id)
            elif response.status_code == 503:
                self.problems.append((response.json(), response.headers.get("retry-after")))
                await asyncio.sleep(0.05)

    def run(self) -> Awaitable[list[None]]:
        return asyncio.gather(*(self.writer(k) for k in range(WRITERS)))


async def test_a_database_restart_under_load_loses_no_acknowledged_write() -> None:
    with cluster() as pg:
        app = create_app(Settings(database=pg.url, mqtt="off"))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            base = "http://test/ngsi-ld/v1"
            async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                load = Load(client)
                running = asyncio.ensure_future(load.run())
                await until(lambda: len(load.acked) >= 50, "writes before the restart")
                await asyncio.to_thread(pg.stop, "fast")
                await until(lambda: load.statuses[503] >= 10, "503s while it is down")
                await asyncio.to_thread(pg.start)
                before = len(load.acked)
                await until(lambda: len(load.acked) >= before + 50, "writes after the restart")
                load.running = False
                await running
                assert set(load.statuses) <= {201, 503}, load.statuses
                problem, retry = load.problems[0]
                assert problem["type"] == "https://uri.etsi.org/ngsi-ld/errors/InternalError"
                assert problem["status"] == 503 and problem["title"] and retry == "1"
                for entity_id in load.acked:
                    got = await client.get(f"/entities/{entity_id}")
                    assert got.status_code == 200, (entity_id, got.text)
                everything = await client.get("/entities", params={"type": "Thing", "count": "true",
                                                                   "limit": "1"})  # fmt: skip
                # a write cut off mid-request may have committed without an answer: never fewer
                assert int(everything.headers["NGSILD-Results-Count"]) >= len(load.acked)
