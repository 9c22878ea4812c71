"""The temporal API (5.6.11-5.6.16, 5.7.3-5.7.4) and the history every write keeps."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from citytwin.timeline import retain
from tests.conftest import BASE

JSON = {"Content-Type": "application/json"}
CAR = "urn:ngsi-ld:Vehicle:1"
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


def at(minute: int, day: int = 1) -> str:
    moment = datetime(2020, 8, day, 12, 0, tzinfo=UTC) + timedelta(minutes=minute)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def obs(value: Any, minute: int, **extra: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": at(minute), **extra}


def vehicle(ident: str = CAR, **attrs: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": ident,
        "type": "Vehicle",
        "speed": [obs(120, 3), obs(80, 5), obs(100, 7)],
        "fuelLevel": [obs(67, 3), obs(53, 65), obs(40, 127, datasetId="urn:ngsi-ld:ds:fuel")],
    }
    body.update(attrs)
    return body


async def temporal(client: httpx.AsyncClient, path: str = CAR, **params: Any) -> httpx.Response:
    return await client.get(f"/temporal/entities/{path}", params=params)


def values(body: dict[str, Any], attr: str) -> list[Any]:
    return [i.get("value") for i in body.get(attr, [])]


async def test_temporal_create_makes_the_current_state_and_the_history(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/ngsi-ld/v1/temporal/entities/{CAR}"
    current = (await client.get(f"/entities/{CAR}")).json()
    assert current["speed"]["value"] == 100  # the instance observed last
    assert {i["value"] for i in current["fuelLevel"]} == {53, 40}  # per datasetId
    body = (await temporal(client)).json()
    assert values(body, "speed") == [120, 80, 100]
    assert values(body, "fuelLevel") == [67, 53, 40]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:Instance:") for i in body["speed"])
    assert "createdAt" not in body["speed"][0]


async def test_temporal_create_again_adds_and_replaces_same_instants(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    again = {"id": CAR, "type": "Vehicle", "speed": [obs(121, 3), obs(90, 9)]}
    r = await client.post("/temporal/entities/", json=again, headers=JSON)
    assert r.status_code == 204, r.text
    body = (await temporal(client, attrs="speed")).json()
    assert values(body, "speed") == [121, 80, 100, 90]
    assert (await client.get(f"/entities/{CAR}")).json()["speed"]["value"] == 90


async def test_every_core_write_appends_to_the_history(client: httpx.AsyncClient) -> None:
    entity = {"id": CAR, "type": "Vehicle", "speed": obs(10, 0), "name": {"type": "Property",
              "value": "bus"}}  # fmt: skip
    await client.post("/entities", json=entity, headers=JSON)
    await client.patch(f"/entities/{CAR}/attrs/speed", json=obs(20, 1), headers=JSON)
    await client.patch(f"/entities/{CAR}/attrs", json={"speed": obs(30, 2)}, headers=JSON)
    await client.post(
        "/entityOperations/upsert", json=[{**entity, "speed": obs(40, 3)}], headers=JSON
    )
    await client.patch(f"/entities/{CAR}", json={"speed": obs(50, 4)}, headers=JSON)
    replaced = {"type": "Vehicle", "speed": obs(60, 5), "name": entity["name"]}
    assert (await client.put(f"/entities/{CAR}", json=replaced, headers=JSON)).status_code == 204
    twice = {"id": CAR, "type": "Vehicle", "speed": obs(70, 6)}
    await client.post("/entityOperations/upsert", json=[twice, twice], headers=JSON)
    body = (await temporal(client)).json()
    assert values(body, "speed") == [10, 20, 30, 40, 50, 60, 70]  # once each
    assert "name" not in body  # never observed: no observedAt instance
    made = (await temporal(client, timeproperty="createdAt", attrs="name")).json()
    # created, upserted, replaced, then dropped by an upsert (which replaces) without it
    assert values(made, "name") == ["bus", "bus", "bus", "urn:ngsi-ld:null"]


async def test_deleting_an_attribute_leaves_a_tombstone(client: httpx.AsyncClient) -> None:
    body = vehicle(
        isParkedIn=[{"type": "Relationship", "object": "urn:ngsi-ld:P:1", "observedAt": at(1)}],
        scope=["/a/b"],
    )
    await client.post("/temporal/entities", json=body, headers=JSON)
    for attr in ("speed", "isParkedIn", "scope"):
        r = await client.delete(f"/entities/{CAR}/attrs/{attr}")
        assert r.status_code == 204, (attr, r.text)
    gone = (await temporal(client, timeproperty="deletedAt")).json()
    assert set(gone) == {"id", "type", "speed", "isParkedIn", "scope"}
    assert [i["value"] for i in gone["speed"]] == ["urn:ngsi-ld:null"]
    assert gone["isParkedIn"][0]["object"] == "urn:ngsi-ld:null"
    assert gone["scope"][0]["value"] == []
    assert all("deletedAt" in gone[a][0] for a in ("speed", "isParkedIn", "scope"))
    simple = (await temporal(client, timeproperty="deletedAt", options="temporalValues")).json()
    assert simple["isParkedIn"]["objects"][0][0] == "urn:ngsi-ld:null"
    observed = (await temporal(client)).json()
    assert values(observed, "speed") == [120, 80, 100]  # the history itself stays


async def test_time_windows(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    before = (await temporal(client, timerel="before", timeAt=at(5), attrs="speed")).json()
    assert values(before, "speed") == [120]  # before is exclusive
    after = (await temporal(client, timerel="after", timeAt=at(5), attrs="speed")).json()
    assert values(after, "speed") == [80, 100]  # after is inclusive
    between = await temporal(client, timerel="between", timeAt=at(4), endTimeAt=at(7))
    assert values(between.json(), "speed") == [80]
    assert "fuelLevel" not in between.json()  # no instance in the window: left out
    last = (await temporal(client, lastN=2, attrs="speed")).json()
    assert values(last, "speed") == [80, 100]


async def test_simplified_representation(client: httpx.AsyncClient) -> None:
    name = [
        {"type": "LanguageProperty", "languageMap": {"en": "bus", "fr": "car"}, "observedAt": at(1)}
    ]
    await client.post("/temporal/entities", json=vehicle(name=name), headers=JSON)
    body = (await temporal(client, options="temporalValues")).json()
    assert body["speed"] == {
        "type": "Property",
        "values": [[120, at(3)], [80, at(5)], [100, at(7)]],
    }
    assert body["name"]["languageMaps"] == [[{"languageMap": {"en": "bus", "fr": "car"}}, at(1)]]
    fuel = body["fuelLevel"]
    assert isinstance(fuel, list) and len(fuel) == 2  # one wrapper per datasetId
    assert {f.get("datasetId") for f in fuel} == {None, "urn:ngsi-ld:ds:fuel"}
    only = (await temporal(client, format="temporalValues", datasetId="@none")).json()
    assert only["fuelLevel"]["values"] == [[67, at(3)], [53, at(65)]]


def _expected(samples: list[tuple[int, float]], period: int) -> dict[int, list[float]]:
    """Minutes' values by period (period in seconds, from the first sample)."""
    buckets: dict[int, list[float]] = {}
    origin = samples[0][0] * 60
    for minute, value in samples:
        buckets.setdefault((minute * 60 - origin) // period, []).append(value)
    return buckets


def _second(origin_minute: int, seconds: int) -> str:
    moment = datetime(2020, 8, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=origin_minute)
    return (moment + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# PT1H: a few periods, each read as one index range; PT1S: more periods than that is worth
# (one GROUP BY instead); both checked against the same independent computation
@pytest.mark.parametrize(("duration", "seconds"), [("PT1H", 3600), ("PT1S", 1)])
async def test_aggregations_match_an_independent_computation(
    client: httpx.AsyncClient, duration: str, seconds: int
) -> None:
    rng = random.Random(7)
    minutes = sorted(rng.sample(range(0, 600), 120))
    samples = [(m, round(rng.uniform(-50, 50), 3)) for m in minutes]
    body = {"id": CAR, "type": "Vehicle", "speed": [obs(v, m) for m, v in samples]}
    assert (await client.post("/temporal/entities", json=body, headers=JSON)).status_code == 201
    methods = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
    r = await temporal(
        client, options="aggregatedValues", aggrMethods=methods, aggrPeriodDuration=duration
    )
    assert r.status_code == 200, r.text
    got = r.json()["speed"]
    expected = _expected(samples, seconds)
    assert len(got["avg"]) == len(expected)
    for i, (bucket, vs) in enumerate(sorted(expected.items())):
        bounds = [
            _second(minutes[0], bucket * seconds),
            _second(minutes[0], (bucket + 1) * seconds),
        ]
        assert got["avg"][i][1:] == bounds
        mean = sum(vs) / len(vs)
        assert got["totalCount"][i][0] == len(vs)
        assert got["distinctCount"][i][0] == len(set(vs))
        assert got["sum"][i][0] == pytest.approx(sum(vs))
        assert got["avg"][i][0] == pytest.approx(mean)
        assert got["min"][i][0] == min(vs) and got["max"][i][0] == max(vs)
        assert got["sumsq"][i][0] == pytest.approx(sum(v * v for v in vs))
        spread = math.sqrt(sum((v - mean) ** 2 for v in vs) / len(vs))
        assert got["stddev"][i][0] == pytest.approx(spread, abs=1e-6)


async def test_aggregation_periods_follow_the_calendar_and_time_at(
    client: httpx.AsyncClient,
) -> None:
    days = ["2020-01-31T00:00:00Z", "2020-02-15T00:00:00Z", "2020-03-01T00:00:00Z"]
    speed = [
        {"type": "Property", "value": v, "observedAt": d}
        for v, d in zip([1, 2, 4], days, strict=True)
    ]
    await client.post("/temporal/entities", json={"id": CAR, "type": "V", "speed": speed},
                      headers=JSON)  # fmt: skip
    month = (await temporal(client, options="aggregatedValues", aggrMethods="sum",
                            aggrPeriodDuration="P1M")).json()  # fmt: skip
    assert month["speed"]["sum"] == [
        [3, "2020-01-31T00:00:00Z", "2020-02-29T00:00:00Z"],
        [4, "2020-02-29T00:00:00Z", "2020-03-31T00:00:00Z"],  # months counted from Jan 31
    ]
    whole = await temporal(client, options="aggregatedValues", aggrMethods="max",
                           timerel="after", timeAt="2020-02-01T00:00:00Z")  # fmt: skip
    assert whole.json()["speed"]["max"] == [[4, "2020-02-01T00:00:00Z", "2020-03-01T00:00:00Z"]]


async def test_aggregating_text_with_a_numeric_method_is_invalid(
    client: httpx.AsyncClient,
) -> None:
    name = [{"type": "Property", "value": v, "observedAt": at(i)} for i, v in enumerate("bab")]
    await client.post("/temporal/entities", json=vehicle(name=name), headers=JSON)
    r = await temporal(client, options="aggregatedValues", aggrMethods="min,max,distinctCount",
                       attrs="name")  # fmt: skip
    assert r.json()["name"]["min"][0][0] == "a" and r.json()["name"]["max"][0][0] == "b"
    assert r.json()["name"]["distinctCount"][0][0] == 2
    r = await temporal(client, options="aggregatedValues", aggrMethods="avg", attrs="name")
    assert r.status_code == 400 and r.json()["type"] == ERRORS + "InvalidRequest"


@pytest.fixture
async def small_pages(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, temporal_limit=4))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE) as c:
            yield c


