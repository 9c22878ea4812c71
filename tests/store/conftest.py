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


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    migrated: str,
) -> AsyncIterator[Any]:
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            made: Any = SqliteStore(str(tmp_path / "twin.db"))
        else:
            made = PostgresStore(
                await stack.enter_async_context(fresh_database(postgres_url, migrated))
            )
        await made.open()
        stack.push_async_callback(made.close)
        yield made
