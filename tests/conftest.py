from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.postgres import database, migrated, postgres_url  # noqa: F401 (fixtures)

BASE = "/ngsi-ld/v1"


STORE = os.environ.get("CITYTWIN_TEST_STORE", "sqlite")  # or "postgres": ./run test runs both


@pytest.fixture
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where a test's twin lives: a SQLite file, or a fresh database of a throwaway
    PostgreSQL cluster when CITYTWIN_TEST_STORE=postgres."""
    if STORE == "sqlite":
        yield str(tmp_path / "twin.db")
        return
    from tests.postgres import fresh_database

    cluster = request.getfixturevalue("postgres_url")
    async with fresh_database(cluster, request.getfixturevalue("migrated")) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database=database_url, max_body_bytes=64 * 1024, max_json_depth=16, mqtt="off")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE) as c:
            yield c


def building(ident: str = "urn:ngsi-ld:Building:1", **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident,
        "type": "Building",
        "name": {"type": "Property", "value": "Tower"},
        "height": {"type": "Property", "value": 300, "unitCode": "MTR"},
    }
    body.update(attrs)
    return body
