"""A throwaway PostgreSQL cluster with PostGIS for the tests that need one (.ci/run installs it)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from bench.cluster import installed, postgres
from citytwin.store.postgres import PostgresStore


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One cluster for the whole session (each test makes its own database)."""
    if not installed():
        pytest.fail("PostgreSQL 15 with PostGIS is not installed (./run test installs it)")
    with postgres() as url:
        yield url


@pytest.fixture(scope="session")
def migrated(postgres_url: str) -> str:
    """The name of a database with the store's schema, to copy: migrating takes a second
    (PostGIS), copying a tenth of one."""

    async def make() -> None:
        admin = await asyncpg.connect(postgres_url)
        await admin.execute("CREATE DATABASE migrated")
        await admin.close()
        store = PostgresStore(_named(postgres_url, "migrated"))
        await store.open()
        await store.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # (maybe called in a running loop)
        pool.submit(asyncio.run, make()).result()
    return "migrated"


def _named(cluster: str, name: str) -> str:
    return cluster.rsplit("/", 1)[0] + "/" + name


@contextlib.asynccontextmanager
async def fresh_database(cluster: str, template: str | None = None) -> AsyncIterator[str]:
    """A new database of the session's cluster (a copy of `template`), dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(cluster)
    copy = f" TEMPLATE {template}" if template else ""
    await admin.execute(f"CREATE DATABASE {name}{copy}")
    try:
        yield _named(cluster, name)
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url) as url:
        yield url
