"""Hypothesis against GET /entities: random and mutated q, type, scopeQ, orderBy, pick/omit and
geo-query strings. Whatever arrives, the answer is 200 or a 400/403 ProblemDetails, never a 500,
and it comes back.

The app and its store are made once per test function (not per example): each test runs its own
event loop with asyncio.Runner and drives the ASGI client from hypothesis' synchronous examples.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.strategies import mutated

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def prop(value: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, **extra}


def where(kind: str, coordinates: Any) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": {"type": kind, "coordinates": coordinates}}


AREA = [[[121.495, 31.225], [121.52, 31.225], [121.52, 31.25], [121.495, 31.25], [121.495, 31.225]]]
CITY = [
    {
        "id": "urn:ngsi-ld:AirQualitySensor:001",
        "type": "AirQualitySensor",
        "scope": ["/Shanghai/Huangpu/Bund", "/Partner/Acme"],
        "pm25": prop(50, observedAt="2024-05-01T08:00:00Z", unitCode="GQ", reliability=prop(0.9)),
        "name": prop("Bund Station"),
        "active": prop(True),
        "tags": prop(["outdoor", "traffic"]),
        "address": prop({"district": "Huangpu", "street": {"name": "Zhongshan Road"}}),
        "temperature": [prop(21), prop(35, datasetId="urn:ngsi-ld:Dataset:raw")],
        "refBuilding": {"type": "Relationship", "object": "urn:ngsi-ld:Building:JinMao"},
        "location": where("Point", [121.4903, 31.2397]),
    },
    {
        "id": "urn:ngsi-ld:AirQualitySensor:002",
        "type": "AirQualitySensor",
        "scope": "/Suzhou",
        "pm25": prop("n/a"),
        "name": prop("Suzhou Station"),
        "active": prop(False),
        "location": where("Point", [120.6195, 31.2990]),
    },
    {
        "id": "urn:ngsi-ld:Building:JinMao",
        "type": ["Building", "Landmark"],
        "name": prop("Jin Mao Tower"),
        "height": prop(421.5),
        "label": {"type": "LanguageProperty", "languageMap": {"en": "Jin Mao", "zh": "金茂大厦"}},
        "refDistrict": {"type": "Relationship", "object": "urn:ngsi-ld:District:Lujiazui"},
        "location": where("Point", [121.5015, 31.2375]),
    },
    {
        "id": "urn:ngsi-ld:District:Lujiazui",
        "type": "District",
        "name": prop("Lujiazui"),
        "location": where("Polygon", AREA),
    },
    {"id": "urn:ngsi-ld:Device:002", "type": "Device", "name": prop("Gateway")},
]
TYPES = "AirQualitySensor,Building,District,Device"


class City:
    """A populated app on its own event loop, queried synchronously."""

    def __init__(self, runner: asyncio.Runner, client: httpx.AsyncClient) -> None:
        self.runner, self.client = runner, client

    def get(self, params: dict[str, str]) -> httpx.Response:
        request = self.client.get("/entities", params=params)
        return self.runner.run(asyncio.wait_for(request, timeout=10))

    def check(self, params: dict[str, str]) -> httpx.Response:
        response = self.get(params)
        status = response.status_code
        assert status in (200, 400, 403), (status, params, response.text[:300])
        body = response.json()
        if status == 200:
            assert isinstance(body, list)
            assert all(isinstance(e, dict) for e in body)
        else:
            assert body["type"].startswith(ERR), body
            assert body["title"] and body["status"] == status, body
        return response


@contextlib.contextmanager
def running_city(database: str) -> Iterator[City]:
    with asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()

        async def start() -> httpx.AsyncClient:
            app = create_app(Settings(database=database, mqtt="off"))
            await stack.enter_async_context(app.router.lifespan_context(app))
            # a crash must show as the 500 it would be, not as an exception in the test
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            client = httpx.AsyncClient(transport=transport, base_url="http://test/ngsi-ld/v1")
            await stack.enter_async_context(client)
            for entity in CITY:
                created = await client.post("/entities", json=entity)
                assert created.status_code == 201, created.text
            return client

        try:
            yield City(runner, runner.run(start()))
        finally:
            runner.run(stack.aclose())


# -- strategies ------------------------------------------------------------------------------------

TRICKY = list('=!<>~;|()[]{}.,"\\:/#+*?^$ -0123456789eE\tab\x00é金') + [
    "..", "==", "!=", "~=", "//", "://", "%", "%00", "'", "`", "\u2028", "9" * 25, "1e999",
]  # fmt: skip


def noise(seeds: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=30),
        st.lists(st.sampled_from(TRICKY), min_size=1, max_size=20).map("".join),
        mutated(seeds, TRICKY, 0),
        mutated(seeds, TRICKY, 0),
    )


Q_SEEDS = [
    'name=="Jin Mao Tower"',
    "pm25>=50;pm25<100",
    "(pm25>100|active==true);name~=Station",
    "refBuilding==urn:ngsi-ld:Building:JinMao,urn:ngsi-ld:Building:X",
    'pm25.observedAt>=2024-05-01T00:00:00Z;pm25.unitCode=="GQ"',
    'address[street][name]=="Zhongshan Road"',
    "pm25==40..80|temperature!=-1.5e3",
    "https://uri.etsi.org/ngsi-ld/default-context/height>400",
    'label[zh]=="金茂大厦";tags!=true,false',
    "pm25.reliability>0.5;temperature.datasetId==urn:ngsi-ld:Dataset:raw",
    'name~="^(Bund|Jin)"',
    "height",
]
TYPE_SEEDS = [
    "AirQualitySensor",
    "(Building;Landmark),District",
    "https://uri.etsi.org/ngsi-ld/default-context/Device|Building",
    "Building;(Landmark|District)",
]
SCOPE_SEEDS = ["/Shanghai/Huangpu/#", "/Shanghai/+/Bund;/Partner/#", "(/Suzhou|/#),/a/+", "/#"]
ORDER_SEEDS = [
    "name;desc",
    "type;asc,pm25.observedAt;desc,name;asc",
    "address[street][name],id",
    "createdAt;desc,height",
    "temperature.datasetId,modifiedAt",
]
PICK_SEEDS = ["id,name", "id,refDistrict{id,name}", "type,location,label", "pm25,temperature"]
GEOREL_SEEDS = [
    "near;maxDistance==3300",
    "near;minDistance==10;maxDistance==2e4",
    "near;minDistance==0",
    "within",
    "intersects",
    "disjoint",
    "contains",
    "equals",
    "overlaps",
]
GEOMETRIES = ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
COORDINATE_SEEDS = [
    "[121.4737,31.2304]",
    "[[121.49,31.22],[121.53,31.26]]",
    "[[[121.493,31.22],[121.53,31.22],[121.53,31.26],[121.493,31.26],[121.493,31.22]]]",
    "[[[[0,0],[1,0],[1,1],[0,0]]]]",
]
FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-180, 180),
    st.sampled_from([0.0, -0.0, 90.0, -90.0, 180.0, -180.0, 1e308, -1e308, 5e-324]),
)
POSITIONS = st.lists(FLOATS, min_size=2, max_size=3)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[str, str]:
    """A geometry name and coordinates of the right nesting, with arbitrary numbers."""
    kind = draw(st.sampled_from(GEOMETRIES))
    if kind == "Point":
        coordinates: Any = draw(POSITIONS)
    elif kind in ("MultiPoint", "LineString"):
        coordinates = draw(st.lists(POSITIONS, min_size=1, max_size=5))
    elif kind == "MultiLineString":
        coordinates = draw(st.lists(st.lists(POSITIONS, min_size=2, max_size=4), max_size=3))
    else:
        ring = draw(st.lists(POSITIONS, min_size=3, max_size=6))
        ring = [*ring, ring[0]]
        coordinates = [ring] if kind == "Polygon" else [[ring]]
    return kind, str(coordinates).replace("'", '"')


GEO = st.one_of(
    st.tuples(st.sampled_from(GEOREL_SEEDS), shapes()),
    st.tuples(
        noise(GEOREL_SEEDS),
        st.tuples(st.sampled_from([*GEOMETRIES, "Circle", "point", ""]), noise(COORDINATE_SEEDS)),
    ),
    st.tuples(
        st.builds("near;maxDistance=={}".format, FLOATS.map(abs)),
        st.tuples(st.just("Point"), st.builds("[{},{}]".format, FLOATS, FLOATS)),
    ),
)


# -- tests -----------------------------------------------------------------------------------------


def test_random_q(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(noise(Q_SEEDS), st.sampled_from([None, TYPES, "AirQualitySensor"]))
        def check(q: str, types: str | None) -> None:
            city.check({"q": q} if types is None else {"q": q, "type": types})

        check()


def test_random_type(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(noise(TYPE_SEEDS), st.sampled_from([{}, {"count": "true"}, {"q": "name"}]))
        def check(types: str, extra: dict[str, str]) -> None:
            city.check({"type": types, **extra})

        check()


def test_random_scope_q(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(noise(SCOPE_SEEDS))
        def check(scope_q: str) -> None:
            city.check({"type": TYPES, "scopeQ": scope_q})

        check()


def test_random_order_by(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(noise(ORDER_SEEDS), st.sampled_from([{}, {"limit": "2", "offset": "1"}]))
        def check(order_by: str, page: dict[str, str]) -> None:
            response = city.check({"type": TYPES, "orderBy": order_by, **page})
            if response.status_code == 200:  # ordering never loses or repeats an entity
                expected = 2 if page else len(CITY)
                got = [e["id"] for e in response.json()]
                assert len(got) == len(set(got)) == expected

        check()


def test_random_pick_and_omit(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(
            noise(PICK_SEEDS),
            st.sampled_from(["pick", "omit"]),
            st.sampled_from([{}, {"join": "inline"}, {"join": "flat", "joinLevel": "2"}]),
        )
        def check(projection: str, what: str, join: dict[str, str]) -> None:
            city.check({"type": TYPES, what: projection, **join})

        check()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # shapely on coordinates near 1e308
def test_random_geo_queries(database_url: str) -> None:
    with running_city(database_url) as city:

        @EXAMPLES
        @given(GEO, st.sampled_from([None, "location", "observationSpace"]))
        def check(geo: tuple[str, tuple[str, str]], geoproperty: str | None) -> None:
            georel, (geometry, coordinates) = geo
            params = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
            if geoproperty is not None:
                params["geoproperty"] = geoproperty
            city.check({"type": TYPES, **params})

        check()


# -- reproductions of what the fuzzers found -------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"q": "pm\x0025==1"},
        {"q": "pm25.\x00x==1"},
        {"q": "pm25[\x00]==1"},
        {"orderBy": "\x00"},
        {"orderBy": "name.\x00"},
        {"pick": "a\x00"},
        {"attrs": "a\x00"},
    ],
    ids=["q-attr", "q-sub", "q-key", "orderBy", "orderBy-sub", "pick", "attrs"],
)
def test_nul_in_attribute_names(database_url: str, params: dict[str, str]) -> None:
    with running_city(database_url) as city:
        assert city.get({"type": TYPES, **params}).status_code == 400


@pytest.mark.parametrize("georel", ["near;maxDistance==3300", "within", "intersects"])
def test_geometry_with_mixed_dimensions(database_url: str, georel: str) -> None:
    params = {"georel": georel, "geometry": "LineString"}
    with running_city(database_url) as city:
        response = city.get({"type": TYPES, **params, "coordinates": "[[121,32],[0,0,0]]"})
        assert response.status_code in (200, 400)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_near_with_huge_coordinates(database_url: str) -> None:
    params = {"georel": "near;minDistance==0", "geometry": "LineString"}
    with running_city(database_url) as city:
        response = city.get({"type": TYPES, **params, "coordinates": "[[0,0],[1e308,0]]"})
        assert response.status_code in (200, 400)