async def test_long_histories_come_in_pages(small_pages: httpx.AsyncClient) -> None:
    client = small_pages
    speed = [obs(i, i) for i in range(11)]
    fuel = [obs(i, i + 1) for i in range(11)]
    await client.post("/temporal/entities", json={"id": CAR, "type": "V", "speed": speed,
                      "fuelLevel": fuel}, headers=JSON)  # fmt: skip
    seen: dict[str, set[int]] = {"speed": set(), "fuelLevel": set()}
    start = at(0)
    for _ in range(10):
        r = await temporal(client, timerel="after", timeAt=start)
        for attr in seen:
            seen[attr] |= set(values(r.json(), attr))
        if r.status_code == 200:
            break
        assert r.status_code == 206
        unit, _, rest = r.headers["Content-Range"].partition(" ")
        assert unit == "date-time" and rest.endswith("/*")
        assert rest.startswith(start)
        start = rest[len(start) + 1 : -2]
    assert seen == {"speed": set(range(11)), "fuelLevel": set(range(11))}
    back = await temporal(client, lastN=6)
    assert back.status_code == 206
    assert back.headers["Content-Range"].endswith("/6")
    assert max(values(back.json(), "speed")) == 10


async def test_instances_are_modified_and_deleted(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    first = (await temporal(client, options="sysAttrs")).json()["speed"][0]
    path = f"/temporal/entities/{CAR}/attrs/speed/{first['instanceId']}"
    r = await client.patch(path, json=obs(129, 3), headers=JSON)
    assert r.status_code == 204, r.text
    changed = (await temporal(client, options="sysAttrs")).json()["speed"][0]
    assert changed["value"] == 129 and changed["instanceId"] == first["instanceId"]
    assert changed["createdAt"] == first["createdAt"]
    assert changed["modifiedAt"] > first["modifiedAt"]
    assert (await client.delete(path)).status_code == 204
    assert values((await temporal(client)).json(), "speed") == [80, 100]
    assert (await client.delete(path)).status_code == 404
    assert (await client.patch(f"/temporal/entities/{CAR}/attrs/speed/", json=obs(1, 1),
                               headers=JSON)).status_code == 405  # fmt: skip
    bad = await client.delete(f"/temporal/entities/{CAR}/attrs/speed/notAUri")
    assert bad.status_code == 400


async def test_deleting_attribute_history(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    r = await client.delete(f"/temporal/entities/{CAR}/attrs/fuelLevel")
    assert r.status_code == 204, r.text
    left = (await temporal(client)).json()["fuelLevel"]
    assert [i.get("datasetId") for i in left] == ["urn:ngsi-ld:ds:fuel"]
    r = await client.delete(
        f"/temporal/entities/{CAR}/attrs/fuelLevel", params={"deleteAll": "true"}
    )
    assert r.status_code == 204
    assert "fuelLevel" not in (await temporal(client)).json()
    r = await client.delete(f"/temporal/entities/{CAR}/attrs/nothing")
    assert r.status_code == 404 and r.json()["type"] == ERRORS + "ResourceNotFound"


async def test_deleting_the_entity_deletes_its_history(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    assert (await client.delete(f"/temporal/entities/{CAR}")).status_code == 204
    assert (await temporal(client)).status_code == 404
    assert (await client.get(f"/entities/{CAR}")).status_code == 404
    await client.post("/temporal/entities", json=vehicle(speed=[obs(1, 1)]), headers=JSON)
    assert values((await temporal(client)).json(), "speed") == [1]


async def test_query_selects_entities_with_instances_in_the_window(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    later = vehicle("urn:ngsi-ld:Vehicle:2", speed=[obs(1, 600)], fuelLevel=[obs(2, 600)])
    await client.post("/temporal/entities", json=later, headers=JSON)
    window = {"type": "Vehicle", "timerel": "after", "timeAt": at(300), "count": "true"}
    r = await client.get("/temporal/entities", params=window)
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:2"]
    assert r.headers["NGSILD-Results-Count"] == "1"
    q = {"type": "Query", "entities": [{"type": "Vehicle"}],
         "temporalQ": {"timerel": "before", "timeAt": at(300)}}  # fmt: skip
    r = await client.post("/temporal/entityOperations/query", json=q, headers=JSON)
    assert [e["id"] for e in r.json()] == [CAR]
    r = await client.get("/temporal/entities", params={"type": "Vehicle", "timerel": "after",
                         "timeAt": at(0), "q": "speed>50", "attrs": "speed"})  # fmt: skip
    assert [e["id"] for e in r.json()] == [CAR]
    assert set(r.json()[0]) == {"id", "type", "speed"}


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"timerel": "after"}, "BadRequestData"),
        ({"timerel": "between", "timeAt": at(1)}, "BadRequestData"),
        ({"timerel": "during", "timeAt": at(1)}, "BadRequestData"),
        ({"timerel": "after", "timeAt": "yesterday"}, "BadRequestData"),
        ({"timerel": "between", "timeAt": at(5), "endTimeAt": at(1)}, "BadRequestData"),
        ({"timeproperty": "seenAt"}, "BadRequestData"),
        ({"lastN": "0"}, "BadRequestData"),
        ({"options": "aggregatedValues"}, "BadRequestData"),
        ({"options": "aggregatedValues", "aggrMethods": "median"}, "BadRequestData"),
        ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1h"},
         "BadRequestData"),
        ({"format": "fancy"}, "InvalidRequest"),
        ({"options": "temporalValues,shiny"}, "InvalidRequest"),
    ],
)  # fmt: skip
async def test_bad_temporal_parameters(
    client: httpx.AsyncClient, params: dict[str, str], error: str
) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    r = await temporal(client, **params)
    assert r.status_code == 400 and r.json()["type"] == ERRORS + error, r.text


