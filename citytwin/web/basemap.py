"""The map's basemap: Natural Earth land (1:10m, public domain, via the world-atlas package from
the npm registry, installed by ./run) around the city, as GeoJSON. Nothing is fetched at run time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
from shapely import make_valid
from shapely.geometry import box, mapping, shape

Position = list[float]
BOUNDS = (120.8, 30.6, 122.2, 31.95)  # west, south, east, north: Shanghai and its estuary


def _arcs(topology: dict[str, Any]) -> list[list[Position]]:
    """TopoJSON arcs (delta-encoded, quantized) as lon/lat positions."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    out = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append([x * sx + tx, y * sy + ty])
        out.append(points)
    return out


def _ring(indices: list[int], arcs: list[list[Position]]) -> list[Position]:
    ring: list[Position] = []
    for i in indices:
        points = arcs[i] if i >= 0 else arcs[~i][::-1]
        ring.extend(points if not ring else points[1:])
    return ring


@functools.lru_cache(maxsize=4)
def land(path: str, bounds: tuple[float, float, float, float] = BOUNDS) -> bytes:
    """The land polygons of a world-atlas land topology within `bounds`, as a GeoJSON
    FeatureCollection (bytes, computed once)."""
    topology = orjson.loads(Path(path).read_bytes())
    arcs = _arcs(topology)
    window = box(*bounds)
    features = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            rings = [_ring(r, arcs) for r in polygon]
            west, south, east, north = bounds
            if not any(west <= x <= east and south <= y <= north for x, y in rings[0]):
                continue  # (cheap test first: only polygons reaching into the window)
            part = make_valid(shape({"type": "Polygon", "coordinates": rings}))
            if part.intersects(window):
                clipped = part.intersection(window)
                features.append({"type": "Feature", "properties": {}, "geometry": mapping(clipped)})
    return orjson.dumps({"type": "FeatureCollection", "features": features})
