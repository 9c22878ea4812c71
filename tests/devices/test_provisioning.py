"""The FIWARE IoT Agent provisioning API and the JSON southbound over HTTP (/iot/json)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from citytwin.app import create_app
from citytwin.settings import Settings
from tests.receiver import receiver

NGSI = "/ngsi-ld/v1"
SERVICE = {"fiware-service": "shanghai", "fiware-servicepath": "/museum"}
TENANT = {"NGSILD-Tenant": "shanghai"}
ROBOT = "urn:ngsi-ld:Robot:guide-1"
V = "https://uri.etsi.org/ngsi-ld/default-context/"


@pytest.fixture
async def iot(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def group(**extra: Any) -> dict[str, Any]:
    return {"services": [{"apikey": "museum-key", "entity_type": "Robot", **extra}]}


def robot(**extra: Any) -> dict[str, Any]:
    return {
        "devices": [
            {
                "device_id": "guide-1",
                "entity_name": ROBOT,
                "entity_type": "Robot",
                "transport": "HTTP",
                "attributes": [
                    {"object_id": "b", "name": "battery", "type": "Number",
                     "metadata": {"unitCode": {"type": "Text", "value": "P1"}}},
                    {"object_id": "s", "name": "state", "type": "Text"},
                    {"object_id": "c", "name": "charging", "type": "Boolean"},
                    {"object_id": "n", "name": "visitors", "type": "Integer"},
                    {"object_id": "l", "name": "location", "type": "geo:point"},
                ],
                "commands": [{"name": "greet", "type": "command"}],
                "static_attributes": [{"name": "model", "type": "Text", "value": "H1"}],
                **extra,
            }
        ]
    }  # fmt: skip


async def provisioned(iot: httpx.AsyncClient, **extra: Any) -> None:
    assert (await iot.post("/iot/services", json=group(), headers=SERVICE)).status_code == 201
    assert (await iot.post("/iot/devices", json=robot(**extra), headers=SERVICE)).status_code == 201


async def twin(iot: httpx.AsyncClient, entity_id: str = ROBOT) -> dict[str, Any]:
    got = await iot.get(f"{NGSI}/entities/{entity_id}", headers=TENANT)
    assert got.status_code == 200, got.text
    return got.json()


async def send(iot: httpx.AsyncClient, body: Any, device: str = "guide-1", **params: str) -> Any:
    query = {"k": "museum-key", "i": device, **params}
    return await iot.post("/iot/json", params=query, json=body)


async def test_provisioning_a_device_creates_its_twin(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    body = await twin(iot)
    assert body["type"] == "Robot"
    assert body["model"]["value"] == "H1"
    assert body["greet_status"]["value"] == "UNKNOWN"
    assert body["greet"]["value"] == ""
    listed = (await iot.get("/iot/devices", headers=SERVICE)).json()
    assert listed["count"] == 1
    assert listed["devices"][0]["device_id"] == "guide-1"
    assert listed["devices"][0]["service"] == "shanghai"
    one = await iot.get("/iot/devices/guide-1", headers=SERVICE)
    assert one.json()["entity_name"] == ROBOT
    services = (await iot.get("/iot/services", headers=SERVICE)).json()
    assert [s["apikey"] for s in services["services"]] == ["museum-key"]
    assert services["services"][0]["resource"] == "/iot/json"


async def test_provisioning_survives_a_restart(settings: Settings) -> None:
    for round_ in range(2):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as iot:
                if round_ == 0:
                    await provisioned(iot)
                else:
                    got = await iot.get("/iot/devices/guide-1", headers=SERVICE)
                    assert got.status_code == 200
                    assert (await send(iot, {"b": 50})).status_code == 200
                    assert (await twin(iot))["battery"]["value"] == 50


@pytest.mark.parametrize(
    ("path", "body", "status", "name"),
    [
        ("/iot/services", {"services": [{"entity_type": "Robot"}]}, 400, "WRONG_SYNTAX"),
        ("/iot/services", {"services": []}, 400, "WRONG_SYNTAX"),
        ("/iot/services", {"services": [{"apikey": "a/b"}]}, 400, "WRONG_SYNTAX"),
        ("/iot/services", {"services": [{"apikey": "k", "colour": 1}]}, 400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"entity_type": "Robot"}]}, 400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "entity_name": "no uri"}]}, 400,
         "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "transport": "CoAP"}]}, 400,
         "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "attributes": [{"type": "Number"}]}]},
         400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "static_attributes": [{"name": "x"}]}]},
         400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d"}, {"device_id": "d"}]}, 409,
         "DUPLICATE_DEVICE_ID"),
        ("/iot/devices", {"devices": [{"device_id": "d", "static_attributes": [
            {"name": "x", "type": "Text", "value": None}]}]}, 400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "static_attributes": [
            {"name": "owner", "type": "Relationship", "value": "not a uri"}]}]}, 400,
         "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "attributes": [
            {"object_id": "t", "name": "t", "metadata": ["unitCode"]}]}]}, 400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "attributes": [
            {"object_id": "c", "name": "createdAt"}]}]}, 400, "WRONG_SYNTAX"),
        ("/iot/devices", {"devices": [{"device_id": "d", "attributes": [
            {"object_id": "s", "name": "a b"}]}]}, 400, "WRONG_SYNTAX"),
        ("/iot/services", {"services": [{"apikey": "k", "static_attributes": [
            {"name": "where", "type": "geo:point", "value": "nowhere"}]}]}, 400, "WRONG_SYNTAX"),
    ],
)  # fmt: skip
async def test_bad_provisioning_is_refused_and_stores_nothing(
    iot: httpx.AsyncClient, path: str, body: Any, status: int, name: str
) -> None:
    got = await iot.post(path, json=body, headers=SERVICE)
    assert got.status_code == status, got.text
    problem = got.json()
    assert problem["name"] == name and problem["message"]
    assert problem["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    assert (await iot.get("/iot/devices", headers=SERVICE)).json()["count"] == 0
    assert (await iot.get("/iot/services", headers=SERVICE)).json()["count"] == 0


async def test_duplicates_and_missing_ones(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    again = await iot.post("/iot/devices", json=robot(), headers=SERVICE)
    assert again.status_code == 409 and again.json()["name"] == "DUPLICATE_DEVICE_ID"
    again = await iot.post("/iot/services", json=group(), headers=SERVICE)
    assert again.status_code == 409 and again.json()["name"] == "DUPLICATE_GROUP"
    missing = await iot.get("/iot/devices/nobody", headers=SERVICE)
    assert missing.status_code == 404 and missing.json()["name"] == "DEVICE_NOT_FOUND"
    elsewhere = await iot.get("/iot/devices/guide-1", headers={"fiware-service": "other"})
    assert elsewhere.status_code == 404
    params = {"resource": "/iot/json", "apikey": "nokey"}
    gone = await iot.delete("/iot/services", params=params, headers=SERVICE)
    assert gone.status_code == 404 and gone.json()["name"] == "DEVICE_GROUP_NOT_FOUND"


async def test_update_and_delete(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    change = {"commands": [{"name": "greet"}, {"name": "dock"}]}
    assert (await iot.put("/iot/devices/guide-1", json=change, headers=SERVICE)).status_code == 204
    assert (await twin(iot))["dock_status"]["value"] == "UNKNOWN"
    renamed = await iot.put("/iot/devices/guide-1", json={"device_id": "x"}, headers=SERVICE)
    assert renamed.status_code == 400
    params = {"resource": "/iot/json", "apikey": "museum-key"}
    change = {"entity_type": "Guide"}
    put = await iot.put("/iot/services", params=params, json=change, headers=SERVICE)
    assert put.status_code == 204
    services = (await iot.get("/iot/services", headers=SERVICE)).json()["services"]
    assert services[0]["entity_type"] == "Guide"
    assert (await iot.delete("/iot/devices/guide-1", headers=SERVICE)).status_code == 204
    assert (await iot.get("/iot/devices/guide-1", headers=SERVICE)).status_code == 404
    assert (await iot.delete("/iot/services", params=params, headers=SERVICE)).status_code == 204
    assert (await iot.get("/iot/services", headers=SERVICE)).json()["count"] == 0


async def test_http_measurements_are_coerced_and_kept_in_history(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    got = await send(
        iot,
        {"b": "87.5", "s": "guiding", "c": "true", "n": "12", "l": "31.1865,121.5440",
         "TimeInstant": "2026-11-30T08:00:00Z", "extra": {"free": "form"}},
    )  # fmt: skip
    assert got.status_code == 200, got.text
    body = await twin(iot)
    assert body["battery"] == {
        "type": "Property", "value": 87.5, "unitCode": "P1", "observedAt": "2026-11-30T08:00:00Z"
    }  # fmt: skip
    assert body["state"]["value"] == "guiding"
    assert body["charging"]["value"] is True
    assert body["visitors"]["value"] == 12
    assert body["location"]["type"] == "GeoProperty"
    assert body["location"]["value"] == {"type": "Point", "coordinates": [121.544, 31.1865]}
    assert body["extra"]["value"] == {"free": "form"}  # undeclared: passed through
    assert "TimeInstant" not in body
    assert (await send(iot, {"b": 80, "TimeInstant": "2026-11-30T08:01:00Z"})).status_code == 200
    history = await iot.get(f"{NGSI}/temporal/entities/{ROBOT}", params={"attrs": "battery"},
                            headers=TENANT)  # fmt: skip
    values = [(i["value"], i["observedAt"]) for i in history.json()["battery"]]
    assert values == [(87.5, "2026-11-30T08:00:00Z"), (80, "2026-11-30T08:01:00Z")]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"b": "lots"}, "bad-value"),
        ({"n": 1.5}, "bad-value"),
        ({"c": "maybe"}, "bad-value"),
        ({"l": "north"}, "bad-value"),
        ({"l": "95,10"}, "bad-value"),
        ({"b": None}, "bad-value"),
        ({"n": "9" * 400}, "bad-value"),
        ({"n": 1e30}, "bad-value"),
        ({"TimeInstant": "yesterday", "b": 1}, "bad-value"),
        ([1, 2], "not-json-object"),
    ],
)
async def test_bad_measurements_change_nothing(
    iot: httpx.AsyncClient, payload: Any, kind: str
) -> None:
    await provisioned(iot)
    assert (await send(iot, {"b": 10, "s": "idle"})).status_code == 200
    before = await twin(iot)
    got = await send(iot, payload)
    assert got.status_code == 400
    assert got.json()["type"].endswith("BadRequestData")
    assert await twin(iot) == before
    metrics = (await iot.get("/citytwin/v1/metrics")).json()["gateway"]
    assert metrics[f"dropped.{kind}"] == 1
    assert metrics["applied"] == 1


async def test_unknown_apikey_and_autoprovisioning(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    unknown = await iot.post("/iot/json", params={"k": "nokey", "i": "x"}, json={"t": 1})
    assert unknown.status_code == 404
    assert (await iot.post("/iot/json", params={"k": "museum-key"}, json={})).status_code == 400
    assert (await send(iot, {"temperature": 21}, device="sensor-9")).status_code == 200
    body = await twin(iot, "urn:ngsi-ld:Robot:sensor-9")  # the group's entity type
    assert body["temperature"]["value"] == 21
    device = await iot.get("/iot/devices/sensor-9", headers=SERVICE)
    assert device.status_code == 200 and device.json()["transport"] == "HTTP"
    metrics = (await iot.get("/citytwin/v1/metrics")).json()["gateway"]
    assert metrics["dropped.unknown-apikey"] == 1
    assert metrics["devices.autoprovisioned"] == 1


async def test_explicit_attributes_drop_undeclared_ones(iot: httpx.AsyncClient) -> None:
    await provisioned(iot, explicitAttrs=True)
    assert (await send(iot, {"b": 5, "noise": 3})).status_code == 200
    body = await twin(iot)
    assert body["battery"]["value"] == 5
    assert "noise" not in body


async def test_polling_http_device_gets_and_answers_commands(iot: httpx.AsyncClient) -> None:
    await provisioned(iot)
    patch = await iot.patch(f"{NGSI}/entities/{ROBOT}/attrs/greet", headers=TENANT,
                            json={"type": "Property", "value": "hello"})  # fmt: skip
    assert patch.status_code == 204
    await until(iot, "greet_status", "PENDING")
    polled = await iot.get("/iot/json", params={"k": "museum-key", "i": "guide-1", "getCmd": "1"})
    assert polled.json() == {"greet": "hello"}
    await until(iot, "greet_status", "DELIVERED")
    answer = await iot.post(
        "/iot/json/commands", params={"k": "museum-key", "i": "guide-1"}, json={"greet": "done"}
    )
    assert answer.status_code == 200
    body = await until(iot, "greet_status", "OK")
    assert body["greet_info"]["value"] == "done"
    again = await iot.get("/iot/json", params={"k": "museum-key", "i": "guide-1", "getCmd": "1"})
    assert again.json() == {}
    # an append that names the command but keeps it (noOverwrite) issues nothing (a review
    # found the command sent again, when writes began to name the attributes they touch)
    kept = {"greet": {"type": "Property", "value": "ignored"}, "note": {"type": "Property",
            "value": 1}}  # fmt: skip
    appended = await iot.post(f"{NGSI}/entities/{ROBOT}/attrs", params={"options": "noOverwrite"},
                              headers=TENANT, json=kept)  # fmt: skip
    assert appended.status_code == 207
    await until(iot, "note", 1)
    await asyncio.sleep(0.5)  # the command watcher polls every 10 ms
    body = await until(iot, "greet_status", "OK")
    assert body["greet"]["value"] == "hello"
    polled = await iot.get("/iot/json", params={"k": "museum-key", "i": "guide-1", "getCmd": "1"})
    assert polled.json() == {}


async def until(iot: httpx.AsyncClient, attr: str, value: Any, timeout: float = 10) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await twin(iot)
        if body.get(attr, {}).get("value") == value:
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{attr} is {body.get(attr)}, not {value!r}")
        await asyncio.sleep(0.05)


async def test_an_older_reading_goes_to_history_but_not_to_the_state(
    iot: httpx.AsyncClient,
) -> None:
    """Readings arrive out of order (workers sharing devices, a broker sending again)."""
    await provisioned(iot)
    assert (await send(iot, {"b": 70, "TimeInstant": "2026-11-30T09:00:00Z"})).status_code == 200
    assert (await send(iot, {"b": 75, "TimeInstant": "2026-11-30T08:59:00Z"})).status_code == 200
    battery = (await twin(iot))["battery"]
    assert (battery["value"], battery["observedAt"]) == (70, "2026-11-30T09:00:00Z")
    history = await iot.get(f"{NGSI}/temporal/entities/{ROBOT}", params={"attrs": "battery"},
                            headers=TENANT)  # fmt: skip
    assert sorted(i["value"] for i in history.json()["battery"]) == [70, 75]


@pytest.mark.parametrize(
    ("status", "reply", "outcome", "info"),
    [
        (200, b'{"greet": "waved"}', "OK", "waved"),
        (200, b'{"greet": {"error": "no arm"}}', "ERROR", {"error": "no arm"}),
        (500, b"", "ERROR", None),
    ],
)
async def test_a_command_is_pushed_to_an_http_device_endpoint(
    iot: httpx.AsyncClient, status: int, reply: bytes, outcome: str, info: Any
) -> None:
    with receiver("/robot") as device:
        device.status, device.reply = status, reply
        await provisioned(iot, endpoint=device.url)
        patch = await iot.patch(f"{NGSI}/entities/{ROBOT}/attrs/greet", headers=TENANT,
                                json={"type": "Property", "value": "wave"})  # fmt: skip
        assert patch.status_code == 204
        body = await until(iot, "greet_status", outcome)
        assert device.bodies() == [{"greet": "wave"}]
    if info is not None:
        assert body["greet_info"]["value"] == info
    else:
        assert "500" in body["greet_info"]["value"]
