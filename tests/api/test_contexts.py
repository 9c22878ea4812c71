"""@context resolution and /jsonldContexts (5.5.7, 5.13) against a real loopback HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from citytwin.model.context import CORE_CONTEXT_URL
from tests.conftest import building

CONTEXT = {
    "@context": {"Building": "https://smart.city/Building", "name": "https://smart.city/name"}
}
LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


class _Served:
    def __init__(self) -> None:
        self.hits = 0
        self.document: Any = CONTEXT


@pytest.fixture
def context_server() -> Iterator[tuple[str, _Served]]:
    served = _Served()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            served.hits += 1
            body = json.dumps(served.document).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/ld+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ctx.jsonld", served
    finally:
        server.shutdown()
        server.server_close()


async def test_remote_context_is_fetched_once_and_cached(
    client: httpx.AsyncClient, context_server: tuple[str, _Served]
) -> None:
    url, served = context_server
    link = {"Link": LINK.format(url)}
    assert (await client.post("/entities", json=building(), headers=link)).status_code == 201
    got = await client.get("/entities/urn:ngsi-ld:Building:1", headers=link)
    assert got.json()["type"] == "Building"
    assert url in got.headers["link"]
    plain = (await client.get("/entities/urn:ngsi-ld:Building:1")).json()
    assert plain["type"] == "https://smart.city/Building"
    assert "https://smart.city/name" in plain and "height" in plain
    assert served.hits == 1
    cached = (await client.get("/jsonldContexts?kind=Cached&details=true")).json()
    assert url in [c["URL"] for c in cached]


async def test_ld_json_response_carries_the_request_context(
    client: httpx.AsyncClient, context_server: tuple[str, _Served]
) -> None:
    url, _ = context_server
    await client.post("/entities", json=building(), headers={"Link": LINK.format(url)})
    got = await client.get(
        "/entities/urn:ngsi-ld:Building:1",
        headers={"Link": LINK.format(url), "Accept": "application/ld+json"},
    )
    assert got.headers["content-type"] == "application/ld+json"
    assert got.json()["@context"] == url
    assert "link" not in got.headers


async def test_host_serve_list_delete(client: httpx.AsyncClient) -> None:
    added = await client.post("/jsonldContexts", json=CONTEXT)
    assert added.status_code == 201 and added.text == ""
    location = added.headers["location"]
    assert location.startswith("/ngsi-ld/v1/jsonldContexts/")
    local_id = location.rsplit("/", 1)[1]
    assert (await client.get(f"/jsonldContexts/{local_id}")).json() == CONTEXT
    details = (await client.get(f"/jsonldContexts/{local_id}?details=true")).json()
    assert details["kind"] == "Hosted" and details["localId"] == local_id
    listed = (await client.get("/jsonldContexts?kind=Hosted")).json()
    assert [u for u in listed if u.endswith(location)]
    assert (await client.delete(f"/jsonldContexts/{local_id}")).status_code == 204
    assert (await client.get(f"/jsonldContexts/{local_id}")).status_code == 404


async def test_hosted_context_is_usable_by_its_url(client: httpx.AsyncClient) -> None:
    location = (await client.post("/jsonldContexts", json=CONTEXT)).headers["location"]
    link = {"Link": LINK.format("http://broker.example" + location)}
    assert (await client.post("/entities", json=building(), headers=link)).status_code == 201
    plain = (await client.get("/entities/urn:ngsi-ld:Building:1")).json()
    assert plain["type"] == "https://smart.city/Building"


async def test_core_context_cannot_be_deleted_but_reloads(client: httpx.AsyncClient) -> None:
    core = quote(CORE_CONTEXT_URL, safe="")
    assert (await client.delete(f"/jsonldContexts/{core}")).status_code == 400
    assert (await client.delete(f"/jsonldContexts/{core}?reload=true")).status_code == 204
    assert (await client.get(f"/jsonldContexts/{core}?details=true")).json()["kind"] == "Cached"


@pytest.mark.parametrize(
    ("query", "status"),
    [("?kind=Other", 400), ("?details=maybe", 400), ("?kind=Hosted&details=false", 200)],
)
async def test_list_parameters(client: httpx.AsyncClient, query: str, status: int) -> None:
    assert (await client.get(f"/jsonldContexts{query}")).status_code == status


async def test_invalid_context_documents(client: httpx.AsyncClient) -> None:
    for body in ({"A": "urn:a"}, []):
        got = await client.post("/jsonldContexts", json=body)
        assert got.status_code == 400
        assert got.json()["type"].endswith("InvalidRequest")


async def test_core_context_is_offline(client: httpx.AsyncClient) -> None:
    for version in ("1.3", "1.6", "1.8", "1.9"):
        url = f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v{version}.jsonld"
        got = await client.get("/entities/urn:x:1", headers={"Link": LINK.format(url)})
        assert got.status_code == 404  # resolved without the network; the entity just is not there
