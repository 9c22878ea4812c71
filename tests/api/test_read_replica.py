"""Reads on a streaming-replication standby (issue 8: `serve --read-replica URL`), with a
primary and a standby started on loopback: writes go to the primary, the API's reads to the
standby; with the primary committing `remote_apply`, a read right after a write sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from bench.cluster import Cluster, cluster
from citytwin.app import create_app
from citytwin.settings import Settings

GUARD = 30.0  # seconds: a guard against hanging, not a measurement


@pytest.fixture
async def twin() -> AsyncIterator[tuple[httpx.AsyncClient, Cluster, Cluster]]:
    with cluster(durable=True) as primary:
        await _migrated(primary.url)  # the standby starts with the schema
        with primary.standby() as standby:
            settings = Settings(database=primary.url, read_replica=standby.url, mqtt="off")
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                base = "http://test/ngsi-ld/v1"
                async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                    yield client, primary, standby


async def _migrated(url: str) -> None:
    app = create_app(Settings(database=url, mqtt="off"))
    async with app.router.lifespan_context(app):
        pass


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def thing(n: int) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:Thing:{n}", "type": "Thing", "n": {"type": "Property", "value": n}}


async def test_reads_come_from_the_standby(
    twin: tuple[httpx.AsyncClient, Cluster, Cluster],
) -> None:
    client, _, standby = twin
    await _sql(standby.url, "SELECT pg_wal_replay_pause()")  # the standby stops catching up
    assert (await client.post("/entities", json=thing(1))).status_code == 201
    assert (await client.get("/entities/urn:ngsi-ld:Thing:1")).status_code == 404
    listed = await client.get("/entities", params={"type": "Thing"})
    assert listed.status_code == 200 and listed.json() == []
    await _sql(standby.url, "SELECT pg_wal_replay_resume()")

    async def caught_up() -> None:
        while (await client.get("/entities/urn:ngsi-ld:Thing:1")).status_code != 200:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(caught_up(), GUARD)


async def test_a_purge_acts_on_the_primary_while_the_standby_lags(
    twin: tuple[httpx.AsyncClient, Cluster, Cluster],
) -> None:
    """Purging is a write: it selects on the primary, not on a standby that has not seen the
    tenant or the entities yet."""
    client, primary, standby = twin
    await _sql(standby.url, "SELECT pg_wal_replay_pause()")
    city = {"NGSILD-Tenant": "city"}
    for n in (1, 2):
        assert (await client.post("/entities", json=thing(n), headers=city)).status_code == 201
    dropped = await client.delete("/entities?type=Thing&drop=n", headers=city)
    assert dropped.status_code == 204, dropped.text
    assert (await client.delete("/entities?type=Thing", headers=city)).status_code == 204
    await _sql(standby.url, "SELECT pg_wal_replay_resume()")
    conn = await asyncpg.connect(primary.url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM entities WHERE tenant = 'city'") == 0
        afters = [r[0] for r in await conn.fetch("SELECT after FROM changes ORDER BY seq")]
    finally:
        await conn.close()
    assert len(afters) == 6 and afters[4:] == [None, None]  # made, dropped `n`, deleted
    has_n = [any(k.endswith("/n") for k in json.loads(a)["attrs"]) for a in afters[:4]]
    assert has_n == [True, True, False, False]


async def test_with_remote_apply_a_read_after_a_write_sees_it(
    twin: tuple[httpx.AsyncClient, Cluster, Cluster],
) -> None:
    client, primary, _ = twin
    await _sql(
        primary.url,
        "ALTER SYSTEM SET synchronous_standby_names = '*'",
        "ALTER SYSTEM SET synchronous_commit = 'remote_apply'",
        "SELECT pg_reload_conf()",
    )
    for n in range(30):
        assert (await client.post("/entities", json=thing(n))).status_code == 201
        got = await client.get(f"/entities/urn:ngsi-ld:Thing:{n}", params={"options": "keyValues"})
        assert got.status_code == 200 and got.json()["n"] == n
        patch = {"n": {"type": "Property", "value": n + 100}}
        path = f"/entities/urn:ngsi-ld:Thing:{n}/attrs"
        assert (await client.patch(path, json=patch)).status_code == 204
        got = await client.get(f"/entities/urn:ngsi-ld:Thing:{n}", params={"options": "keyValues"})
        assert got.json()["n"] == n + 100
    counted = await client.get("/entities", params={"type": "Thing", "count": "true"})
    assert counted.headers["NGSILD-Results-Count"] == "30"
