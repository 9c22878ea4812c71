"""A throwaway PostgreSQL cluster with PostGIS for the tests that need one (.ci/run installs it)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from bench.cluster import installed, postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One cluster for the whole session (each test makes its own database)."""
    if not installed():
        pytest.fail("PostgreSQL 15 with PostGIS is not installed (./run test installs it)")
    with postgres() as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_database(cluster: str) -> AsyncIterator[str]:
    """A new database of the session's cluster, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(cluster)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield cluster.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url) as url:
        yield url
