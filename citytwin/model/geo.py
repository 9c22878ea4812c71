"""Geo-queries (GS CIM 009 4.10): parsing, and the exact predicates behind the R*Tree index."""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any

import orjson

from citytwin.errors import BadRequestData
from citytwin.model.validate import is_geometry


class _Lazy:
    """A module imported on first use: numpy and shapely cost each worker ~25 MB of memory,
    which a twin that never runs a geo-query should not pay."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)


np = _Lazy("numpy")
shapely = _Lazy("shapely")
_affinity = _Lazy("shapely.affinity")
_errors = _Lazy("shapely.errors")
_geometry = _Lazy("shapely.geometry")


def shape(value: dict[str, Any]) -> Any:
    return _geometry.shape(value)


GEORELS = ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps")
GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180


@dataclass(frozen=True)
class GeoQuery:
    georel: str
    geometry: dict[str, Any]
    geoproperty: str = "location"
    max_distance: float | None = None
    min_distance: float | None = None

    @cached_property
    def ref(self) -> Any:
        """The query's geometry as a shapely shape, parsed once however many candidates."""
        return shape(self.geometry)

    def bbox(self) -> tuple[float, float, float, float] | None:
        """The box (minx, maxx, miny, maxy) candidates must touch; None: no box prunes."""
        if self.georel == "disjoint" or (self.georel == "near" and self.max_distance is None):
            return None
        minx, maxx, miny, maxy = bbox(self.geometry)
        if self.georel == "near":
            # a little over the distance, so that rounding never drops a point at the edge
            pad_y = self.max_distance * 1.001 / _M_PER_DEGREE + 1e-9  # type: ignore[operator]
            lat = max(abs(miny - pad_y), abs(maxy + pad_y))
            if lat >= 89.9:
                return None  # the circle reaches a pole: no box describes it
            pad_x = pad_y / math.cos(math.radians(lat))
            if minx - pad_x < -180 or maxx + pad_x > 180:
                return None  # the circle crosses the antimeridian: no single box describes it
            return minx - pad_x, maxx + pad_x, miny - pad_y, maxy + pad_y
        return minx, maxx, miny, maxy


def parse_geo_query(
    georel: str | None, geometry: str | None, coordinates: Any, geoproperty: str | None
) -> GeoQuery | None:
    """The geo-query of a request; all of georel, geometry and coordinates, or none."""
    if georel is None and geometry is None and coordinates is None:
        if geoproperty is not None:
            raise BadRequestData("geoproperty needs georel, geometry and coordinates")
        return None
    if georel is None or geometry is None or coordinates is None:
        raise BadRequestData("a geo-query needs georel, geometry and coordinates together")
    relation, distances = _georel(georel)
    if geometry not in GEOMETRIES:
        raise BadRequestData(f"geometry must be one of {', '.join(GEOMETRIES)}, not {geometry!r}")
    value = {"type": geometry, "coordinates": _coordinates(coordinates)}
    if not is_geometry(value) or not _usable(value):
        raise BadRequestData(f"coordinates do not make a valid {geometry} in WGS 84")
    return GeoQuery(relation, value, geoproperty or "location", **distances)


def _usable(value: dict[str, Any]) -> bool:
    """Longitudes and latitudes in range, positions of one dimension, a shape GEOS accepts."""
    found = list(positions(value))
    if len({len(p) for p in found}) != 1:
        return False
    if not all(-180 <= p[0] <= 180 and -90 <= p[1] <= 90 for p in found):
        return False
    try:
        shape(value)
    except (ValueError, TypeError, _errors.GEOSException):
        return False
    return True


def _georel(text: str) -> tuple[str, dict[str, float]]:
    relation, *modifiers = text.split(";")
    if relation not in GEORELS:
        raise BadRequestData(f"georel must be one of {', '.join(GEORELS)}, not {relation!r}")
    distances: dict[str, float] = {}
    for modifier in modifiers:
        name, sep, value = modifier.partition("==")
        if relation != "near" or name not in ("maxDistance", "minDistance") or not sep:
            raise BadRequestData(f"invalid georel modifier {modifier!r}")
        try:
            number = float(value)
        except ValueError:
            raise BadRequestData(f"{name} must be a number, not {value!r}") from None
        if number < 0 or not math.isfinite(number):
            raise BadRequestData(f"{name} must be a non-negative number")
        distances["max_distance" if name == "maxDistance" else "min_distance"] = number
    if relation == "near" and not distances:
        raise BadRequestData("near needs maxDistance or minDistance")
    return relation, distances


