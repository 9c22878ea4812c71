"""Batch operations (5.6.7-5.6.10, 5.6.20) and purge (5.6.21)."""

from __future__ import annotations

import httpx

from tests.conftest import building

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
A, B, C = (f"urn:ngsi-ld:Building:{n}" for n in "ABC")


async def ids(client: httpx.AsyncClient) -> list[str]:
    got = await client.get("/entities?type=Building,Tower&limit=100")
    return sorted(e["id"] for e in got.json())


async def test_create_all_is_201_with_ids(client: httpx.AsyncClient) -> None:
    got = await client.post("/entityOperations/create", json=[building(A), building(B)])
    assert got.status_code == 201
    assert sorted(got.json()) == [A, B]
    assert await ids(client) == [A, B]


async def test_create_partial_is_207_and_each_entity_whole(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(A))
    bad = {"id": C, "type": "Building", "x": {"type": "Property"}}
    got = await client.post("/entityOperations/create", json=[building(A), building(B), bad])
    assert got.status_code == 207
    result = got.json()
    assert result["success"] == [B]
    errors = {e["entityId"]: e["error"]["type"] for e in result["errors"]}
    assert errors == {A: ERR + "AlreadyExists", C: ERR + "BadRequestData"}
    assert await ids(client) == [A, B]


async def test_upsert_creates_then_replaces(client: httpx.AsyncClient) -> None:
    first = await client.post("/entityOperations/upsert", json=[building(A)])
    assert first.status_code == 201 and first.json() == [A]
    changed = {"id": A, "type": "Building", "floors": 9}
    second = await client.post("/entityOperations/upsert", json=[changed])
    assert second.status_code == 204
    body = (await client.get(f"/entities/{A}")).json()
    assert body == {"id": A, "type": "Building", "floors": {"type": "Property", "value": 9}}


async def test_upsert_update_keeps_other_attributes(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(A))
    patch = {"id": A, "type": "Tower", "floors": 9}
    got = await client.post("/entityOperations/upsert?options=update", json=[patch])
    assert got.status_code == 204
    body = (await client.get(f"/entities/{A}")).json()
    assert body["type"] == ["Building", "Tower"]
    assert body["name"]["value"] == "Tower" and body["floors"]["value"] == 9


async def test_update_and_merge_need_existing_entities(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(A))
    for op in ("update", "merge"):
        got = await client.post(
            f"/entityOperations/{op}", json=[{"id": A, "floors": 2}, {"id": B, "floors": 2}]
        )
        assert got.status_code == 207
        assert got.json()["success"] == [A]
        assert got.json()["errors"][0]["error"]["type"] == ERR + "ResourceNotFound"
    assert await ids(client) == [A]


async def test_delete(client: httpx.AsyncClient) -> None:
    await client.post("/entityOperations/create", json=[building(A), building(B)])
    got = await client.post("/entityOperations/delete", json=[A, B, A])
    assert got.status_code == 207
    assert got.json()["success"] == [A, B]
    assert await ids(client) == []


async def test_empty_batch_is_bad_request(client: httpx.AsyncClient) -> None:
    got = await client.post("/entityOperations/create", json=[])
    assert got.status_code == 400


async def test_purge_by_type_and_drop(client: httpx.AsyncClient) -> None:
    tower = {"id": C, "type": "Tower", "name": "T", "height": 3}
    await client.post("/entityOperations/create", json=[building(A), building(B), tower])
    assert (await client.delete("/entities?type=Tower&drop=height")).status_code == 204
    assert set((await client.get(f"/entities/{C}")).json()) == {"id", "type", "name"}
    assert (await client.delete("/entities?type=Building")).status_code == 204
    assert await ids(client) == [C]
    assert (await client.delete("/entities")).status_code == 400
    assert (await client.delete("/entities?local=true")).status_code == 204
    assert await ids(client) == []


def _place(lon: float) -> dict[str, object]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 31.2]}}


async def near(client: httpx.AsyncClient, lon: float, kind: str = "Building") -> list[str]:
    got = await client.get(
        "/entities",
        params={
            "type": kind,
            "georel": "near;maxDistance==2000",
            "geometry": "Point",
            "coordinates": f"[{lon},31.2]",
        },  # fmt: skip
    )
    assert got.status_code == 200, got.text
    return sorted(e["id"] for e in got.json())


async def test_attribute_writes_keep_indexes_and_history(client: httpx.AsyncClient) -> None:
    """Batch update, append and update name the attributes they touch, so the store reindexes
    and derives history from those alone: a moved location is found at its new place, a new
    type by that type, a value write leaves both indexes as they were, and an entity written
    twice in one batch gets the last write of each attribute (they share their instant) and a
    tombstone for what the second deleted."""
    placed = [building(A, location=_place(121.0)), building(B, location=_place(121.5))]
    assert (await client.post("/entityOperations/create", json=placed)).status_code == 201
    moved = [
        {"id": A, "location": _place(121.5)},
        {"id": B, "height": {"type": "Property", "value": 1}},
    ]
    assert (await client.post("/entityOperations/update", json=moved)).status_code == 204
    assert await near(client, 121.5) == [A, B]
    assert await near(client, 121.0) == []
    retyped = [{"id": B, "type": "Tower", "height": {"type": "Property", "value": 2}}]
    assert (await client.post("/entityOperations/update", json=retyped)).status_code == 204
    assert await near(client, 121.5, "Tower") == [B]
    patch = {"location": _place(121.0)}
    assert (await client.patch(f"/entities/{B}/attrs", json=patch)).status_code == 204
    assert await near(client, 121.0, "Tower") == [B]
    twice = [{"id": A, "height": {"type": "Property", "value": 7}},
             {"id": A, "height": {"type": "Property", "value": 8},
              "name": {"type": "Property", "value": "urn:ngsi-ld:null"}}]  # fmt: skip
    assert (await client.post("/entityOperations/update", json=twice)).status_code == 204
    params = {"options": "temporalValues", "timeproperty": "modifiedAt"}
    got = (await client.get(f"/temporal/entities/{A}", params=params)).json()
    assert [v[0] for v in got["height"]["values"]] == [300, 8]  # one instant: the last write
    assert [v[0] for v in got["name"]["values"]] == ["Tower", "urn:ngsi-ld:null"]
    assert "name" not in (await client.get(f"/entities/{A}")).json()
