from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings

BASE = "/ngsi-ld/v1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database=str(tmp_path / "twin.db"), max_body_bytes=64 * 1024, max_json_depth=16, mqtt="off"
    )


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
