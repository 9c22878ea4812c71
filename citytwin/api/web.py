"""The live map: the page at `/`, its own files under /map/, the browser libraries installed from
the npm registry (./run installs them into web/node_modules) under /assets/, and the basemap.

Only MapLibre's dist folder is served from node_modules; nothing is fetched from a CDN.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from citytwin.api.state import state
from citytwin.errors import ResourceNotFound, ServiceUnavailable
from citytwin.web.basemap import land

PAGE = Path(__file__).resolve().parent.parent / "web"
SERVED = {"maplibre-gl/dist"}  # the node_modules folders the page may load
mimetypes.add_type("text/javascript", ".mjs")  # module scripts need a JavaScript type


def assets_dir(configured: str) -> Path:
    """Where the npm packages are: CITYTWIN_ASSETS, else web/node_modules of the checkout."""
    if configured:
        return Path(configured)
    return PAGE.parent.parent / "web" / "node_modules"


async def page(request: Request) -> Response:
    return FileResponse(PAGE / "index.html", headers={"Cache-Control": "no-cache"})


async def own_file(request: Request) -> Response:
    return _file(PAGE, request.path_params["name"])


async def asset(request: Request) -> Response:
    path = request.path_params["path"]
    if not any(path.startswith(folder + "/") for folder in SERVED):
        raise ResourceNotFound(f"no asset {path}")
    root = assets_dir(state(request).settings.assets)
    if not root.is_dir():
        raise ServiceUnavailable("the map's libraries are not installed (run ./run demo)")
    return _file(root, path)


def _file(root: Path, name: str) -> Response:
    target = (root / name).resolve()
    if root.resolve() not in target.parents or not target.is_file():
        raise ResourceNotFound(f"no file {name}")
    return FileResponse(target)


async def basemap(request: Request) -> Response:
    topology = assets_dir(state(request).settings.assets) / "world-atlas" / "land-10m.json"
    if not topology.is_file():
        raise ServiceUnavailable("the basemap's data is not installed (run ./run demo)")
    body = land(str(topology))
    return Response(body, media_type="application/geo+json",
                    headers={"Cache-Control": "max-age=86400"})  # fmt: skip
