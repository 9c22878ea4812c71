"""Bad input gets its NGSI-LD error and leaves the store exactly as it was."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import building

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
ID = "urn:ngsi-ld:Building:1"
JSON = {"Content-Type": "application/json"}


async def snapshot(client: httpx.AsyncClient) -> Any:
    got = await client.get(f"/entities/{ID}?options=sysAttrs")
    return got.status_code, got.json()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        ("POST", "/entities", b"{not json", JSON, 400, "InvalidRequest"),
        ("POST", "/entities", b'{"id": "nope", "type": "T"}', JSON, 400, "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1"}', JSON, 400, "BadRequestData"),
        ("POST", "/entities", b"[]", JSON, 400, "InvalidRequest"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T"}', {"Content-Type": "text/plain"},
         415, "UnsupportedMediaType"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "a b": 1}', JSON, 400,
         "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "p": {"type": "Property"}}', JSON,
         400, "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "r": {"type": "Relationship",'
         b' "object": "not a uri"}}', JSON, 400, "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "location": {"type": "GeoProperty",'
         b' "value": {"type": "Point", "coordinates": [1]}}}', JSON, 400, "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "p": {"type": "Property",'
         b' "value": 1, "observedAt": "yesterday"}}', JSON, 400, "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "scope": "no-slash"}', JSON, 400,
         "BadRequestData"),
        ("POST", "/entities", b'{"id": "urn:x:1", "type": "T", "p": {"type": "Weird", "value": 1}}',
         JSON, 400, "BadRequestData"),
        ("PATCH", f"/entities/{ID}/attrs", b'{"height": {"type": "Property", "value": null}}', JSON,
         400, "BadRequestData"),
        ("PATCH", f"/entities/{ID}/attrs/height", b'{"type": "Relationship", "object": "urn:a:b"}',
         JSON, 400, "BadRequestData"),
        ("PATCH", f"/entities/{ID}/attrs/height", b"{}", JSON, 400, "BadRequestData"),
        ("PUT", f"/entities/{ID}", b'{"type": "Building", "name": {"value": null}}', JSON, 400,
         "BadRequestData"),
        ("PUT", f"/entities/{ID}", b'{"id": "urn:other:1", "type": "Building"}', JSON, 400,
         "BadRequestData"),
        ("PUT", f"/entities/{ID}/attrs/scope", b'{"scope": "/a"}', JSON, 400, "BadRequestData"),
        ("POST", f"/entities/{ID}/attrs?options=bogus", b'{"a": 1}', JSON, 400, "InvalidRequest"),
        ("GET", f"/entities/{ID}?unknownParam=1", b"", {}, 400, "InvalidRequest"),
        ("GET", f"/entities/{ID}", b"", {"Accept": "application/xml"}, 406, "NotAcceptable"),
        ("DELETE", f"/entities/{ID}/attrs/height?datasetId=notauri", b"", {}, 400,
         "BadRequestData"),
    ],
)  # fmt: skip
async def test_error_and_store_unchanged(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
) -> None:
    await client.post("/entities", json=building())
    before = await snapshot(client)
    got = await client.request(method, path, content=body, headers=headers)
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/json"
    problem = got.json()
    assert problem["type"] == ERR + error
    assert problem["title"] and problem["detail"]
    assert await snapshot(client) == before
    assert (await client.get("/entities/urn:x:1")).status_code == 404


async def test_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    huge = {"id": ID, "type": "Building", "blob": {"type": "Property", "value": "x" * 70_000}}
    got = await client.post("/entities", json=huge)
    assert got.status_code == 413
    assert (await client.get(f"/entities/{ID}")).status_code == 404


async def test_nesting_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    value: Any = 1
    for _ in range(40):
        value = {"a": value}
    got = await client.post("/entities", json=building(deep={"type": "Property", "value": value}))
    assert got.status_code == 400
    assert "nests" in got.json()["detail"]
    assert (await client.get(f"/entities/{ID}")).status_code == 404


async def test_unreachable_context_is_ld_context_not_available(client: httpx.AsyncClient) -> None:
    body = {**building(), "@context": "http://127.0.0.1:9/no-such-context.jsonld"}
    got = await client.post("/entities", json=body, headers={"Content-Type": "application/ld+json"})
    assert got.status_code == 503
    assert got.json()["type"] == ERR + "LdContextNotAvailable"
    assert (await client.get(f"/entities/{ID}")).status_code == 404


async def test_unknown_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    got = await client.put("/entities/urn:x:1/attrs")
    assert got.status_code == 405
    assert set(got.headers["allow"].split(", ")) == {"POST", "PATCH"}


@pytest.mark.parametrize("path", ["/entities//attrs", "/entities//attrs/height"])
async def test_empty_entity_id_is_bad_request(client: httpx.AsyncClient, path: str) -> None:
    got = await client.patch(path, json={"height": 1})
    assert got.status_code == 400
    assert got.json()["type"] == ERR + "BadRequestData"