def _coordinates(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequestData(f"coordinates are not a JSON array: {value!r}") from None
    return value


def positions(geometry: dict[str, Any]) -> Iterator[list[float]]:
    """Every position of a GeoJSON geometry."""
    if geometry.get("type") == "GeometryCollection":
        for part in geometry.get("geometries", []):
            yield from positions(part)
        return
    stack = [geometry.get("coordinates")]
    while stack:
        item = stack.pop()
        if item and isinstance(item[0], int | float):
            yield item
        else:
            stack.extend(item or [])


def bbox(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    xs, ys = [], []
    for position in positions(geometry):
        xs.append(position[0])
        ys.append(position[1])
    return min(xs), max(xs), min(ys), max(ys)


def matches(query: GeoQuery, value: dict[str, Any]) -> bool:
    """The exact predicate, for a candidate the index let through (shapely, planar).

    A stored geometry GEOS cannot read matches nothing.
    """
    try:
        return _matches(query, value)
    except (ValueError, TypeError, _errors.GEOSException):
        return False


def _matches(query: GeoQuery, value: dict[str, Any]) -> bool:
    target = shape(value)
    ref = query.ref
    if query.georel == "near":
        meters = distance_m(ref, target)
        if query.max_distance is not None and meters > query.max_distance:
            return False
        return query.min_distance is None or meters >= query.min_distance
    if query.georel == "within":
        return bool(target.within(ref))
    if query.georel == "contains":
        return bool(target.contains(ref))
    if query.georel == "intersects":
        return bool(target.intersects(ref))
    if query.georel == "equals":
        return bool(target.equals(ref))
    if query.georel == "disjoint":
        return bool(target.disjoint(ref))
    return bool(target.overlaps(ref))


def distance_m(a: Any, b: Any) -> float:
    """Distance in metres: exact great circle between points, local projection otherwise."""
    if a.geom_type == "Point" and b.geom_type == "Point":
        return haversine(a.x, a.y, b.x, b.y)
    lat = a.centroid.y
    factor = math.cos(math.radians(lat))
    project = dict(xfact=_M_PER_DEGREE * factor, yfact=_M_PER_DEGREE, origin=(0, 0))
    scale = _affinity.scale
    return float(scale(a, **project).distance(scale(b, **project)))


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def matching_boxes(query: GeoQuery, boxes: list[tuple[float, float, float, float]]) -> list[bool]:
    """The exact predicate for many candidates at once, where each candidate is a point.

    Candidates come as their index boxes (minx, maxx, miny, maxy); a box of zero size is the
    point itself, so points are tested without reading their documents, vectorized.
    """
    if not boxes:
        return []
    xs = np.fromiter((b[0] for b in boxes), float, len(boxes))
    ys = np.fromiter((b[2] for b in boxes), float, len(boxes))
    ref = query.ref
    if query.georel == "near":
        meters = _distances(ref, xs, ys)
        keep = np.ones(len(boxes), bool)
        if query.max_distance is not None:
            keep &= meters <= query.max_distance
        if query.min_distance is not None:
            keep &= meters >= query.min_distance
        return keep.tolist()
    points = shapely.points(xs, ys)
    test = getattr(shapely, query.georel)  # shapely names its predicates as NGSI-LD does
    return test(points, ref).tolist()


def _distances(ref: Any, xs: Any, ys: Any) -> Any:
    if ref.geom_type == "Point":
        lon, lat = np.radians(xs), np.radians(ys)
        ref_lon, ref_lat = math.radians(ref.x), math.radians(ref.y)
        h = (np.sin((lat - ref_lat) / 2) ** 2
             + np.cos(lat) * math.cos(ref_lat) * np.sin((lon - ref_lon) / 2) ** 2)  # fmt: skip
        return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(h))
    factor = math.cos(math.radians(ref.centroid.y))
    scaled = _affinity.scale(ref, _M_PER_DEGREE * factor, _M_PER_DEGREE, origin=(0, 0))
    points = shapely.points(xs * _M_PER_DEGREE * factor, ys * _M_PER_DEGREE)
    return shapely.distance(points, scaled)


def point_distances(query: GeoQuery, points: list[tuple[str, float, float]]) -> list[float]:
    """Metres from the query's geometry to each (id, x, y) point."""
    if not points:
        return []
    xs = np.fromiter((p[1] for p in points), float, len(points))
    ys = np.fromiter((p[2] for p in points), float, len(points))
    return _distances(query.ref, xs, ys).tolist()


def shape_distance(query: GeoQuery, value: dict[str, Any]) -> float:
    """Metres from the query's geometry to a stored geometry (inf if GEOS cannot read it)."""
    try:
        return distance_m(query.ref, shape(value))
    except (ValueError, TypeError, _errors.GEOSException):
        return math.inf
