"""A device's measurements as NGSI-LD attributes (the IoT Agent JSON payload conventions).

Values are coerced to the type the provisioning declares (Number, Integer, Boolean, Text,
DateTime, geo:point, geo:json, Relationship...); a `TimeInstant` member is the measurements'
observedAt; locations given as GeoJSON or as "lat,lon" become GeoProperties.
"""

from __future__ import annotations

import math
from typing import Any

from citytwin.devices.provision import Attribute, Profile
from citytwin.model.times import to_micros
from citytwin.model.validate import is_geometry, is_uri

TIME_INSTANT = "TimeInstant"
NUMBER = {"number", "float", "double", "quantity", "decimal"}
INTEGER = {"integer", "int", "long"}
BOOLEAN = {"boolean", "bool"}
TEXT = {"text", "string"}
GEO = {"geo:json", "geo:point", "geoproperty", "point", "linestring", "polygon", "geo:line"}
GEO_NAMES = {"location", "observationSpace", "operationSpace"}


class BadValue(ValueError):
    """A value that does not fit its declared type: the whole message is dropped."""


def attributes(device: Profile, payload: dict[str, Any], arrival: str) -> dict[str, Any]:
    """The NGSI-LD attributes (normalized, short names) a JSON measurement payload updates."""
    observed = _observed(payload.get(TIME_INSTANT), arrival)
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == TIME_INSTANT or key in device.commands:
            continue
        declared = device.attributes.get(key)
        if declared is None:
            if device.explicit:
                continue
            declared = Attribute(key, key, "geo:json" if key in GEO_NAMES else "", {})
        out[declared.name] = attribute(declared, value, observed)
    return out


def _observed(value: Any, arrival: str) -> str:
    if value is None:
        return arrival
    if not isinstance(value, str):
        raise BadValue("TimeInstant must be an ISO 8601 date-time")
    try:
        to_micros(value)
    except ValueError:
        raise BadValue(f"TimeInstant {value!r} is not an ISO 8601 date-time") from None
    return value


def attribute(declared: Attribute, value: Any, observed: str | None) -> dict[str, Any]:
    """One declared attribute with its value, as a normalized NGSI-LD attribute."""
    kind = declared.type.lower()
    if value is None:
        raise BadValue(f"{declared.key} is null")
    out: dict[str, Any]
    if kind in GEO or (not kind and declared.name in GEO_NAMES):
        out = {"type": "GeoProperty", "value": geometry(value)}
    elif kind == "relationship":
        if not is_uri(value):
            raise BadValue(f"{declared.key} must be a URI (a Relationship)")
        out = {"type": "Relationship", "object": value}
    else:
        out = {"type": "Property", "value": coerce(kind, value, declared.key)}
    for name, meta in declared.metadata.items():
        member = meta.get("value") if isinstance(meta, dict) else meta
        out[name] = member if name == "unitCode" else {"type": "Property", "value": member}
    if observed is not None:
        out["observedAt"] = observed
    return out


def coerce(kind: str, value: Any, key: str) -> Any:
    if kind in NUMBER:
        return _number(value, key)
    if kind in INTEGER:
        number = _number(value, key)
        if isinstance(number, float) and not number.is_integer():
            raise BadValue(f"{key}: {value!r} is not an integer")
        return _number(int(number), key)
    if kind in BOOLEAN:
        return _boolean(value, key)
    if kind in TEXT:
        if isinstance(value, dict | list):
            raise BadValue(f"{key}: {value!r} is not text")
        return value if isinstance(value, str) else _text(value)
    if kind == "datetime":
        if not isinstance(value, str):
            raise BadValue(f"{key}: {value!r} is not a date-time")
        return {"@type": "DateTime", "@value": _observed(value, "")}
    return value  # Property, or a type the gateway does not know: as the device sent it


def _number(value: Any, key: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadValue(f"{key}: {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise BadValue(f"{key}: {value!r} is not a number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise BadValue(f"{key}: {value!r} is not a finite number")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise BadValue(f"{key}: {value!r} is out of range")  # JSON stores 64-bit integers
    return value


def _boolean(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (1, 0, "1", "0"):
        return value in (1, "1")
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadValue(f"{key}: {value!r} is not a boolean")


def _text(value: Any) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def geometry(value: Any) -> dict[str, Any]:
    """GeoJSON as is, or "lat,lon" (the IoT Agent's geo:point) as a Point."""
    if isinstance(value, str):
        parts = value.split(",")
        try:
            lat, lon = (float(p) for p in parts)
        except ValueError:
            raise BadValue(f"{value!r} is not 'lat,lon'") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise BadValue(f"{value!r} is not a position on Earth")
        return {"type": "Point", "coordinates": [lon, lat]}
    if not is_geometry(value):
        raise BadValue(f"{value!r} is not a GeoJSON geometry")
    return value


def twin(device: Profile) -> dict[str, Any]:
    """The twin entity a device provisioning creates: its static attributes and, for each
    command, the command attribute and its status and info (FIWARE's <command>_status/_info)."""
    body: dict[str, Any] = {"id": device.entity_id, "type": device.entity_type}
    for s in device.static:
        declared = Attribute(s["name"], s["name"], s.get("type", "Property"), s.get("metadata", {}))
        body[s["name"]] = attribute(declared, s["value"], None)
    for name in device.commands:
        body.update(command_attrs(name, "", "UNKNOWN", ""))
    return body


def command_attrs(name: str, value: Any, status: str, info: Any) -> dict[str, Any]:
    out = {f"{name}_status": {"type": "Property", "value": status}}
    out[f"{name}_info"] = {"type": "Property", "value": info}
    if value is not None:
        out[name] = {"type": "Property", "value": value}
    return out
