from __future__ import annotations

import httpx
import pytest

from tests.conftest import building

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
LD = {"Content-Type": "application/ld+json"}


async def test_create_then_retrieve_normalized(client: httpx.AsyncClient) -> None:
    created = await client.post("/entities", json=building())
    assert created.status_code == 201
    assert created.headers["location"] == "/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1"
    got = await client.get("/entities/urn:ngsi-ld:Building:1")
    assert got.status_code == 200
    assert got.json() == building()
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in got.headers["link"]


async def test_create_twice_is_already_exists(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    again = await client.post("/entities", json=building())
    assert again.status_code == 409
    assert again.json()["type"] == ERR + "AlreadyExists"


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ("keyValues", {"name": "Tower", "height": 300}),
        ("simplified", {"name": "Tower", "height": 300}),
        ("concise", {"name": "Tower", "height": {"value": 300, "unitCode": "MTR"}}),
    ],
)
async def test_retrieval_forms(client: httpx.AsyncClient, form: str, expected: dict) -> None:
    await client.post("/entities", json=building())
    got = await client.get(f"/entities/urn:ngsi-ld:Building:1?options={form}")
    assert got.json() == {"id": "urn:ngsi-ld:Building:1", "type": "Building", **expected}


async def test_concise_input_round_trips(client: httpx.AsyncClient) -> None:
    body = {
        "id": "urn:ngsi-ld:Building:2",
        "type": "Building",
        "name": "Tower",
        "owner": {"object": "urn:ngsi-ld:Person:1"},
        "location": {"type": "Point", "coordinates": [121.47, 31.23]},
        "tags": {"vocab": "residential"},
        "label": {"languageMap": {"en": "Tower", "zh": "塔"}},
    }
    assert (await client.post("/entities", json=body)).status_code == 201
    got = (await client.get("/entities/urn:ngsi-ld:Building:2")).json()
    assert got["name"] == {"type": "Property", "value": "Tower"}
    assert got["owner"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}
    assert got["location"]["type"] == "GeoProperty"
    assert got["tags"] == {"type": "VocabProperty", "vocab": "residential"}
    assert got["label"]["type"] == "LanguageProperty"
    concise = (await client.get("/entities/urn:ngsi-ld:Building:2?format=concise")).json()
    assert concise == body


async def test_sys_attrs(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = (await client.get("/entities/urn:ngsi-ld:Building:1?options=sysAttrs")).json()
    assert got["createdAt"] <= got["modifiedAt"]
    assert "createdAt" in got["name"] and "modifiedAt" in got["name"]
    plain = (await client.get("/entities/urn:ngsi-ld:Building:1")).json()
    assert "createdAt" not in plain and "createdAt" not in plain["name"]


async def test_pick_omit_and_attrs(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    pick = (await client.get("/entities/urn:ngsi-ld:Building:1?pick=id,name")).json()
    assert pick == {"id": "urn:ngsi-ld:Building:1", "name": {"type": "Property", "value": "Tower"}}
    omit = (await client.get("/entities/urn:ngsi-ld:Building:1?omit=name,type")).json()
    assert set(omit) == {"id", "height"}
    attrs = (await client.get("/entities/urn:ngsi-ld:Building:1?attrs=height")).json()
    assert set(attrs) == {"id", "type", "height"}
    both = await client.get("/entities/urn:ngsi-ld:Building:1?pick=id&omit=name")
    assert both.status_code == 400


async def test_lang_filter(client: httpx.AsyncClient) -> None:
    label = {"type": "LanguageProperty", "languageMap": {"en": "Bund", "zh": "外滩"}}
    await client.post("/entities", json=building(label=label))
    zh = (await client.get("/entities/urn:ngsi-ld:Building:1?lang=zh")).json()
    assert zh["label"] == {"type": "Property", "value": "外滩", "lang": "zh"}
    fallback = (await client.get("/entities/urn:ngsi-ld:Building:1?lang=fr,en;q=0.5")).json()
    assert fallback["label"]["value"] == "Bund"
    simple = await client.get("/entities/urn:ngsi-ld:Building:1?lang=zh&format=simplified")
    assert simple.json()["label"] == "外滩"


async def test_geojson(client: httpx.AsyncClient) -> None:
    where = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [121.5, 31.2]}}
    await client.post("/entities", json=building(location=where))
    got = await client.get(
        "/entities/urn:ngsi-ld:Building:1?format=simplified",
        headers={"Accept": "application/geo+json"},
    )
    assert got.headers["content-type"].startswith("application/geo+json")
    feature = got.json()
    assert feature["type"] == "Feature"
    assert feature["geometry"] == where["value"]
    assert feature["properties"]["name"] == "Tower"


async def test_json_ld_context_round_trip(client: httpx.AsyncClient) -> None:
    ctx = {"Building": "https://example.org/Building", "name": "https://example.org/name"}
    body = {**building(), "@context": [ctx]}
    assert (await client.post("/entities", json=body, headers=LD)).status_code == 201
    core = (await client.get("/entities/urn:ngsi-ld:Building:1")).json()
    assert core["type"] == "https://example.org/Building"
    assert "https://example.org/name" in core
    assert "height" in core  # not in the user context: the core @vocab applies both ways


async def test_link_and_body_context_together_is_an_error(client: httpx.AsyncClient) -> None:
    link = '<https://example.org/ctx.jsonld>; rel="http://www.w3.org/ns/json-ld#context"'
    body = {**building(), "@context": {"name": "https://example.org/name"}}
    got = await client.post("/entities", json=body, headers={**LD, "Link": link})
    assert got.status_code == 400
    assert (await client.get("/entities/urn:ngsi-ld:Building:1")).status_code == 404


async def test_delete_entity(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    assert (await client.delete("/entities/urn:ngsi-ld:Building:1")).status_code == 204
    assert (await client.get("/entities/urn:ngsi-ld:Building:1")).status_code == 404
    again = await client.delete("/entities/urn:ngsi-ld:Building:1")
    assert again.status_code == 404
    assert again.json()["type"] == ERR + "ResourceNotFound"


async def test_collection_paths_answer_with_trailing_slash(client: httpx.AsyncClient) -> None:
    assert (await client.post("/entities/", json=building())).status_code == 201
    assert (await client.get("/entities/?type=Building")).json()[0]["id"] == building()["id"]


async def test_tenants_are_isolated(client: httpx.AsyncClient) -> None:
    city = {"NGSILD-Tenant": "shanghai"}
    unknown = await client.get("/entities/urn:ngsi-ld:Building:1", headers=city)
    assert unknown.status_code == 404
    assert unknown.json()["type"] == ERR + "NonexistentTenant"
    assert (await client.post("/entities", json=building(), headers=city)).status_code == 201
    assert (await client.get("/entities/urn:ngsi-ld:Building:1", headers=city)).status_code == 200
    default = await client.get("/entities/urn:ngsi-ld:Building:1")
    assert default.json()["type"] == ERR + "ResourceNotFound"


async def test_failed_update_on_unknown_tenant_creates_no_tenant(client: httpx.AsyncClient) -> None:
    ghost = {"NGSILD-Tenant": "ghost"}
    patch = await client.patch("/entities/urn:x:1/attrs", json={"a": 1}, headers=ghost)
    assert patch.status_code == 404
    got = await client.get("/entities/urn:x:1", headers=ghost)
    assert got.json()["type"] == ERR + "NonexistentTenant"
