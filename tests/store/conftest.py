"""The stores every contract test runs against: SQLite, and PostgreSQL on a real throwaway
cluster (a fresh database per test)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from citytwin.store.postgres import PostgresStore
from citytwin.store.sqlite import SqliteStore
from tests.postgres import fresh_database


@contextlib.asynccontextmanager
async def opened(kind: str, tmp_path: Path, cluster: str, template: str) -> AsyncIterator[Any]:
    """An open store of a kind: "sqlite" (a file in tmp_path) or "postgres" (a fresh database
    of the cluster, a copy of the migrated template)."""
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            made: Any = SqliteStore(str(tmp_path / "twin.db"))
        else:
            made = PostgresStore(await stack.enter_async_context(fresh_database(cluster, template)))
        await made.open()
        stack.push_async_callback(made.close)
        yield made


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, migrated: str
) -> AsyncIterator[Any]:
    async with opened(request.param, tmp_path, postgres_url, migrated) as made:
        yield made
