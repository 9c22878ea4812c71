"""The vectorized point predicates agree with the one-by-one exact predicates."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citytwin.model.geo import GeoQuery, haversine, matches, matching_boxes

LON = st.floats(121.40, 121.50)
LAT = st.floats(31.20, 31.30)
SQUARE = [[121.42, 31.22], [121.48, 31.22], [121.48, 31.28], [121.42, 31.28], [121.42, 31.22]]
QUERIES = [
    GeoQuery("near", {"type": "Point", "coordinates": [121.45, 31.25]}, max_distance=2000),
    GeoQuery("near", {"type": "Point", "coordinates": [121.45, 31.25]}, min_distance=3000),
    GeoQuery("near", {"type": "Polygon", "coordinates": [SQUARE]}, max_distance=500),
    GeoQuery("within", {"type": "Polygon", "coordinates": [SQUARE]}),
    GeoQuery("intersects", {"type": "Polygon", "coordinates": [SQUARE]}),
    GeoQuery("disjoint", {"type": "Polygon", "coordinates": [SQUARE]}),
    GeoQuery("equals", {"type": "Point", "coordinates": [121.45, 31.25]}),
]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(LON, LAT), min_size=1, max_size=40), st.sampled_from(QUERIES))
def test_vectorized_points_agree_with_exact(
    points: list[tuple[float, float]], query: GeoQuery
) -> None:
    boxes = [(x, x, y, y) for x, y in points]
    expected = [matches(query, {"type": "Point", "coordinates": [x, y]}) for x, y in points]
    assert matching_boxes(query, boxes) == expected


@pytest.mark.parametrize(
    ("a", "b", "meters"),
    [((121.4737, 31.2304), (121.4737, 31.2304), 0), ((0, 0), (1, 0), 111_195),
     ((121.4737, 31.2304), (116.4074, 39.9042), 1_067_000)],
)  # fmt: skip
def test_haversine(a: tuple[float, float], b: tuple[float, float], meters: float) -> None:
    assert haversine(*a, *b) == pytest.approx(meters, rel=0.01, abs=1)


def test_near_box_covers_the_circle() -> None:
    query = GeoQuery("near", {"type": "Point", "coordinates": [121.45, 31.25]}, max_distance=1000)
    minx, maxx, miny, maxy = query.bbox()  # type: ignore[misc]
    assert haversine(121.45, 31.25, maxx, 31.25) >= 1000
    assert haversine(121.45, 31.25, 121.45, maxy) >= 1000
    assert query.bbox() is not None
    assert GeoQuery("disjoint", query.geometry).bbox() is None
