"""GET /entities, POST /entityOperations/query, purge and discovery against a small Shanghai.

The city: four air-quality sensors (numbers, text, booleans, arrays, JSON values, a multi-instance
attribute with datasetIds, sub-properties, scopes, points), a camera that is also a Device, a
gateway, two towers (LanguageProperty labels, Relationships) and the Lujiazui district polygon.
Results come ordered by entity id unless orderBy says otherwise, so id lists are compared exactly.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from citytwin.model.geo import haversine

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
LD = {"Accept": "application/ld+json"}
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"

AQS = "urn:ngsi-ld:AirQualitySensor:"
S1, S2, S3, S4 = (AQS + n for n in ("001", "002", "003", "004"))
CAM = "urn:ngsi-ld:Camera:001"
GW = "urn:ngsi-ld:Device:002"
JM = "urn:ngsi-ld:Building:JinMao"
SH = "urn:ngsi-ld:Building:ShanghaiTower"
LJZ = "urn:ngsi-ld:District:Lujiazui"
RAW = "urn:ngsi-ld:Dataset:raw"
SENSORS = [S1, S2, S3, S4]
EVERYONE = [S1, S2, S3, S4, JM, SH, CAM, GW, LJZ]
ALL_TYPES = "AirQualitySensor,Device,Building,District"


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def rel(obj: str) -> dict[str, Any]:
    return {"type": "Relationship", "object": obj}


def point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


LJZ_AREA = [
    [[121.495, 31.225], [121.52, 31.225], [121.52, 31.25], [121.495, 31.25], [121.495, 31.225]]
]
POINTS = {
    S1: (121.4903, 31.2397),  # the Bund
    S2: (121.5065, 31.2453),  # Lujiazui
    S3: (121.4375, 31.1950),  # Xujiahui
    S4: (120.6195, 31.2990),  # Suzhou
    JM: (121.5015, 31.2375),
    SH: (121.5055, 31.2335),
}
JIN_MAO = {
    "id": JM,
    "type": "Building",
    "name": prop("Jin Mao Tower"),
    "height": prop(421),
    "label": {"type": "LanguageProperty", "languageMap": {"en": "Jin Mao Tower", "zh": "金茂大厦"}},
    "owner": rel("urn:ngsi-ld:Organization:Jinmao"),  # does not exist
    "refDistrict": rel(LJZ),
    "location": point(*POINTS[JM]),
}
# Created in this order: createdAt order is S3, S1, S4, S2, CAM, GW, JM, SH, LJZ.
CITY: list[dict[str, Any]] = [
    {
        "id": S3,
        "type": "AirQualitySensor",
        "scope": ["/Shanghai/Xuhui", "/Partner/Acme"],
        "pm25": prop(75.5),
        "name": prop("Xujiahui Station"),
        "active": prop(True),
        "tags": prop("indoor"),
        "location": point(*POINTS[S3]),
        "temperature": prop(28, datasetId=RAW),
    },
    {
        "id": S1,
        "type": "AirQualitySensor",
        "scope": "/Shanghai/Huangpu/Bund",
        "pm25": prop(50, observedAt="2024-05-01T08:00:00Z", unitCode="GQ", reliability=prop(0.9)),
        "name": prop("Bund Station"),
        "active": prop(True),
        "tags": prop(["outdoor", "traffic"]),
        "address": prop({"district": "Huangpu", "street": {"name": "Zhongshan Road"}}),
        "refBuilding": rel(JM),
        "location": point(*POINTS[S1]),
    },
    {
        "id": S4,
        "type": "AirQualitySensor",
        "scope": "/Suzhou",
        "pm25": prop("n/a"),
        "name": prop("Suzhou Station"),
        "active": prop(False),
        "location": point(*POINTS[S4]),
    },
    {
        "id": S2,
        "type": "AirQualitySensor",
        "scope": "/Shanghai/Pudong/Lujiazui",
        "pm25": prop(120, observedAt="2024-05-02T08:00:00Z", unitCode="GQ", reliability=prop(0.7)),
        "name": prop("Lujiazui Station"),
        "active": prop(False),
        "tags": prop(["outdoor"]),
        "address": prop({"district": "Pudong", "street": {"name": "Century Avenue"}}),
        "refBuilding": rel(SH),
        "location": point(*POINTS[S2]),
        "temperature": [prop(21), prop(35, datasetId=RAW)],
    },
    {
        "id": CAM,
        "type": ["Camera", "Device"],
        "scope": "/Shanghai/Huangpu/NanjingRoad",
        "name": prop("Nanjing Road Cam"),
        "active": prop(True),
        "refBuilding": rel(JM),
    },
    {"id": GW, "type": "Device", "name": prop("Gateway")},
    JIN_MAO,
    {
        "id": SH,
        "type": "Building",
        "name": prop("Shanghai Tower"),
        "height": prop(632),
        "label": {
            "type": "LanguageProperty",
            "languageMap": {"en": "Shanghai Tower", "zh": "上海中心大厦"},
        },
        "refDistrict": rel(LJZ),
        "location": point(*POINTS[SH]),
    },
    {
        "id": LJZ,
        "type": "District",
        "name": prop("Lujiazui"),
        "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": LJZ_AREA}},
    },
]


@pytest.fixture
async def city(client: httpx.AsyncClient) -> httpx.AsyncClient:
    for entity in CITY:
        created = await client.post("/entities", json=entity)
        assert created.status_code == 201, created.text
    return client


async def query(client: httpx.AsyncClient, params: dict[str, str], **kw: Any) -> list[Any]:
    got = await client.get("/entities", params=params, **kw)
    assert got.status_code == 200, got.text
    return got.json()


async def ids(client: httpx.AsyncClient, params: dict[str, str], **kw: Any) -> list[str]:
    return [e["id"] for e in await query(client, params, **kw)]


def problem(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == ERR + name
    assert body["title"]
    return body


def by_id(*entity_ids: str) -> list[str]:
    """The default result order."""
    return sorted(entity_ids)


# -- selection by type, id and idPattern -----------------------------------------------------------

TYPE_CASES = [
    ("AirQualitySensor", SENSORS),
    ("Device", [CAM, GW]),
    ("Camera", [CAM]),
    ("Camera;Device", [CAM]),
    ("Device;Camera", [CAM]),
    ("Building;Device", []),
    ("Building,District", [JM, SH, LJZ]),
    ("Building|Camera", [JM, SH, CAM]),
    ("(Camera;Device),Building", [JM, SH, CAM]),
    ("(Camera|Building);Device", [CAM]),
    ("(Building,District);(Device,Building)", [JM, SH]),
    (f"{DEFAULT}Building", [JM, SH]),
    (f"{DEFAULT}Building,{DEFAULT}District", [JM, SH, LJZ]),
    ("Parking", []),
]


@pytest.mark.parametrize(("types", "expected"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
async def test_type_expressions(city: httpx.AsyncClient, types: str, expected: list[str]) -> None:
    assert await ids(city, {"type": types}) == by_id(*expected)


ID_CASES = [
    ({"type": "AirQualitySensor,Camera", "id": f"{S1},{CAM},urn:ngsi-ld:X:1"}, [S1, CAM]),
    ({"type": "Building", "id": f"{S1},{JM}"}, [JM]),
    ({"type": "AirQualitySensor", "idPattern": "^urn:ngsi-ld:AirQualitySensor:00[12]$"}, [S1, S2]),
    ({"type": "Building,Device", "idPattern": "^urn:ngsi-ld:Building:.*"}, [JM, SH]),
    ({"type": "AirQualitySensor", "idPattern": "^urn:ngsi-ld:Building:.*"}, []),
    ({"type": "AirQualitySensor", "id": f"{S1},{S2},{S3}", "idPattern": ".*00[23]"}, [S2, S3]),
]


@pytest.mark.parametrize(("params", "expected"), ID_CASES)
async def test_id_and_id_pattern(
    city: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await ids(city, params) == by_id(*expected)


# -- q ---------------------------------------------------------------------------------------------
# Patterns (~=, idPattern) are written so that they hold whether a regex must match the whole
# value or only a part of it: the store searches, the notes on the ETSI suite say "fully match".

Q_CASES = [
    # numbers, text and booleans are compared with their own JSON type
    ("pm25==50", [S1]),
    ("pm25==50.0", [S1]),
    ("pm25>60", [S2, S3]),
    ("pm25>=75.5", [S2, S3]),
    ("pm25<75.5", [S1]),
    ("pm25<=120;pm25>50", [S2, S3]),
    ('pm25=="n/a"', [S4]),
    ("pm25~=5", []),
    ("active==true", [S1, S3, CAM]),
    ("active==false", [S2, S4]),
    ('active=="true"', []),
    ("height>500", [SH]),
    # != : the attribute exists and no value equals
    ("pm25!=50", [S2, S3, S4]),
    ("active!=true", [S2, S4]),
    ("pm25!=50,120", [S3, S4]),
    ("pm25!=50..80", [S2, S4]),
    # ranges and lists
    ("pm25==50..80", [S1, S3]),
    ("pm25==-10..49", []),
    ("pm25==50,120", [S1, S2]),
    ('name=="Bund Station","Gateway"', [S1, GW]),
    ('name=="K".."M"', [S2, LJZ]),
    # quoted text with spaces and non-ASCII; regular expressions
    ('name=="Jin Mao Tower"', [JM]),
    ("name~=.*Station$", SENSORS),
    ("name!~=.*Station", [JM, SH, CAM, GW, LJZ]),
    ("name~=^[JS].*Tower$", [JM, SH]),
    ('name~="^Bund.*"', [S1]),
    ('name~="(Bund|Jin) .*"', [S1, JM]),  # quoted: | and brackets belong to the pattern
    ('label[en]~="(?i)shanghai.*";height>0', [SH]),
    # Relationships compare their object, unquoted URIs
    (f"refBuilding=={SH}", [S2]),
    (f"refBuilding=={JM},{SH}", [S1, S2, CAM]),
    (f"refBuilding!={JM}", [S2]),
    ("refBuilding==urn:ngsi-ld:Building:Nowhere", []),
    (f"refDistrict=={LJZ};height<500", [JM]),
    # sub-attributes and metadata
    ("pm25.observedAt>=2024-05-02T00:00:00Z", [S2]),
    ("pm25.observedAt<2024-05-02T00:00:00Z", [S1]),
    ('pm25.unitCode=="GQ"', [S1, S2]),
    ("pm25.reliability>0.8", [S1]),
    ("pm25.reliability", [S1, S2]),
    (f"temperature.datasetId=={RAW}", [S2, S3]),
    # values inside JSON values, arrays and language maps
    ('address[district]=="Pudong"', [S2]),
    ('address[street][name]=="Zhongshan Road"', [S1]),
    ("address[floor]", []),
    ('tags=="outdoor"', [S1, S2]),
    ('tags=="indoor"', [S3]),
    ('tags=="traffic";tags=="outdoor"', [S1]),
    ('label=="金茂大厦"', [JM]),
    ('label[zh]=="上海中心大厦"', [SH]),
    ('label[en]=="上海中心大厦"', []),
    # multi-instance: any instance may match
    ("temperature>30", [S2]),
    ("temperature<25", [S2]),
    ("temperature==28", [S3]),
    # existence, full IRIs, and ; binding tighter than |
    ("temperature", [S2, S3]),
    ("refBuilding;temperature", [S2]),
    (f"{DEFAULT}height>500", [SH]),
    ("pm25>100|active==true;name~=Bund.*", [S1, S2]),
    ("(pm25>100|active==true);name~=Bund.*", [S1]),
    ("(pm25>100|active==true);name~=.*Station", [S1, S2, S3]),
    ("active==true;(name~=.*Cam|pm25<60)", [S1, CAM]),
]


@pytest.mark.parametrize(("q", "expected"), Q_CASES, ids=[c[0] for c in Q_CASES])
async def test_q(city: httpx.AsyncClient, q: str, expected: list[str]) -> None:
    assert await ids(city, {"q": q}) == by_id(*expected)


async def test_q_with_type(city: httpx.AsyncClient) -> None:
    assert await ids(city, {"type": "Device", "q": "active==true"}) == [CAM]
    assert await ids(city, {"type": "Building", "q": "active==true"}) == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "pm25 == 50"}, "expected an operator"),
        ({"q": "pm25>"}, "expected a value"),
        ({"q": "(pm25>1"}, "missing )"),
        ({"q": "pm25>1..5"}, "a range needs == or !="),
        ({"q": "name~=("}, "invalid regular expression"),
        ({"q": 'name=="x'}, "unterminated string"),
        ({"type": "(Building"}, "missing )"),
        ({"type": "Building,,District"}, "expected a type name"),
        ({"scopeQ": "Shanghai"}, "invalid scope pattern"),
        ({"type": "Building", "orderBy": "height;sideways"}, "not 'sideways'"),
        ({"type": "Building", "pick": "id,"}, "invalid pick at position 3"),
        ({"type": "Building", "omit": "id;name"}, "invalid omit at position 2"),
        ({"type": "Building", "id": "notauri"}, "id must be a URI"),
        ({"type": "Building", "idPattern": "*bad"}, "idPattern is not a valid regular expression"),
        ({"attrs": "id,type"}, "id and type are not attributes"),
        ({"type": "Building", "pick": "id", "omit": "name"}, "pick and omit"),
        ({"type": "Building", "attrs": "name", "pick": "id"}, "attrs cannot be used"),
        ({"type": "Building", "count": "yes"}, "count must be true or false"),
        ({"type": "Building", "join": "sideways"}, "join must be inline, flat or @none"),
        ({"type": "Building", "joinLevel": "0"}, "joinLevel must be a positive integer"),
        ({"type": "Building", "datasetId": "raw"}, "datasetId must be a URI"),
    ],
)
async def test_bad_query_parameters(
    city: httpx.AsyncClient, params: dict[str, str], fragment: str
) -> None:
    body = problem(await city.get("/entities", params=params), 400, "BadRequestData")
    assert fragment in body["detail"]


async def test_query_needs_more_than_ids(city: httpx.AsyncClient) -> None:
    only_ids = await city.get("/entities", params={"id": f"{S1},{S2}"})
    assert "at least one of" in problem(only_ids, 400, "BadRequestData")["detail"]
    nothing = await city.get("/entities")
    problem(nothing, 400, "BadRequestData")
    every = await ids(city, {"type": "*"})
    assert every == by_id(*EVERYONE)


async def test_unknown_tenant(city: httpx.AsyncClient) -> None:
    ghost = {"NGSILD-Tenant": "ghost"}
    got = await city.get("/entities", params={"type": "Building"}, headers=ghost)
    assert "ghost" in problem(got, 404, "NonexistentTenant")["detail"]
    posted = await city.post(
        "/entityOperations/query", json={"type": "Query", "attrs": ["name"]}, headers=ghost
    )
    problem(posted, 404, "NonexistentTenant")
    for path in ("/types", "/attributes", "/types/Building", "/attributes/name"):
        problem(await city.get(path, headers=ghost), 404, "NonexistentTenant")


async def test_tenants_do_not_see_each_other(city: httpx.AsyncClient) -> None:
    other = {"NGSILD-Tenant": "suzhou"}
    assert (await city.post("/entities", json=JIN_MAO, headers=other)).status_code == 201
    assert await ids(city, {"type": "Building"}, headers=other) == [JM]
    assert await ids(city, {"type": "Building"}) == [JM, SH]


# -- scopeQ ----------------------------------------------------------------------------------------

SCOPE_CASES = [
    ("/Shanghai/Huangpu/Bund", [S1]),
    ("/Shanghai", []),
    ("/Shanghai/+", [S3]),
    ("/Shanghai/+/Lujiazui", [S2]),
    ("/Shanghai/+/+", [S1, S2, CAM]),
    ("/Shanghai/#", [S1, S2, S3, CAM]),
    ("/Shanghai/Huangpu/#", [S1, CAM]),
    ("/#", [S1, S2, S3, S4, CAM]),
    ("/Shanghai/Xuhui;/Partner/Acme", [S3]),
    ("/Shanghai/Xuhui;/Suzhou", []),
    ("/Suzhou,/Partner/#", [S3, S4]),
    ("/Shanghai/Huangpu/#|/Suzhou", [S1, S4, CAM]),
    ("(/Shanghai/#|/Suzhou);/Partner/+", [S3]),
]


@pytest.mark.parametrize(("scope_q", "expected"), SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES])
async def test_scope_q(city: httpx.AsyncClient, scope_q: str, expected: list[str]) -> None:
    assert await ids(city, {"scopeQ": scope_q}) == by_id(*expected)


async def test_scope_q_with_type_and_q(city: httpx.AsyncClient) -> None:
    params = {"type": "Device", "scopeQ": "/Shanghai/#"}
    assert await ids(city, params) == [CAM]
    params = {"type": "AirQualitySensor", "scopeQ": "/Shanghai/#", "q": "pm25>60"}
    assert await ids(city, params) == [S2, S3]


# -- geo-queries -----------------------------------------------------------------------------------

PEOPLES_SQUARE = "[121.4737,31.2304]"
# haversine metres from People's Square: S1 1887, JM 2759, SH 3043, S2 3531, S3 5229, S4 81547;
# the district's nearest edge is about 2 km away. Planar degrees x 111 km would put SH at 3553
# and S3 at 5630: the thresholds below tell the two apart.
BOX = "[[[121.493,31.22],[121.53,31.22],[121.53,31.26],[121.493,31.26],[121.493,31.22]]]"
SMALL_BOX = (
    "[[[121.504,31.232],[121.507,31.232],[121.507,31.235],[121.504,31.235],[121.504,31.232]]]"
)
S2_POINT = "[121.5065,31.2453]"
OVERLAP = "[[[121.5,31.2],[121.6,31.2],[121.6,31.24],[121.5,31.24],[121.5,31.2]]]"

GEO_CASES = [
    ("near;maxDistance==3300", "Point", PEOPLES_SQUARE, [S1, JM, SH, LJZ]),
    ("near;maxDistance==3000", "Point", PEOPLES_SQUARE, [S1, JM, LJZ]),
    ("near;maxDistance==1000", "Point", PEOPLES_SQUARE, []),
    ("near;minDistance==5400", "Point", PEOPLES_SQUARE, [S4]),
    ("near;minDistance==5000", "Point", PEOPLES_SQUARE, [S3, S4]),
    ("near;minDistance==2500;maxDistance==3600", "Point", PEOPLES_SQUARE, [S2, JM, SH]),
    ("within", "Polygon", BOX, [S2, JM, SH, LJZ]),
    ("disjoint", "Polygon", BOX, [S1, S3, S4]),
    ("intersects", "Polygon", BOX, [S2, JM, SH, LJZ]),
    ("intersects", "Polygon", SMALL_BOX, [SH, LJZ]),
    ("intersects", "Point", "[121.5,31.24]", [LJZ]),
    ("contains", "Point", S2_POINT, [S2, LJZ]),
    ("contains", "Point", "[121.5,31.24]", [LJZ]),
    ("contains", "Polygon", SMALL_BOX, [LJZ]),
    ("equals", "Point", S2_POINT, [S2]),
    ("overlaps", "Polygon", OVERLAP, [LJZ]),
    ("intersects", "LineString", "[[121.4,31.2397],[121.6,31.2397]]", [S1, LJZ]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "expected"),
    GEO_CASES,
    ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(GEO_CASES)],
)
async def test_geo_queries(
    city: httpx.AsyncClient, georel: str, geometry: str, coordinates: str, expected: list[str]
) -> None:
    params = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    assert await ids(city, params) == by_id(*expected)
    assert await ids(city, {**params, "type": ALL_TYPES}) == by_id(*expected)


async def test_near_is_in_great_circle_metres(city: httpx.AsyncClient) -> None:
    ref = (121.4737, 31.2304)
    for limit in (2000, 2800, 3100, 3600, 5300):
        params = {"type": "AirQualitySensor,Building", "georel": f"near;maxDistance=={limit}"}
        got = await ids(city, {**params, "geometry": "Point", "coordinates": str(list(ref))})
        expected = [i for i, p in POINTS.items() if haversine(*ref, *p) <= limit]
        assert got == by_id(*expected), limit


async def test_geo_query_combines_with_q_and_geoproperty(city: httpx.AsyncClient) -> None:
    near = {"georel": "near;maxDistance==3300", "geometry": "Point", "coordinates": PEOPLES_SQUARE}
    assert await ids(city, {**near, "q": "height>500"}) == [SH]
    assert await ids(city, {**near, "type": "AirQualitySensor"}) == [S1]
    assert await ids(city, {**near, "geoproperty": "location"}) == [S1, JM, SH, LJZ]
    assert await ids(city, {**near, "geoproperty": "observationSpace"}) == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"georel": "invalid", "geometry": "Point", "coordinates": "[1,2]"}, "not 'invalid'"),
        ({"georel": "near", "geometry": "Point", "coordinates": "[1,2]"}, "near needs"),
        ({"georel": "near;maxDistance==-5", "geometry": "Point", "coordinates": "[1,2]"},
         "non-negative"),
        ({"georel": "within", "geometry": "Circle", "coordinates": "[1,2]"}, "not 'Circle'"),
        ({"georel": "within", "geometry": "Polygon", "coordinates": "[1,2]"}, "valid Polygon"),
        ({"georel": "within", "geometry": "Point", "coordinates": "1,2"}, "not a JSON array"),
        ({"georel": "within", "geometry": "Point"}, "together"),
        ({"type": "Building", "geoproperty": "location"}, "geoproperty needs"),
    ],
)  # fmt: skip
async def test_bad_geo_queries(
    city: httpx.AsyncClient, params: dict[str, str], fragment: str
) -> None:
    body = problem(await city.get("/entities", params=params), 400, "BadRequestData")
    assert fragment in body["detail"]


async def test_near_across_the_antimeridian(client: httpx.AsyncClient) -> None:
    for ident, lon in (("urn:x:east", -179.99), ("urn:x:west", 179.99)):
        body = {"id": ident, "type": "Buoy", "location": point(lon, 0.0)}
        assert (await client.post("/entities", json=body)).status_code == 201
    near = {"georel": "near;maxDistance==5000", "geometry": "Point", "coordinates": "[179.995,0]"}
    assert await ids(client, {"type": "Buoy", **near}) == ["urn:x:east", "urn:x:west"]


# -- pagination ------------------------------------------------------------------------------------


def page_links(response: httpx.Response) -> dict[str, tuple[str, dict[str, list[str]]]]:
    found = re.findall(r'<([^>]*)>;\s*rel="([^"]*)"', response.headers.get("link", ""))
    return {rel: (urlsplit(url).path, parse_qs(urlsplit(url).query)) for url, rel in found}


def page(offset: int, **extra: str) -> tuple[str, dict[str, list[str]]]:
    params = {"type": ["AirQualitySensor"], **{k: [v] for k, v in extra.items()}}
    return "/ngsi-ld/v1/entities", {**params, "limit": ["2"], "offset": [str(offset)]}


@pytest.mark.parametrize(
    ("params", "expected", "count", "prev", "next_"),
    [
        ({"limit": "2", "count": "true"}, [S1, S2], "4", None, 2),
        ({"limit": "2", "offset": "1", "count": "true"}, [S2, S3], "4", 0, 3),
        ({"limit": "2", "offset": "2", "count": "true"}, [S3, S4], "4", 0, None),
        ({"limit": "2", "offset": "3", "count": "true"}, [S4], "4", 1, None),
        ({"limit": "2", "offset": "9", "count": "true"}, [], "4", 7, None),
    ],
)
async def test_limit_offset_count_and_links(
    city: httpx.AsyncClient,
    params: dict[str, str],
    expected: list[str],
    count: str,
    prev: int | None,
    next_: int | None,
) -> None:
    got = await city.get("/entities", params={"type": "AirQualitySensor", **params}, headers=LD)
    assert got.status_code == 200
    assert [e["id"] for e in got.json()] == expected
    assert got.headers["NGSILD-Results-Count"] == count
    links = page_links(got)
    assert links.get("prev") == (None if prev is None else page(prev, count="true"))
    assert links.get("next") == (None if next_ is None else page(next_, count="true"))


async def test_following_next_links_visits_every_entity_once(city: httpx.AsyncClient) -> None:
    url = "/entities?type=*&limit=2&count=true"
    seen: list[str] = []
    for _ in range(10):
        got = await city.get(url, headers=LD)
        seen += [e["id"] for e in got.json()]
        links = page_links(got)
        if "next" not in links:
            break
        path, params = links["next"]
        url = "http://test" + path + "?" + "&".join(f"{k}={v[0]}" for k, v in params.items())
    assert seen == by_id(*EVERYONE)


async def test_count_of_nothing_is_zero(city: httpx.AsyncClient) -> None:
    got = await city.get("/entities", params={"type": "Parking", "count": "true"})
    assert got.json() == []
    assert got.headers["NGSILD-Results-Count"] == "0"
    plain = await city.get("/entities", params={"type": "Building"})
    assert "NGSILD-Results-Count" not in plain.headers


async def test_count_and_limit_with_geo_query(city: httpx.AsyncClient) -> None:
    near = {"georel": "near;maxDistance==3300", "geometry": "Point", "coordinates": PEOPLES_SQUARE}
    got = await city.get("/entities", params={**near, "limit": "2", "count": "true"}, headers=LD)
    assert [e["id"] for e in got.json()] == [S1, JM]
    assert got.headers["NGSILD-Results-Count"] == "4"
    _, params = page_links(got)["next"]
    assert params["offset"] == ["2"] and params["georel"] == ["near;maxDistance==3300"]
    rest = await ids(city, {**near, "limit": "2", "offset": "2"})
    assert rest == [SH, LJZ]


async def test_pagination_links_with_plain_json(city: httpx.AsyncClient) -> None:
    got = await city.get("/entities", params={"type": "AirQualitySensor", "limit": "2"})
    assert page_links(got).get("next") == page(2)
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in got.headers["link"]


async def test_limits(city: httpx.AsyncClient) -> None:
    too_many = await city.get("/entities", params={"type": "Building", "limit": "1001"})
    assert "1000" in problem(too_many, 403, "TooManyResults")["detail"]
    zero = await city.get("/entities", params={"type": "Building", "limit": "0"})
    assert "count=true" in problem(zero, 400, "BadRequestData")["detail"]
    counted = await city.get(
        "/entities", params={"type": "Building", "limit": "0", "count": "true"}
    )
    assert counted.status_code == 200 and counted.json() == []
    assert counted.headers["NGSILD-Results-Count"] == "2"
    assert await ids(city, {"type": "*", "limit": "1000"}) == by_id(*EVERYONE)
    for bad in ("-1", "two", "1.5"):
        for name in ("limit", "offset"):
            got = await city.get("/entities", params={"type": "Building", name: bad})
            assert name in problem(got, 400, "BadRequestData")["detail"]


async def test_default_limit_is_twenty(client: httpx.AsyncClient) -> None:
    entities = [{"id": f"urn:x:{n:02}", "type": "Lamp"} for n in range(25)]
    created = await client.post("/entityOperations/create", json=entities)
    assert created.status_code == 201
    got = await client.get("/entities", params={"type": "Lamp", "count": "true"}, headers=LD)
    assert [e["id"] for e in got.json()] == [f"urn:x:{n:02}" for n in range(20)]
    assert got.headers["NGSILD-Results-Count"] == "25"
    assert page_links(got)["next"][1]["offset"] == ["20"]


# -- orderBy ---------------------------------------------------------------------------------------

ORDER_CASES = [
    ({"type": "AirQualitySensor", "q": "pm25>0", "orderBy": "pm25"}, [S1, S3, S2]),
    ({"type": "AirQualitySensor", "q": "pm25>0", "orderBy": "pm25;asc"}, [S1, S3, S2]),
    ({"type": "AirQualitySensor", "q": "pm25>0", "orderBy": "pm25;desc"}, [S2, S3, S1]),
    ({"type": "AirQualitySensor", "orderBy": "name;desc"}, [S3, S4, S2, S1]),
    ({"type": "AirQualitySensor", "orderBy": "name"}, [S1, S2, S4, S3]),
    ({"type": "AirQualitySensor", "orderBy": "id;desc"}, [S4, S3, S2, S1]),
    ({"type": "AirQualitySensor", "orderBy": "id"}, [S1, S2, S3, S4]),
    ({"type": "AirQualitySensor", "orderBy": "createdAt"}, [S3, S1, S4, S2]),
    ({"type": "AirQualitySensor", "orderBy": "createdAt;desc"}, [S2, S4, S1, S3]),
    ({"type": "AirQualitySensor,Building", "orderBy": "name.createdAt"}, [S3, S1, S4, S2, JM, SH]),
    ({"type": "AirQualitySensor", "q": "pm25>0", "orderBy": "active,pm25;desc"}, [S2, S3, S1]),
    # entities without the attribute come last, in either direction
    ({"type": "Building,District", "orderBy": "height;desc"}, [SH, JM, LJZ]),
    ({"type": "Building,District", "orderBy": "height"}, [JM, SH, LJZ]),
    ({"type": "AirQualitySensor", "orderBy": "pm25.observedAt;desc"}, [S2, S1, S3, S4]),
    ({"type": "AirQualitySensor", "orderBy": "pm25.reliability"}, [S2, S1, S3, S4]),
    ({"type": "AirQualitySensor", "orderBy": "address[district];desc"}, [S2, S1, S3, S4]),
    ({"type": "AirQualitySensor", "orderBy": "refBuilding;desc"}, [S2, S1, S3, S4]),
    ({"type": "Building,District", "orderBy": "type;desc,name"}, [LJZ, JM, SH]),
    ({"type": "AirQualitySensor", "orderBy": "name;desc", "limit": "2", "offset": "1"}, [S4, S2]),
    ({"georel": "near;maxDistance==3300", "geometry": "Point", "coordinates": PEOPLES_SQUARE,
      "orderBy": "name;desc"}, [SH, LJZ, JM, S1]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "expected"), ORDER_CASES, ids=[c[0]["orderBy"] for c in ORDER_CASES]
)
async def test_order_by(
    city: httpx.AsyncClient, params: dict[str, str], expected: list[str]
) -> None:
    assert await ids(city, params) == expected


# -- representation: pick, omit, attrs, datasetId, formats -----------------------------------------


async def test_pick_and_omit(city: httpx.AsyncClient) -> None:
    picked = await query(city, {"type": "Building", "pick": "id,height"})
    assert picked == [{"id": JM, "height": prop(421)}, {"id": SH, "height": prop(632)}]
    omitted = await query(
        city, {"type": "Building", "omit": "label,location,owner,refDistrict,name"}
    )
    assert omitted == [
        {"id": JM, "type": "Building", "height": prop(421)},
        {"id": SH, "type": "Building", "height": prop(632)},
    ]
    ids_only = await query(city, {"type": "Device", "pick": "id"})
    assert ids_only == [{"id": CAM}, {"id": GW}]
    types_only = await query(city, {"type": "Device", "pick": "type"})
    assert types_only == [{"type": ["Camera", "Device"]}, {"type": "Device"}]


async def test_pick_of_attributes_drops_entities_without_them(city: httpx.AsyncClient) -> None:
    params = {"type": "AirQualitySensor,Device", "pick": "pm25", "format": "simplified"}
    assert await query(city, params) == [
        {"pm25": 50},
        {"pm25": 120},
        {"pm25": 75.5},
        {"pm25": "n/a"},
    ]
    params = {
        "type": "AirQualitySensor,Device",
        "pick": "temperature,height",
        "format": "simplified",
    }
    several = {"dataset": {"@none": 21, RAW: 35}}  # 4.5.4: every instance, by datasetId
    assert await query(city, params) == [{"temperature": several}, {"temperature": 28}]


async def test_attrs_selects_entities_with_at_least_one(city: httpx.AsyncClient) -> None:
    got = await query(city, {"attrs": "temperature"})
    assert [e["id"] for e in got] == [S2, S3]
    assert all(set(e) - {"scope"} == {"id", "type", "temperature"} for e in got)
    assert await ids(city, {"attrs": "temperature,height"}) == [S2, S3, JM, SH]
    assert await ids(city, {"attrs": "nothing"}) == []
    got = await query(city, {"type": "Building", "attrs": "height,owner"})
    assert got == [
        {"id": JM, "type": "Building", "height": prop(421), "owner": JIN_MAO["owner"]},
        {"id": SH, "type": "Building", "height": prop(632)},
    ]


async def test_dataset_id(city: httpx.AsyncClient) -> None:
    params = {"type": "AirQualitySensor", "attrs": "temperature"}
    raw = await query(city, {**params, "datasetId": RAW})
    assert [(e["id"], e["temperature"]) for e in raw] == [
        (S2, prop(35, datasetId=RAW)),
        (S3, prop(28, datasetId=RAW)),
    ]
    default = await query(city, {**params, "datasetId": "@none"})
    assert [(e["id"], e.get("temperature")) for e in default] == [(S2, prop(21)), (S3, None)]
    both = await query(city, {**params, "datasetId": f"@none,{RAW}"})
    assert both[0]["temperature"] == [prop(21), prop(35, datasetId=RAW)]
    other = await query(city, {**params, "datasetId": "urn:ngsi-ld:Dataset:other"})
    assert [set(e) - {"scope"} for e in other] == [{"id", "type"}, {"id", "type"}]


async def test_simplified(city: httpx.AsyncClient) -> None:
    got = await query(city, {"type": "Building", "id": JM, "format": "simplified"})
    assert got == [
        {
            "id": JM,
            "type": "Building",
            "name": "Jin Mao Tower",
            "height": 421,
            "label": {"languageMap": {"en": "Jin Mao Tower", "zh": "金茂大厦"}},
            "owner": "urn:ngsi-ld:Organization:Jinmao",
            "refDistrict": LJZ,
            "location": {"type": "Point", "coordinates": list(POINTS[JM])},
        }
    ]
    assert await query(city, {"type": "Building", "id": JM, "options": "keyValues"}) == got
    s2 = await query(city, {"type": "AirQualitySensor", "id": S2, "options": "keyValues"})
    assert s2[0]["temperature"] == {"dataset": {"@none": 21, RAW: 35}}
    assert s2[0]["address"] == {"district": "Pudong", "street": {"name": "Century Avenue"}}


async def test_normalized_round_trip(city: httpx.AsyncClient) -> None:
    assert await query(city, {"type": "Building", "id": JM}) == [JIN_MAO]


async def test_geojson_feature_collection(city: httpx.AsyncClient) -> None:
    got = await city.get(
        "/entities",
        params={"type": "Building,Device", "format": "simplified"},
        headers={"Accept": "application/geo+json"},
    )
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/geo+json")
    body = got.json()
    assert set(body) - {"@context"} == {"type", "features"}
    assert body["type"] == "FeatureCollection"
    features = body["features"]
    assert [(f["id"], f["type"]) for f in features] == [(i, "Feature") for i in (JM, SH, CAM, GW)]
    assert [f["geometry"] for f in features] == [
        {"type": "Point", "coordinates": list(POINTS[JM])},
        {"type": "Point", "coordinates": list(POINTS[SH])},
        None,
        None,
    ]
    assert features[3]["properties"] == {"type": "Device", "name": "Gateway"}
    assert features[0]["properties"]["location"] == features[0]["geometry"]
    assert features[0]["properties"]["height"] == 421


async def test_geojson_of_a_geo_query(city: httpx.AsyncClient) -> None:
    got = await city.get(
        "/entities",
        params={"georel": "within", "geometry": "Polygon", "coordinates": BOX},
        headers={"Accept": "application/geo+json"},
    )
    features = got.json()["features"]
    assert [f["id"] for f in features] == [S2, JM, SH, LJZ]
    assert features[3]["geometry"] == {"type": "Polygon", "coordinates": LJZ_AREA}
    assert features[3]["properties"]["location"]["type"] == "GeoProperty"


# -- join ------------------------------------------------------------------------------------------


async def test_join_inline(city: httpx.AsyncClient) -> None:
    base = {"type": "AirQualitySensor", "q": f"refBuilding=={SH}", "join": "inline"}
    one = await query(city, {**base, "joinLevel": "1"})
    assert [e["id"] for e in one] == [S2]
    tower = one[0]["refBuilding"]["entity"]
    assert tower["id"] == SH and tower["height"] == prop(632)
    assert tower["refDistrict"] == rel(LJZ)  # not followed at level 1
    two = await query(city, {**base, "joinLevel": "2"})
    district = two[0]["refBuilding"]["entity"]["refDistrict"]["entity"]
    assert district["id"] == LJZ and district["name"] == prop("Lujiazui")
    picked = await query(city, {**base, "pick": "id,refBuilding{id,height}"})
    assert picked == [
        {"id": S2, "refBuilding": {**rel(SH), "entity": {"id": SH, "height": prop(632)}}}
    ]


async def test_join_inline_missing_target_and_simplified(city: httpx.AsyncClient) -> None:
    got = await query(
        city, {"type": "Building", "id": JM, "join": "inline", "pick": "id,owner,refDistrict"}
    )
    assert got[0]["owner"] == rel("urn:ngsi-ld:Organization:Jinmao")  # nothing to attach
    assert got[0]["refDistrict"]["entity"]["id"] == LJZ
    params = {
        "type": "AirQualitySensor",
        "q": f"refBuilding=={SH}",
        "join": "inline",
        "joinLevel": "2",
        "format": "simplified",
        "pick": "id,refBuilding{name,refDistrict{name}}",
    }
    simple = await query(city, params)
    assert simple == [
        {"id": S2, "refBuilding": {"name": "Shanghai Tower", "refDistrict": {"name": "Lujiazui"}}}
    ]


async def test_join_flat(city: httpx.AsyncClient) -> None:
    base = {"type": "AirQualitySensor", "q": f"refBuilding=={SH}", "join": "flat"}
    assert await ids(city, {**base, "joinLevel": "1"}) == [S2, SH]
    level2 = await query(city, {**base, "joinLevel": "2"})
    assert [e["id"] for e in level2] == [S2, SH, LJZ]
    assert level2[0]["refBuilding"] == rel(SH) and level2[1]["refDistrict"] == rel(LJZ)
    shared = {"type": "AirQualitySensor,Camera", "q": f"refBuilding=={JM}", "join": "flat"}
    assert await ids(city, shared) == [S1, CAM, JM]  # the tower once
    assert await ids(city, {**shared, "pick": "id"}) == [S1, CAM]  # refBuilding not shown
    simple = await query(city, {**shared, "format": "simplified", "pick": "id,refBuilding{name}"})
    assert simple == [
        {"id": S1, "refBuilding": JM},
        {"id": CAM, "refBuilding": JM},
        {"name": "Jin Mao Tower"},
    ]


# -- POST /entityOperations/query ------------------------------------------------------------------

POST_CASES = [
    ({"entities": [{"type": "Building"}]}, [JM, SH]),
    ({"entities": [{"type": "Building,District"}]}, [JM, SH, LJZ]),
    ({"entities": [{"type": "Camera;Device"}]}, [CAM]),
    ({"entities": [{"type": "AirQualitySensor", "id": S3}]}, [S3]),
    ({"entities": [{"type": "Building", "id": S3}]}, []),
    ({"entities": [{"type": "AirQualitySensor", "id": S1}, {"type": "Device", "id": GW}]},
     [S1, GW]),
    ({"entities": [{"type": "Building"}, {"type": "AirQualitySensor", "idPattern": ".*00[12]"}]},
     [S1, S2, JM, SH]),
    ({"attrs": ["height"]}, [JM, SH]),
    ({"attrs": ["temperature", "height"], "entities": [{"type": "AirQualitySensor"}]}, [S2, S3]),
    ({"entities": [{"type": "AirQualitySensor"}], "q": "pm25>60"}, [S2, S3]),
    ({"q": "active==true"}, [S1, S3, CAM]),
    ({"scopeQ": "/Shanghai/Huangpu/#"}, [S1, CAM]),
    ({"geoQ": {"georel": "near;maxDistance==3300", "geometry": "Point",
               "coordinates": [121.4737, 31.2304]}}, [S1, JM, SH, LJZ]),
    ({"geoQ": {"georel": "within", "geometry": "Polygon", "coordinates": BOX},
      "entities": [{"type": "Building"}]}, [JM, SH]),
    ({"geoQ": {"georel": "contains", "geometry": "Point", "coordinates": S2_POINT,
               "geoproperty": "location"}, "q": "name~=Lujiazui.*"}, [S2, LJZ]),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), POST_CASES)
async def test_post_query(
    city: httpx.AsyncClient, body: dict[str, Any], expected: list[str]
) -> None:
    got = await city.post("/entityOperations/query", json={"type": "Query", **body})
    assert got.status_code == 200, got.text
    assert [e["id"] for e in got.json()] == by_id(*expected)


async def test_post_query_projection_paging_and_join(city: httpx.AsyncClient) -> None:
    body = {"type": "Query", "attrs": ["height"]}
    got = (await city.post("/entityOperations/query", json=body)).json()
    assert got == [
        {"id": JM, "type": "Building", "height": prop(421)},
        {"id": SH, "type": "Building", "height": prop(632)},
    ]
    body = {"type": "Query", "entities": [{"type": "AirQualitySensor"}], "q": "pm25>60"}
    paged = await city.post("/entityOperations/query?count=true&limit=1", json=body)
    assert [e["id"] for e in paged.json()] == [S2]
    assert paged.headers["NGSILD-Results-Count"] == "2"
    body = {
        "type": "Query",
        "entities": [{"type": "Building"}],
        "pick": ["id", "refDistrict{name}"],
        "join": "inline",
    }
    joined = (await city.post("/entityOperations/query", json=body)).json()
    assert [(e["id"], e["refDistrict"]["entity"]) for e in joined] == [
        (JM, {"name": prop("Lujiazui")}),
        (SH, {"name": prop("Lujiazui")}),
    ]
    simple = await city.post(
        "/entityOperations/query?format=simplified",
        json={"type": "Query", "entities": [{"type": "Device", "id": GW}]},
    )
    assert simple.json() == [{"id": GW, "type": "Device", "name": "Gateway"}]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "Query"}, "a Query needs"),
        ({"type": "Subscription", "entities": [{"type": "Building"}]}, "Query object"),
        ({"type": "Query", "entities": {"type": "Building"}}, "non-empty list"),
        ({"type": "Query", "entities": []}, "non-empty list"),
        ({"type": "Query", "entities": [{"idPattern": "x"}]}, "needs a type"),
        ({"type": "Query", "entities": [{"type": "Building", "id": "nope"}]}, "must be a URI"),
        ({"type": "Query", "attrs": "height"}, "list of attribute names"),
        ({"type": "Query", "q": "height>"}, "expected a value"),
        ({"type": "Query", "geoQ": "near"}, "geoQ must be an object"),
        ({"type": "Query", "geoQ": {"georel": "within", "geometry": "Point"}}, "together"),
    ],
)
async def test_bad_post_query(city: httpx.AsyncClient, body: Any, fragment: str) -> None:
    got = await city.post("/entityOperations/query", json=body)
    assert fragment in problem(got, 400, "BadRequestData")["detail"]


# -- purge -----------------------------------------------------------------------------------------


async def test_purge_with_q(city: httpx.AsyncClient) -> None:
    purged = await city.delete("/entities", params={"type": "AirQualitySensor", "q": "pm25>60"})
    assert purged.status_code == 204
    assert await ids(city, {"type": "*"}) == by_id(S1, S4, JM, SH, CAM, GW, LJZ)
    assert (await city.delete("/entities", params={"q": "height>500"})).status_code == 204
    assert await ids(city, {"type": "*"}) == by_id(S1, S4, JM, CAM, GW, LJZ)
    assert await ids(city, {"q": "pm25>0"}) == [S1]


async def test_purge_with_scope_and_bad_purges(city: httpx.AsyncClient) -> None:
    assert (await city.delete("/entities", params={"scopeQ": "/Shanghai/#"})).status_code == 204
    assert await ids(city, {"type": "*"}) == by_id(S4, JM, SH, GW, LJZ)
    problem(await city.delete("/entities"), 400, "BadRequestData")
    problem(await city.delete("/entities", params={"q": "height>"}), 400, "BadRequestData")
    assert len(await ids(city, {"type": "*"})) == 5


# -- discovery -------------------------------------------------------------------------------------

SENSOR_ATTRS = {
    "active",
    "address",
    "name",
    "pm25",
    "refBuilding",
    "tags",
    "temperature",
    "location",
}
BUILDING_ATTRS = {"height", "label", "name", "owner", "refDistrict", "location"}


async def test_types(city: httpx.AsyncClient) -> None:
    for path in ("/types", "/types/"):
        body = (await city.get(path)).json()
        assert body["type"] == "EntityTypeList"
        assert body["id"].startswith("urn:ngsi-ld:EntityTypeList:")
        assert sorted(body["typeList"]) == [
            "AirQualitySensor",
            "Building",
            "Camera",
            "Device",
            "District",
        ]
    await city.delete(f"/entities/{LJZ}")
    after = (await city.get("/types")).json()
    assert "District" not in after["typeList"]


async def test_types_details(city: httpx.AsyncClient) -> None:
    body = (await city.get("/types", params={"details": "true"})).json()
    assert {e["typeName"]: set(e["attributeNames"]) for e in body} == {
        "AirQualitySensor": SENSOR_ATTRS,
        "Building": BUILDING_ATTRS,
        "Camera": {"active", "name", "refBuilding"},
        "Device": {"active", "name", "refBuilding"},
        "District": {"name", "location"},
    }
    assert all(e["type"] == "EntityType" and e["id"] == DEFAULT + e["typeName"] for e in body)


async def test_entity_type_info(city: httpx.AsyncClient) -> None:
    body = (await city.get("/types/Building")).json()
    details = sorted(body.pop("attributeDetails"), key=lambda a: a["attributeName"])
    assert body == {
        "id": DEFAULT + "Building",
        "type": "EntityTypeInfo",
        "typeName": "Building",
        "entityCount": 2,
    }
    kinds = {
        "height": "Property",
        "label": "LanguageProperty",
        "location": "GeoProperty",
        "name": "Property",
        "owner": "Relationship",
        "refDistrict": "Relationship",
    }
    assert details == [
        {
            "id": ("https://uri.etsi.org/ngsi-ld/" if n == "location" else DEFAULT) + n,
            "type": "Attribute",
            "attributeName": n,
            "attributeTypes": [kind],
        }
        for n, kind in sorted(kinds.items())
    ]
    device = (await city.get(f"/types/{DEFAULT}Device")).json()
    assert device["entityCount"] == 2 and device["typeName"] == "Device"
    missing = await city.get("/types/Parking")
    assert "Parking" in problem(missing, 404, "ResourceNotFound")["detail"]


async def test_attributes(city: httpx.AsyncClient) -> None:
    body = (await city.get("/attributes")).json()
    assert body["type"] == "AttributeList"
    assert body["id"].startswith("urn:ngsi-ld:AttributeList:")
    assert sorted(body["attributeList"]) == sorted(SENSOR_ATTRS | BUILDING_ATTRS)
    details = (await city.get("/attributes", params={"details": "true"})).json()
    assert {e["attributeName"]: e["typeNames"] for e in details} == {
        "active": ["AirQualitySensor", "Camera", "Device"],
        "address": ["AirQualitySensor"],
        "height": ["Building"],
        "label": ["Building"],
        "location": ["AirQualitySensor", "Building", "District"],
        "name": ["AirQualitySensor", "Building", "Camera", "Device", "District"],
        "owner": ["Building"],
        "pm25": ["AirQualitySensor"],
        "refBuilding": ["AirQualitySensor", "Camera", "Device"],
        "refDistrict": ["Building"],
        "tags": ["AirQualitySensor"],
        "temperature": ["AirQualitySensor"],
    }
    assert all(set(e) == {"id", "type", "attributeName", "typeNames"} for e in details)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("refBuilding", {"id": DEFAULT + "refBuilding", "attributeCount": 3,
                         "attributeTypes": ["Relationship"],
                         "typeNames": ["AirQualitySensor", "Camera", "Device"]}),
        ("location", {"id": "https://uri.etsi.org/ngsi-ld/location", "attributeCount": 7,
                      "attributeTypes": ["GeoProperty"],
                      "typeNames": ["AirQualitySensor", "Building", "District"]}),
        ("label", {"id": DEFAULT + "label", "attributeCount": 2,
                   "attributeTypes": ["LanguageProperty"], "typeNames": ["Building"]}),
        ("pm25", {"id": DEFAULT + "pm25", "attributeCount": 4, "attributeTypes": ["Property"],
                  "typeNames": ["AirQualitySensor"]}),
    ],
)  # fmt: skip
async def test_attribute(city: httpx.AsyncClient, name: str, expected: dict[str, Any]) -> None:
    got = await city.get(f"/attributes/{name}")
    assert got.json() == {"type": "Attribute", "attributeName": name, **expected}


async def test_unknown_attribute(city: httpx.AsyncClient) -> None:
    got = await city.get("/attributes/humidity")
    assert "humidity" in problem(got, 404, "ResourceNotFound")["detail"]


# -- inputs that must be refused, not crash ------------------------------------------------------


async def status_of(client: httpx.AsyncClient, params: dict[str, str]) -> int:
    """The status, with an escaping server exception turned into a one-line failure."""
    try:
        return (await client.get("/entities", params=params)).status_code
    except Exception as exc:
        raise AssertionError(f"the server raised {type(exc).__name__}") from None


async def test_huge_integer_in_q(city: httpx.AsyncClient) -> None:
    assert await status_of(city, {"q": "pm25==99999999999999999999"}) in (200, 400)


@pytest.mark.parametrize(
    "params",
    [
        {"q": "name~=x{99999999999}"},
        {"type": "Building", "idPattern": "x{99999999999}"},
        {"type": "Building", "idPattern": "(" * 1500},
    ],
    ids=["q-overflow", "idPattern-overflow", "idPattern-recursion"],
)
async def test_unusable_regex(city: httpx.AsyncClient, params: dict[str, str]) -> None:
    # re.compile raises OverflowError and RecursionError for these, not re.error
    assert await status_of(city, params) == 400


async def test_deeply_nested_pick(city: httpx.AsyncClient) -> None:
    pick = "a{" * 1200 + "b" + "}" * 1200
    assert await status_of(city, {"type": "Building", "pick": pick}) == 400
