"""The live map's routes: the page, its files, MapLibre from node_modules, the basemap."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from shapely.geometry import Point, shape

from citytwin.api.web import assets_dir


@pytest.fixture
def npm_assets() -> None:
    """The map's npm packages, which ./run installs into web/node_modules."""
    if not assets_dir("").joinpath("maplibre-gl", "dist", "maplibre-gl.mjs").is_file():
        pytest.fail("web/node_modules is missing: ./run test installs it (npm ci in web/)")


needs_npm = pytest.mark.usefixtures("npm_assets")


async def test_the_page_and_its_files(client: httpx.AsyncClient) -> None:
    root = "http://test"
    page = await client.get(root + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/map/app.js" in page.text
    script = await client.get(root + "/map/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    for name in ("../app.py", "nothing.js", "%2e%2e/settings.py"):
        assert (await client.get(root + "/map/" + name)).status_code == 404


@needs_npm
async def test_maplibre_is_served_from_node_modules_only(client: httpx.AsyncClient) -> None:
    root = "http://test"
    module = await client.get(root + "/assets/maplibre-gl/dist/maplibre-gl.mjs")
    assert module.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert (await client.get(root + "/assets/maplibre-gl/package.json")).status_code == 404
    assert (await client.get(root + "/assets/world-atlas/land-10m.json")).status_code == 404


@needs_npm
async def test_the_basemap_is_shanghai_land(client: httpx.AsyncClient) -> None:
    root = "http://test"
    got = await client.get(root + "/citytwin/v1/basemap")
    assert got.status_code == 200
    land = [shape(f["geometry"]) for f in got.json()["features"]]
    on_land = lambda lon, lat: any(p.contains(Point(lon, lat)) for p in land)  # noqa: E731
    assert on_land(121.4737, 31.2304)  # People's Square
    assert on_land(121.50, 31.62)  # Chongming island
    assert not on_land(122.1, 31.0)  # the East China Sea


def test_assets_dir_can_be_configured(tmp_path: Path) -> None:
    assert assets_dir(str(tmp_path)) == tmp_path
