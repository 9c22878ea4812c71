"""orderBy=geo:distance (4.23) with near queries, and expandValues (4.9)."""

from __future__ import annotations

import httpx

from citytwin.model.geo import haversine

CENTRE = (121.4737, 31.2304)  # People's Square
PLACES = {
    "urn:ngsi-ld:Kiosk:far": (121.5000, 31.2400),
    "urn:ngsi-ld:Kiosk:near": (121.4740, 31.2306),
    "urn:ngsi-ld:Kiosk:mid": (121.4800, 31.2350),
}
NEAR = {"type": "Kiosk", "georel": "near;maxDistance==5000", "geometry": "Point",
        "coordinates": f"[{CENTRE[0]},{CENTRE[1]}]"}  # fmt: skip


async def kiosks(client: httpx.AsyncClient) -> None:
    for ident, (lon, lat) in PLACES.items():
        where = {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
        body = {"id": ident, "type": "Kiosk", "location": where}
        assert (await client.post("/entities", json=body)).status_code == 201
    square = [[121.476, 31.232], [121.477, 31.232], [121.477, 31.233], [121.476, 31.232]]
    shop = {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [square]}}
    assert (await client.post("/entities", json={"id": "urn:ngsi-ld:Kiosk:shop", "type": "Kiosk",
                                                 "location": shop})).status_code == 201  # fmt: skip


def by_distance() -> list[str]:
    return sorted(PLACES, key=lambda i: haversine(*CENTRE, *PLACES[i]))


async def test_order_by_distance(client: httpx.AsyncClient) -> None:
    await kiosks(client)
    got = await client.get("/entities", params={**NEAR, "orderBy": "geo:distance"})
    ids = [e["id"] for e in got.json()]
    points = [i for i in ids if i != "urn:ngsi-ld:Kiosk:shop"]
    assert points == by_distance()
    assert ids.index("urn:ngsi-ld:Kiosk:shop") < ids.index("urn:ngsi-ld:Kiosk:mid")
    desc = await client.get("/entities", params={**NEAR, "orderBy": "geo:distance;desc"})
    assert [e["id"] for e in desc.json()] == list(reversed(ids))


async def test_order_by_distance_pages(client: httpx.AsyncClient) -> None:
    await kiosks(client)
    first = await client.get(
        "/entities", params={**NEAR, "orderBy": "geo:distance", "limit": 2, "count": "true"}
    )
    second = await client.get(
        "/entities", params={**NEAR, "orderBy": "geo:distance", "limit": 2, "offset": 2}
    )
    assert first.headers["NGSILD-Results-Count"] == "4"
    ids = [e["id"] for e in first.json() + second.json()]
    assert len(set(ids)) == 4 and ids[0] == "urn:ngsi-ld:Kiosk:near"


async def test_distance_needs_near(client: httpx.AsyncClient) -> None:
    await kiosks(client)
    got = await client.get("/entities", params={"type": "Kiosk", "orderBy": "geo:distance"})
    assert got.status_code == 400
    assert "near" in got.json()["detail"]


async def test_expand_values_matches_vocab_iris(client: httpx.AsyncClient) -> None:
    body = {"id": "urn:ngsi-ld:Kiosk:v", "type": "Kiosk",
            "category": {"type": "VocabProperty", "vocab": "newsstand"}}  # fmt: skip
    assert (await client.post("/entities", json=body)).status_code == 201
    plain = await client.get("/entities", params={"type": "Kiosk", "q": "category==newsstand"})
    assert plain.json() == []
    expanded = await client.get(
        "/entities",
        params={"type": "Kiosk", "q": "category==newsstand", "expandValues": "category"},
    )
    assert [e["id"] for e in expanded.json()] == ["urn:ngsi-ld:Kiosk:v"]
