"""The exact side of geo-queries, the same for every store.

A store's spatial index (SQLite's R*Tree, PostGIS's GiST) hands over the candidates whose box
touches the query's: (entity id, x, y) for points, (entity id, None, None) for other shapes.
Points are judged from their coordinates, vectorized; other shapes from the GeoProperty values
the store reads from their documents (planar shapely, great-circle metres: model/geo).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from citytwin.model.geo import GeoQuery, matches, matching_boxes, point_distances, shape_distance

Candidate = tuple[str, float | None, float | None]
Shapes = dict[str, list[dict[str, Any]]]


def split(rows: Iterable[Candidate]) -> tuple[list[tuple[str, float, float]], set[str]]:
    """Points with their coordinates, and the ids of entities with other shapes."""
    points, shapes = [], set()
    for entity_id, x, y in rows:
        if x is None or y is None:
            shapes.add(entity_id)
        else:
            points.append((entity_id, x, y))
    return points, shapes


def picked_points(geo: GeoQuery, points: list[tuple[str, float, float]]) -> set[str]:
    verdicts = matching_boxes(geo, [(x, x, y, y) for _, x, y in points])
    return {i for (i, _, _), ok in zip(points, verdicts, strict=True) if ok}


def picked_shapes(geo: GeoQuery, shapes: Shapes) -> set[str]:
    return {i for i, values in shapes.items() if any(matches(geo, v) for v in values)}


def geometries(instances: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The geometries of an attribute's GeoProperty instances."""
    values = [i.get("value") for i in instances or () if i.get("type") == "GeoProperty"]
    return [v for v in values if isinstance(v, dict)]


def nearest(
    geo: GeoQuery, points: list[tuple[str, float, float]], shapes: Shapes
) -> dict[str, float]:
    """Metres from the query's geometry to each entity (its nearest instance)."""
    found: dict[str, float] = {}
    for (entity_id, _, _), meters in zip(points, point_distances(geo, points), strict=True):
        found[entity_id] = min(meters, found.get(entity_id, math.inf))
    for entity_id, values in shapes.items():
        meters = min((shape_distance(geo, v) for v in values), default=math.inf)
        found[entity_id] = min(meters, found.get(entity_id, math.inf))
    return found


def by_distance(rows: list[tuple[str, Any]], meters: dict[str, float], descending: bool) -> None:
    """Sort (id, document) rows by distance, then by id; unmeasured ones last."""
    rows.sort(key=lambda row: row[0])
    rows.sort(key=lambda row: meters.get(row[0], math.inf), reverse=descending)
