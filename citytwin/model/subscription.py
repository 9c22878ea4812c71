"""Subscriptions (GS CIM 009 5.2.12, 5.8): parsing, validation, update and rendering.

The stored form keeps entity types, watched and notified attribute names expanded to IRIs, and
the @context the subscription was made with, so that notifications speak the subscriber's terms.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from citytwin.errors import BadRequestData
from citytwin.model.context import Context
from citytwin.model.entity import expand_name
from citytwin.model.geo import parse_geo_query
from citytwin.model.query import parse_q, parse_scope_q, parse_types, regex_error, type_names
from citytwin.model.times import now_iso
from citytwin.model.validate import check_datetime, check_uri, is_uri

TRIGGERS = frozenset({
    "entityCreated", "entityUpdated", "entityDeleted",
    "attributeCreated", "attributeUpdated", "attributeDeleted",
})  # fmt: skip
DEFAULT_TRIGGERS = ["attributeCreated", "attributeUpdated"]
FORMATS = frozenset({"normalized", "keyValues", "simplified", "concise"})
STATUS = ("timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure")
_MEMBERS = {
    "id", "type", "subscriptionName", "description", "entities", "watchedAttributes",
    "notificationTrigger", "timeInterval", "q", "geoQ", "scopeQ", "csf", "isActive",
    "notification", "expiresAt", "throttling", "lang", "join", "joinLevel", "@context",
    "jsonldContext", "temporalQ", "status", "createdAt", "modifiedAt", "datasetId",
    "localOnly", "cooldown",
}  # fmt: skip
# `jsonldContext` is kept when the client gave it (or the broker made one for an inline @context)
_NOTIFICATION = {"attributes", "format", "endpoint", "sysAttrs", "showChanges", "status",
                 "timesSent", "timesFailed", "lastNotification", "lastSuccess", "lastFailure",
                 "pick", "omit", "join", "joinLevel"}  # fmt: skip


now = now_iso  # (the name the notifier and the stream use)


def parse_subscription(body: Any, ctx: Context, context_url: str) -> dict[str, Any]:
    """A new subscription from a request body (5.8.1): validated, names expanded.

    Only the members the client gave are kept (they are echoed back as given); what the broker
    adds for itself has a leading underscore: `_context`, the @context URL of notifications.
    """
    if not isinstance(body, dict) or not body:
        raise BadRequestData("a subscription is a non-empty JSON object")
    if body.get("type") != "Subscription":
        raise BadRequestData("a subscription needs type Subscription")
    sub_id = body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
    doc: dict[str, Any] = {"id": check_uri(sub_id, "subscription id"), "type": "Subscription"}
    doc.update(_members(body, ctx, creating=True))
    _check_whole(doc)
    doc["_context"] = doc.get("jsonldContext", context_url)
    doc["_createdAt"] = doc["_modifiedAt"] = now()
    return doc


def _check_whole(doc: dict[str, Any]) -> None:
    if "entities" not in doc and "watchedAttributes" not in doc:
        raise BadRequestData("a subscription needs entities or watchedAttributes")
    if "notification" not in doc:
        raise BadRequestData("a subscription needs notification")
    if "timeInterval" in doc and ("throttling" in doc or "watchedAttributes" in doc):
        raise BadRequestData("timeInterval cannot go with throttling or watchedAttributes")


def update_subscription(doc: dict[str, Any], body: Any, ctx: Context) -> dict[str, Any]:
    """5.8.2: the members given replace those stored (notification merges one level down)."""
    if not isinstance(body, dict) or not body:
        raise BadRequestData("a subscription update is a non-empty JSON object")
    if "id" in body and body["id"] != doc["id"]:
        raise BadRequestData("the id of a subscription cannot change")
    if body.get("type", "Subscription") != "Subscription":
        raise BadRequestData("type must be Subscription")
    changes = _members(body, ctx, creating=False)
    if "notification" in changes:  # replaced whole, keeping the delivery status
        kept = {k: v for k, v in doc["notification"].items() if k in STATUS}
        changes["notification"] = {**changes["notification"], **kept}
    new = {**doc, **changes, "_modifiedAt": now()}
    if "jsonldContext" in changes:
        new["_context"] = changes["jsonldContext"]
    if changes.get("expiresAt") is not None and changes["expiresAt"] <= now():
        raise BadRequestData("expiresAt is in the past")
    _check_whole(new)
    return new


def _members(body: dict[str, Any], ctx: Context, creating: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in _MEMBERS:
            raise BadRequestData(f"unknown subscription member {key!r}")
        parse = _PARSERS.get(key)
        if parse is not None:
            out[key] = parse(value, ctx)
        elif key in ("subscriptionName", "description", "lang", "csf") and value is not None:
            if not isinstance(value, str):
                raise BadRequestData(f"{key} must be a string")
            out[key] = value
        elif key == "timeInterval":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise BadRequestData("timeInterval must be a positive number of seconds")
            out[key] = value
    if creating and out.get("expiresAt") is not None and out["expiresAt"] <= now():
        raise BadRequestData("expiresAt is in the past")
    return out


def _entities(value: Any, ctx: Context) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise BadRequestData("entities must be a non-empty list")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise BadRequestData("each entities item needs a type")
        names = type_names(parse_types(item["type"]))
        selector = {"type": [expand_name(t, ctx, "entity type") for t in names]}
        if item.get("id") is not None:
            selector["id"] = check_uri(item["id"], "entities id")
        if item.get("idPattern") is not None:
            if not isinstance(item["idPattern"], str) or regex_error(item["idPattern"]):
                raise BadRequestData("idPattern must be a valid regular expression")
            selector["idPattern"] = item["idPattern"]
        out.append(selector)
    return out


def _names(what: str) -> Any:
    def parse(value: Any, ctx: Context) -> list[str]:
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise BadRequestData(f"{what} must be a non-empty list of attribute names")
        return [expand_name(v, ctx) for v in value]

    return parse


def _triggers(value: Any, ctx: Context) -> list[str]:
    if not isinstance(value, list) or not value or not set(value) <= TRIGGERS:
        raise BadRequestData(f"notificationTrigger must be a list of {sorted(TRIGGERS)}")
    return value


def _q(value: Any, ctx: Context) -> str:
    if not isinstance(value, str):
        raise BadRequestData("q must be a string")
    value = unquote(value)  # as it would be in a URL (clients write "Eiffel%20Tower")
    parse_q(value)
    return value


def _scope_q(value: Any, ctx: Context) -> str:
    if not isinstance(value, str):
        raise BadRequestData("scopeQ must be a string")
    parse_scope_q(value)
    return value


def _geo_q(value: Any, ctx: Context) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("geoQ must be an object")
    parse_geo_query(value.get("georel"), value.get("geometry"), value.get("coordinates"),
                    value.get("geoproperty"))  # fmt: skip
    geo = {k: value[k] for k in ("georel", "geometry", "coordinates") if k in value}
    if value.get("geoproperty"):
        geo["geoproperty"] = expand_name(value["geoproperty"], ctx)
    return geo


def _boolean(what: str) -> Any:
    def parse(value: Any, ctx: Context) -> bool:
        if not isinstance(value, bool):
            raise BadRequestData(f"{what} must be true or false")
        return value

    return parse


def _expires(value: Any, ctx: Context) -> str | None:
    return None if value is None else check_datetime(value, "expiresAt")


def _context_url(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise BadRequestData("jsonldContext must be an http(s) URL")
    return value


def _dataset_ids(value: Any, ctx: Context) -> list[str]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item != "@none":
            check_uri(item, "datasetId")
    return items


def _throttling(value: Any, ctx: Context) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRequestData("throttling must be a non-negative number of seconds")
    return value


def _notification(value: Any, ctx: Context) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("notification must be an object")
    unknown = set(value) - _NOTIFICATION
    if unknown:
        raise BadRequestData(f"unknown notification members {sorted(unknown)}")
    out: dict[str, Any] = {}
    if "format" in value:
        if value["format"] not in FORMATS:
            raise BadRequestData(f"notification format must be one of {sorted(FORMATS)}")
        out["format"] = value["format"]
    if value.get("attributes") is not None:
        out["attributes"] = _names("notification.attributes")(value["attributes"], ctx)
    for key in ("pick", "omit"):
        if value.get(key) is not None:
            out[key] = _projection_list(f"notification.{key}", value[key])
    _check_projection(out)
    for key in ("sysAttrs", "showChanges"):
        if key in value:
            out[key] = _boolean(f"notification.{key}")(value[key], ctx)
    if value.get("join") is not None:
        if value["join"] not in ("flat", "inline", "@none"):
            raise BadRequestData("notification.join must be flat, inline or @none")
        out["join"] = value["join"]
    if value.get("joinLevel") is not None:
        level = value["joinLevel"]
        if isinstance(level, bool) or not isinstance(level, int) or level < 1:
            raise BadRequestData("notification.joinLevel must be a positive integer")
        out["joinLevel"] = level
    out["endpoint"] = _endpoint(value.get("endpoint"))
    return out


def _projection_list(what: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise BadRequestData(f"{what} must be a non-empty list of member names")
    return value


def _check_projection(out: dict[str, Any]) -> None:
    given = [k for k in ("attributes", "pick", "omit") if k in out]
    if len(given) > 1:
        raise BadRequestData(f"notification cannot have {' and '.join(given)} together")


def _endpoint(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not is_uri(value.get("uri")):
        raise BadRequestData("notification.endpoint needs a uri")
    uri = value["uri"]
    if not uri.startswith(("http://", "https://", "mqtt://", "mqtts://")):
        raise BadRequestData("endpoint uri must be http(s):// or mqtt(s)://")
    out: dict[str, Any] = {"uri": uri}
    if "accept" in value:
        if value["accept"] not in ("application/json", "application/ld+json"):
            raise BadRequestData("endpoint accept must be application/json or application/ld+json")
        out["accept"] = value["accept"]
    for key in ("receiverInfo", "notifierInfo"):
        if value.get(key) is not None:
            out[key] = _key_values(key, value[key])
    return out


def _key_values(what: str, value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(i, dict) and isinstance(i.get("key"), str) and isinstance(i.get("value"), str)
        for i in value
    ):
        raise BadRequestData(f"{what} must be a list of key/value pairs")
    return [{"key": i["key"], "value": i["value"]} for i in value]


_PARSERS = {
    "entities": _entities,
    "watchedAttributes": _names("watchedAttributes"),
    "notificationTrigger": _triggers,
    "q": _q,
    "scopeQ": _scope_q,
    "geoQ": _geo_q,
    "isActive": _boolean("isActive"),
    "expiresAt": _expires,
    "throttling": _throttling,
    "notification": _notification,
    "jsonldContext": _context_url,
    "datasetId": _dataset_ids,
}


def status(doc: dict[str, Any], at: str | None = None) -> str:
    """active, paused (isActive false) or expired (expiresAt passed)."""
    if doc.get("expiresAt") and doc["expiresAt"] <= (at or now()):
        return "expired"
    return "active" if doc.get("isActive", True) else "paused"


def render_subscription(
    doc: dict[str, Any], ctx: Context, delivery: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A stored subscription in the caller's terms, as the client gave it, plus its status
    (5.2.12); `delivery` holds status fields not yet written to the store."""
    out = {k: v for k, v in doc.items() if not k.startswith("_") and v is not None}
    out.setdefault("notificationTrigger", DEFAULT_TRIGGERS)
    if "entities" in doc:
        out["entities"] = [_render_selector(s, ctx) for s in doc["entities"]]
    if "watchedAttributes" in doc:
        out["watchedAttributes"] = [ctx.compact(a) for a in doc["watchedAttributes"]]
    if "geoQ" in doc and "geoproperty" in doc["geoQ"]:
        out["geoQ"] = {**doc["geoQ"], "geoproperty": ctx.compact(doc["geoQ"]["geoproperty"])}
    notification = {**doc["notification"], **(delivery or {})}
    if "attributes" in notification:
        notification["attributes"] = [ctx.compact(a) for a in notification["attributes"]]
    if "lastSuccess" in notification or "lastFailure" in notification:
        failed = notification.get("lastFailure", "") > notification.get("lastSuccess", "")
        notification["status"] = "failed" if failed else "ok"
    out["notification"] = notification
    out["status"] = status(doc)
    return out


def _render_selector(selector: dict[str, Any], ctx: Context) -> dict[str, Any]:
    types = [ctx.compact(t) for t in selector["type"]]
    return {**selector, "type": types[0] if len(types) == 1 else ",".join(types)}