async def test_a_query_needs_a_temporal_query(client: httpx.AsyncClient) -> None:
    r = await client.get("/temporal/entities", params={"type": "Vehicle"})
    assert r.status_code == 400 and r.json()["type"] == ERRORS + "BadRequestData"


@pytest.mark.parametrize(
    "body",
    [
        {"id": CAR, "type": "Vehicle", "speed": [obs(1, 1), {"type": "Property"}]},
        {"id": CAR, "type": "Vehicle", "speed": [obs(1, 1), {**obs(2, 2), "observedAt": "now"}]},
        {"id": "not a uri", "type": "Vehicle", "speed": [obs(1, 1)]},
        {"type": "Vehicle", "speed": [obs(1, 1)]},
    ],
)
async def test_bad_temporal_bodies_store_nothing(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    before = (await temporal(client, options="sysAttrs")).json()
    r = await client.post("/temporal/entities", json=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert (await temporal(client, options="sysAttrs")).json() == before


async def test_a_failed_batch_member_leaves_no_history(client: httpx.AsyncClient) -> None:
    good = {"id": CAR, "type": "Vehicle", "speed": obs(1, 1)}
    bad = {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle", "speed": obs(1, 1)}
    await client.post("/entities", json=bad, headers=JSON)
    r = await client.post("/entityOperations/create", json=[good, bad], headers=JSON)
    assert r.status_code == 207
    assert values((await temporal(client)).json(), "speed") == [1]
    other = (await temporal(client, "urn:ngsi-ld:Vehicle:2", timeproperty="createdAt")).json()
    assert len(other["speed"]) == 1  # only its own create, not the failed one


async def test_retention_drops_old_instances(settings: Settings) -> None:
    app = create_app(replace(settings, history_days=30))
    async with app.router.lifespan_context(app):  # retention runs once at start, then hourly
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test" + BASE) as c:
            await c.post("/temporal/entities", json=vehicle(), headers=JSON)
            recent = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            extra = {"speed": [{"type": "Property", "value": 5, "observedAt": recent}]}
            await c.post(f"/temporal/entities/{CAR}/attrs", json=extra, headers=JSON)
            store = app.state.citytwin.broker.store
            task = asyncio.create_task(retain(store, days=30, every=3600))
            await asyncio.sleep(0.3)
            task.cancel()
            body = (await temporal(c)).json()
    assert values(body, "speed") == [5] and "fuelLevel" not in body


async def _hourly_from_instances(client: httpx.AsyncClient, since: str) -> dict[str, list[Any]]:
    """The oracle: hourly count/sum/min/max computed here from the instances themselves."""
    instances = (await temporal(client, timerel="after", timeAt=since, attrs="speed")).json()
    hours: dict[str, list[float]] = {}
    for inst in instances.get("speed", []):
        if isinstance(inst["value"], int | float):
            hours.setdefault(inst["observedAt"][:13], []).append(inst["value"])
    return {h: [len(v), sum(v), min(v), max(v)] for h, v in sorted(hours.items())}


async def _hourly_aggregated(client: httpx.AsyncClient, since: str) -> dict[str, list[Any]]:
    r = await temporal(client, timerel="after", timeAt=since, attrs="speed",
                       options="aggregatedValues", aggrMethods="totalCount,sum,min,max",
                       aggrPeriodDuration="PT1H")  # fmt: skip
    speed = r.json().get("speed", {})
    got: dict[str, list[Any]] = {}
    for method in ("totalCount", "sum", "min", "max"):
        for value, start, _ in speed.get(method, []):
            got.setdefault(start[:13], []).append(value)
    return got


async def test_hourly_rollups_stay_exact_through_every_kind_of_change(
    client: httpx.AsyncClient,
) -> None:
    """Aggregations on whole hours read roll-ups; whatever changes instances, they must agree
    with the instances themselves."""
    rng = random.Random(11)
    speed = [obs(rng.randint(0, 100), m) for m in range(0, 300, 7)]
    await client.post("/temporal/entities", json={"id": CAR, "type": "V", "speed": speed},
                      headers=JSON)  # fmt: skip
    since = "2020-08-01T12:00:00Z"  # an hour boundary: the periods are whole hours
    for step in range(12):
        kind = step % 4
        if kind == 0:  # the temporal upsert replaces instances at the same instant
            again = [obs(rng.randint(0, 100), m) for m in rng.sample(range(0, 300, 7), 5)]
            await client.post("/temporal/entities", json={"id": CAR, "type": "V",
                              "speed": again}, headers=JSON)  # fmt: skip
        elif kind == 1:  # a device reading through the core API
            reading = obs(rng.randint(0, 100), rng.randint(0, 299))
            await client.patch(f"/entities/{CAR}/attrs/speed", json=reading, headers=JSON)
        else:
            shown = (await temporal(client, attrs="speed")).json()["speed"]
            one = rng.choice(shown)["instanceId"]
            path = f"/temporal/entities/{CAR}/attrs/speed/{one}"
            if kind == 2:  # corrected: a new value, maybe in another hour
                fixed = obs(rng.randint(0, 100), rng.randint(0, 299))
                assert (await client.patch(path, json=fixed, headers=JSON)).status_code == 204
            else:
                assert (await client.delete(path)).status_code == 204
        assert await _hourly_aggregated(client, since) == await _hourly_from_instances(
            client, since
        ), f"after step {step}"
    two_hours = await temporal(client, timerel="after", timeAt=since, attrs="speed",
                               options="aggregatedValues", aggrMethods="sum",
                               aggrPeriodDuration="PT2H")  # fmt: skip
    hourly = await _hourly_from_instances(client, since)
    expected: dict[str, float] = {}
    for hour, (_, total, _, _) in hourly.items():
        start = int(hour[-2:]) - (int(hour[-2:]) - 12) % 2
        key = f"{hour[:-2]}{start:02d}"
        expected[key] = expected.get(key, 0) + total
    got = {s[:13]: v for v, s, _ in two_hours.json()["speed"]["sum"]}
    assert got == pytest.approx(expected)


async def test_stddev_of_large_values_does_not_cancel_out(client: httpx.AsyncClient) -> None:
    speed = [obs(1e9 + v, v) for v in range(4)]
    await client.post("/temporal/entities", json=vehicle(speed=speed), headers=JSON)
    r = await temporal(client, options="aggregatedValues", aggrMethods="stddev,sum", attrs="speed")
    assert r.json()["speed"]["stddev"][0][0] == pytest.approx(math.sqrt(1.25))
    big = {"speed": {"type": "Property", "value": 2**70, "observedAt": at(9)}}
    assert (await client.patch(f"/entities/{CAR}/attrs", json=big, headers=JSON)).status_code == 204


async def test_pages_always_move_on(small_pages: httpx.AsyncClient) -> None:
    """More instances than a page at one instant (one temporal write: one createdAt)."""
    client = small_pages
    speed = [obs(i, i) for i in range(9)]
    await client.post("/temporal/entities", json=vehicle(speed=speed), headers=JSON)
    r = await temporal(client, timeproperty="createdAt", attrs="speed")
    assert r.status_code == 200 and values(r.json(), "speed") == list(range(9))


async def test_instance_ids_are_never_reused(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    last = (await temporal(client, attrs="speed")).json()["speed"][-1]["instanceId"]
    await client.delete(f"/temporal/entities/{CAR}/attrs/speed/{last}")
    await client.patch(f"/entities/{CAR}/attrs/speed", json=obs(1, 30), headers=JSON)
    ids = [i["instanceId"] for i in (await temporal(client, attrs="speed")).json()["speed"]]
    assert last not in ids


async def test_scope_instances_can_be_corrected(client: httpx.AsyncClient) -> None:
    await client.post("/temporal/entities", json=vehicle(scope=["/a"]), headers=JSON)
    one = (await temporal(client, timeproperty="createdAt", attrs="scope")).json()["scope"][0]
    path = f"/temporal/entities/{CAR}/attrs/scope/{one['instanceId']}"
    assert (await client.delete(path)).status_code == 204


@pytest.mark.parametrize(
    "params",
    [
        {"lastN": "²"},
        {"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "P9000Y"},
        {"options": "aggregatedValues", "aggrMethods": "sum", "aggrPeriodDuration": "P99999999D"},
        {"timerel": "after", "timeAt": "0001-01-01T00:00:00+01:00"},
    ],
)
async def test_odd_values_are_bad_requests(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    await client.post("/temporal/entities", json=vehicle(), headers=JSON)
    r = await temporal(client, **params)
    assert r.status_code == 400 and r.json()["type"] == ERRORS + "BadRequestData", r.text
    odd = await client.delete(f"/temporal/entities/{CAR}/attrs/speed/urn:ngsi-ld:Instance:²")
    assert odd.status_code == 404
    window = {"timerel": "after", "timeAt": at(0)}
    aggregation = {"aggrMethods": "sum", "aggrPeriodDuration": 5}
    q = {"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": window,
         "aggrParams": aggregation}  # fmt: skip
    r = await client.post("/temporal/entityOperations/query?format=aggregatedValues", json=q,
                          headers=JSON)  # fmt: skip
    assert r.status_code == 400
