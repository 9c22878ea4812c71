"""A file written before a schema change opens with the new schema and its data carried over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import orjson
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from citytwin.store import sqlite_index
from tests.conftest import BASE


async def test_a_file_from_before_the_history_gets_its_current_state_as_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "old.db")
    conn = sqlite3.connect(db, isolation_level=None)
    with monkeypatch.context() as m:  # the schema as it was before the temporal API
        m.setattr(sqlite_index, "MIGRATIONS", sqlite_index.MIGRATIONS[:3])
        sqlite_index.migrate(conn)
    vocab = "https://uri.etsi.org/ngsi-ld/default-context/"
    times = {"createdAt": "2026-01-01T00:00:00.000Z", "modifiedAt": "2026-01-02T00:00:00.000Z"}
    reading = {"type": "Property", "value": 12, "observedAt": "2026-01-02T00:00:00Z", **times}
    doc = {"id": "urn:ngsi-ld:Sensor:1", "type": [vocab + "Sensor"], **times,
           "attrs": {vocab + "pm25": [reading]}}  # fmt: skip
    conn.execute(
        "INSERT INTO entities (tenant, id, types, doc, created_at, modified_at)"
        " VALUES ('', ?, ?, ?, ?, ?)",
        (doc["id"], orjson.dumps(doc["type"]).decode(), orjson.dumps(doc).decode(),
         doc["createdAt"], doc["modifiedAt"]),
    )  # fmt: skip
    conn.close()
    app = create_app(Settings(database=db, mqtt="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE) as c:
            r = await c.get(f"/temporal/entities/{doc['id']}")
    assert r.status_code == 200, r.text
    assert [i["value"] for i in r.json()["pm25"]] == [12]
