"""Syntax checks for NGSI-LD identifiers, names and values (GS CIM 009 4.6, 4.7, 4.18)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from citytwin.errors import BadRequestData

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"'{}|\\^`]+$")
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f<>\"'=;()\\{}|^`&?]")
_SCOPE = re.compile(r"^/[^/\s]+(/[^/\s]+)*$|^/$")
_GEOMETRIES = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


def is_uri(value: Any) -> bool:
    return isinstance(value, str) and _URI.match(value) is not None


def check_uri(value: Any, what: str) -> str:
    if not is_uri(value):
        raise BadRequestData(f"{what} must be a URI, not {value!r}")
    return value


def check_name(value: Any, what: str = "attribute name") -> str:
    """Attribute names and type names: non-empty strings without characters that break IRIs."""
    if not isinstance(value, str) or not value or value[0] == "@" or _FORBIDDEN.search(value):
        raise BadRequestData(f"invalid {what}: {value!r}")
    return value


def check_iri(iri: str, name: str, what: str) -> str:
    """A name must expand to an absolute IRI, not a JSON-LD keyword or a relative term."""
    if iri.startswith("@") or ":" not in iri:
        raise BadRequestData(f"{what} {name!r} does not expand to an IRI with this @context")
    return iri


_SEEN_TIMES: dict[str, bool] = {}


def check_datetime(value: Any, what: str) -> str:
    """An ISO 8601 DateTime (remembered: a batch of measurements shares few timestamps)."""
    if type(value) is str and value in _SEEN_TIMES:
        return value
    if isinstance(value, str) and value[:1].isdigit():
        try:
            datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if len(_SEEN_TIMES) > 4096:
                _SEEN_TIMES.clear()
            _SEEN_TIMES[value] = True
            return value
    raise BadRequestData(f"{what} must be an ISO 8601 DateTime, not {value!r}")


def check_scope(value: Any) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise BadRequestData(f"invalid scope {scope!r}: scopes look like /a/b")
    return scopes


def is_geometry(value: Any) -> bool:
    """A GeoJSON geometry object (RFC 7946 3.1) with well-formed coordinates."""
    if not isinstance(value, dict):
        return False
    kind = value.get("type")
    if kind == "GeometryCollection":
        parts = value.get("geometries")
        return isinstance(parts, list) and all(is_geometry(p) for p in parts)
    depth = _GEOMETRIES.get(kind)  # type: ignore[arg-type]
    return depth is not None and _coordinates(value.get("coordinates"), depth, kind)


def _coordinates(value: Any, depth: int, kind: Any) -> bool:
    if not isinstance(value, list):
        return False
    if depth == 0:
        return 2 <= len(value) <= 3 and all(_number(v) for v in value)
    if not value and kind != "Point":
        return False
    if kind == "LineString" and len(value) < 2:
        return False
    if kind == "Polygon" and not all(_ring(r) for r in value):
        return False
    return all(_coordinates(v, depth - 1, _inner(kind)) for v in value)


def _ring(ring: Any) -> bool:
    return isinstance(ring, list) and len(ring) >= 4 and ring[0] == ring[-1]


def _inner(kind: Any) -> str:
    return {"MultiPolygon": "Polygon", "MultiLineString": "LineString"}.get(kind, "")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_INNERMOST = re.compile(rb"\{\}|\[\]")


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when valid JSON text nests deeper than limit.

    Works on the bytes with C-speed passes (no Python walk over every node): strings are cut
    out, only brackets kept, and each pass removes the innermost level.
    """
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    text = b"".join(text.split(b'"')[::2])
    for _ in range(limit):
        if not text:
            return False
        text = _INNERMOST.sub(b"", text)
    return bool(text)
