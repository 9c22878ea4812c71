"""Attribute operations: append, update, partial update, replace, delete (5.6.2-5.6.5, 5.6.19)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import building

ID = "urn:ngsi-ld:Building:1"
NULL = "urn:ngsi-ld:null"


def speeds() -> list[dict[str, Any]]:
    return [
        {"type": "Property", "value": 55},
        {"type": "Property", "value": 54.5, "datasetId": "urn:ngsi-ld:Dataset:gps"},
    ]


async def entity(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    got = await client.get(f"/entities/{ID}{query}")
    assert got.status_code == 200, got.text
    return got.json()


async def test_append_adds_and_overwrites(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.post(f"/entities/{ID}/attrs", json={"height": 310, "floors": 80})
    assert got.status_code == 204
    body = await entity(client)
    assert body["height"] == {"type": "Property", "value": 310}
    assert body["floors"] == {"type": "Property", "value": 80}


async def test_append_no_overwrite_reports_what_it_kept(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.post(
        f"/entities/{ID}/attrs?options=noOverwrite", json={"height": 310, "floors": 80}
    )
    assert got.status_code == 207
    result = got.json()
    assert result["updated"] == ["https://uri.etsi.org/ngsi-ld/default-context/floors"]
    assert [n["attributeName"] for n in result["notUpdated"]] == [
        "https://uri.etsi.org/ngsi-ld/default-context/height"
    ]
    assert (await entity(client))["height"]["value"] == 300


async def test_update_replaces_and_adds(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.patch(f"/entities/{ID}/attrs", json={"height": 1, "floors": 2})
    assert got.status_code == 204
    body = await entity(client)
    assert body["height"] == {"type": "Property", "value": 1}
    assert body["floors"] == {"type": "Property", "value": 2}


async def test_update_of_absent_scope_is_reported(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.patch(f"/entities/{ID}/attrs", json={"scope": "/a", "height": 2})
    assert got.status_code == 207
    assert [n["attributeName"] for n in got.json()["notUpdated"]] == ["scope"]
    assert "scope" not in await entity(client)


async def test_partial_update_keeps_other_members(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.patch(f"/entities/{ID}/attrs/height", json={"value": 320})
    assert got.status_code == 204
    assert (await entity(client))["height"] == {"type": "Property", "value": 320, "unitCode": "MTR"}


async def test_partial_update_of_missing_attribute_is_404(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    got = await client.patch(f"/entities/{ID}/attrs/ghost", json={"value": 1})
    assert got.status_code == 404


async def test_multi_attribute_instances_by_dataset_id(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(speed=speeds()))
    gps = {"value": 60, "datasetId": "urn:ngsi-ld:Dataset:gps"}
    assert (await client.patch(f"/entities/{ID}/attrs/speed", json=gps)).status_code == 204
    body = await entity(client)
    assert sorted(i["value"] for i in body["speed"]) == [55, 60]
    gone = await client.delete(f"/entities/{ID}/attrs/speed?datasetId=urn:ngsi-ld:Dataset:gps")
    assert gone.status_code == 204
    assert (await entity(client))["speed"] == {"type": "Property", "value": 55}


async def test_delete_all_instances(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(speed=speeds()))
    assert (await client.delete(f"/entities/{ID}/attrs/speed?deleteAll=true")).status_code == 204
    assert "speed" not in await entity(client)
    again = await client.delete(f"/entities/{ID}/attrs/speed")
    assert again.status_code == 404


async def test_replace_attribute_keeps_created_at(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    before = (await entity(client, "?options=sysAttrs"))["height"]["createdAt"]
    new = {"type": "Relationship", "object": "urn:ngsi-ld:Measure:1"}
    assert (await client.put(f"/entities/{ID}/attrs/height", json=new)).status_code == 204
    after = (await entity(client, "?options=sysAttrs"))["height"]
    assert after["type"] == "Relationship" and after["object"] == "urn:ngsi-ld:Measure:1"
    assert after["createdAt"] == before
    assert "unitCode" not in after


async def test_ngsi_ld_null_deletes_in_every_update(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(speed=speeds()))
    await client.patch(
        f"/entities/{ID}/attrs", json={"height": {"type": "Property", "value": NULL}}
    )
    await client.patch(f"/entities/{ID}/attrs/name", json={"value": NULL})
    await client.patch(f"/entities/{ID}", json={"speed": {"value": NULL}})
    body = await entity(client)
    assert "height" not in body and "name" not in body
    assert body["speed"]["datasetId"] == "urn:ngsi-ld:Dataset:gps"


async def test_merge_patch_merges_sub_attributes(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building())
    patch = {"height": {"value": 301, "observedAt": "2026-01-01T00:00:00Z"}, "new": "x"}
    got = await client.patch(
        f"/entities/{ID}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert got.status_code == 204
    body = await entity(client)
    assert body["height"] == {
        "type": "Property",
        "value": 301,
        "unitCode": "MTR",
        "observedAt": "2026-01-01T00:00:00Z",
    }
    assert body["new"] == {"type": "Property", "value": "x"}
    assert body["name"]["value"] == "Tower"


async def test_replace_entity(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(scope="/a"))
    created = (await entity(client, "?options=sysAttrs"))["createdAt"]
    got = await client.put(f"/entities/{ID}", json={"type": "Tower", "floors": 3})
    assert got.status_code == 204
    body = await entity(client, "?options=sysAttrs")
    assert body["type"] == "Tower" and body["createdAt"] == created
    assert set(body) == {"id", "type", "floors", "createdAt", "modifiedAt"}


async def test_scope_and_types_through_updates(client: httpx.AsyncClient) -> None:
    await client.post("/entities", json=building(scope="/Shanghai/Huangpu"))
    await client.post(f"/entities/{ID}/attrs?options=noOverwrite", json={"scope": "/Shanghai/Bund"})
    assert (await entity(client))["scope"] == ["/Shanghai/Huangpu", "/Shanghai/Bund"]
    await client.patch(f"/entities/{ID}/attrs", json={"type": "Landmark", "scope": "/x"})
    body = await entity(client)
    assert body["type"] == ["Building", "Landmark"] and body["scope"] == "/x"
    assert (await client.delete(f"/entities/{ID}/attrs/scope")).status_code == 204
    assert "scope" not in await entity(client)
