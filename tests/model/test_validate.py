from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from citytwin.model.validate import check_scope, is_geometry, is_uri, json_depth_exceeds

_TRICKY = st.sampled_from(['"', "\\", '\\"', "{", "}", "[", "]", '"}]', "\\\\", "é", "\u2028"])
_TEXT = st.lists(st.one_of(_TRICKY, st.text(max_size=3)), max_size=4).map("".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@given(JSON, st.integers(min_value=0, max_value=8))
def test_depth_on_bytes_matches_a_tree_walk(value: Any, limit: int) -> None:
    assert json_depth_exceeds(orjson.dumps(value), limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"type": "Point", "coordinates": [121.4, 31.2]}, True),
        ({"type": "Point", "coordinates": [121.4]}, False),
        ({"type": "Point", "coordinates": [True, 1]}, False),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, True),
        ({"type": "LineString", "coordinates": [[0, 0]]}, False),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, True),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, False),
        ({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]}, True),
        ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [0, 0]}]},
         True),
        ({"type": "Circle", "coordinates": [0, 0]}, False),
        ("POINT(0 0)", False),
    ],
)  # fmt: skip
def test_geometry(value: Any, ok: bool) -> None:
    assert is_geometry(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("urn:ngsi-ld:Building:1", True), ("https://a.b/c?d=e", True), ("nocolon", False),
     ("urn:a b", False), ("1urn:x", False), (42, False), ("", False)],
)  # fmt: skip
def test_uri(value: Any, ok: bool) -> None:
    assert is_uri(value) is ok


def test_scope() -> None:
    assert check_scope("/Shanghai/Huangpu") == ["/Shanghai/Huangpu"]
    with pytest.raises(Exception, match="scope"):
        check_scope("Shanghai")
