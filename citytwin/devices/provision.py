"""Provisioning documents of the FIWARE IoT Agent API: service groups and devices.

Bodies are checked the way iotagent-node-lib's provisioning API takes them
(`{"services": [...]}` and `{"devices": [...]}`); a device's effective configuration is its own
fields over those of its service group (`Profile`). Errors are ProblemDetails that also carry the
IoT Agent's `name` and `message`, so that both kinds of client read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from citytwin.errors import AlreadyExists, BadRequestData, ResourceNotFound
from citytwin.model.validate import is_uri

Doc = dict[str, Any]
DEFAULT_TYPE = "Thing"  # the IoT Agent's default entity type
DEFAULT_RESOURCE = "/iot/json"
TRANSPORTS = ("MQTT", "HTTP")
# fields a group or device may carry; anything else is refused (a typo would silently do nothing)
_COMMON = {
    "entity_type", "attributes", "lazy", "commands", "static_attributes", "explicitAttrs",
    "timestamp", "transport", "protocol", "timezone", "apikey", "ngsiVersion", "cbroker",
    "description", "expressionLanguage", "autoprovision", "payloadType", "endpoint",
    "polling", "service", "subservice",
}  # fmt: skip
GROUP_FIELDS = _COMMON | {"resource", "entity_name_exp", "trust"}
DEVICE_FIELDS = _COMMON | {"device_id", "entity_name"}
_LISTS = ("attributes", "lazy", "commands", "static_attributes")


def wrong(message: str) -> BadRequestData:
    return BadRequestData(message, name="WRONG_SYNTAX", message=message)


def not_found(kind: str, message: str) -> ResourceNotFound:
    return ResourceNotFound(message, name=kind, message=message)


def duplicate(kind: str, message: str) -> AlreadyExists:
    return AlreadyExists(message, name=kind, message=message)


def parse_groups(body: Any) -> list[Doc]:
    """POST /iot/services: {"services": [group, ...]}."""
    return [parse_group(g) for g in _items(body, "services")]


def parse_devices(body: Any) -> list[Doc]:
    """POST /iot/devices: {"devices": [device, ...]}."""
    devices = [parse_device(d) for d in _items(body, "devices")]
    ids = [d["device_id"] for d in devices]
    if len(set(ids)) != len(ids):
        raise duplicate("DUPLICATE_DEVICE_ID", "the body provisions a device_id twice")
    return devices


def _items(body: Any, key: str) -> list[Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list) or not body[key]:
        raise wrong(f'the body must be {{"{key}": [...]}} with at least one item')
    return body[key]


def parse_group(raw: Any) -> Doc:
    doc = _checked(raw, GROUP_FIELDS, "service group")
    if not isinstance(doc.get("apikey"), str) or not doc["apikey"]:
        raise wrong("a service group needs an apikey")
    if "/" in doc["apikey"] or "+" in doc["apikey"] or "#" in doc["apikey"]:
        raise wrong("an apikey cannot hold '/', '+' or '#' (it is an MQTT topic level)")
    doc.setdefault("resource", DEFAULT_RESOURCE)
    _string(doc, "resource")
    return doc


def parse_device(raw: Any) -> Doc:
    doc = _checked(raw, DEVICE_FIELDS, "device")
    device_id = doc.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise wrong("a device needs a device_id")
    if any(c in device_id for c in "/+#"):
        raise wrong("a device_id cannot hold '/', '+' or '#' (it is an MQTT topic level)")
    _string(doc, "entity_name")
    if "entity_name" in doc and not is_uri(doc["entity_name"]):
        raise wrong("entity_name must be a URI (urn:ngsi-ld:Type:id) in NGSI-LD")
    if doc.get("transport", "MQTT") not in TRANSPORTS:
        raise wrong(f"transport must be one of {', '.join(TRANSPORTS)}")
    if "endpoint" in doc and not str(doc["endpoint"]).startswith(("http://", "https://")):
        raise wrong("endpoint must be an http(s) URL")
    return doc


def _checked(raw: Any, allowed: set[str], what: str) -> Doc:
    if not isinstance(raw, dict):
        raise wrong(f"a {what} must be a JSON object")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise wrong(f"a {what} has no field {', '.join(unknown)}")
    doc = dict(raw)
    for key in ("entity_type", "apikey", "protocol", "timezone", "transport", "endpoint"):
        _string(doc, key)
    for key in _LISTS:
        if not isinstance(doc.setdefault(key, []), list):
            raise wrong(f"{key} must be a list")
    for attr in doc["attributes"]:
        _declared(attr, "attributes", "object_id")
    for attr in doc["static_attributes"]:
        _declared(attr, "static_attributes", "value")
    for cmd in doc["commands"]:
        _declared(cmd, "commands", "object_id")
    if not isinstance(doc.get("explicitAttrs", False), bool):
        raise wrong("explicitAttrs must be true or false (expressions are not supported)")
    return doc


def _declared(attr: Any, where: str, optional: str) -> None:
    if not isinstance(attr, dict) or not isinstance(attr.get("name"), str) or not attr["name"]:
        raise wrong(f"each of {where} needs a name")
    if "type" in attr and not isinstance(attr["type"], str):
        raise wrong(f"{where}: the type of {attr['name']} must be a string")
    if where == "static_attributes" and optional not in attr:
        raise wrong(f"static attribute {attr['name']} needs a value")
    if not isinstance(attr.get("metadata", {}), dict):
        raise wrong(f"{where}: the metadata of {attr['name']} must be an object")
    if any(c in attr["name"] for c in "/+#"):
        raise wrong(f"{where}: {attr['name']} cannot hold '/', '+' or '#'")


def _string(doc: Doc, key: str) -> None:
    if key in doc and (not isinstance(doc[key], str) or not doc[key]):
        raise wrong(f"{key} must be a non-empty string")


def updated(doc: Doc, changes: Any, parse: Any, keep: tuple[str, ...]) -> Doc:
    """PUT: the fields given replace those stored; the identifying ones cannot change."""
    if not isinstance(changes, dict) or not changes:
        raise wrong("the body must be a JSON object of the fields to change")
    for key in keep:
        if key in changes and changes[key] != doc.get(key):
            raise wrong(f"{key} cannot be changed; delete and provision again")
    merged: Doc = parse({**doc, **changes})
    return merged


@dataclass(frozen=True)
class Attribute:
    """A declared attribute: `key` in the device's payload, `name` in the twin."""

    key: str
    name: str
    type: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Profile:
    """What the gateway needs of one device: its own fields over its group's."""

    tenant: str
    path: str
    device_id: str
    apikey: str
    entity_id: str
    entity_type: str
    transport: str
    endpoint: str | None
    attributes: dict[str, Attribute]  # by payload key
    commands: tuple[str, ...]
    static: tuple[Doc, ...]
    explicit: bool
    timestamp: bool


def profile(tenant: str, path: str, device: Doc, group: Doc | None) -> Profile:
    group = group or {}
    entity_type = device.get("entity_type") or group.get("entity_type") or DEFAULT_TYPE
    attrs: dict[str, Attribute] = {}
    for a in [*group.get("attributes", []), *device.get("attributes", [])]:
        key = a.get("object_id") or a["name"]
        attrs[key] = Attribute(key, a["name"], a.get("type", "Property"), a.get("metadata") or {})
    commands = {c["name"]: None for c in [*group.get("commands", []), *device["commands"]]}
    statics = [*group.get("static_attributes", []), *device["static_attributes"]]
    static = {s["name"]: s for s in statics}
    return Profile(
        tenant=tenant,
        path=path,
        device_id=device["device_id"],
        apikey=device.get("apikey") or group.get("apikey", ""),
        entity_id=device.get("entity_name") or f"urn:ngsi-ld:{entity_type}:{device['device_id']}",
        entity_type=entity_type,
        transport=device.get("transport") or group.get("transport") or "MQTT",
        endpoint=device.get("endpoint") or group.get("endpoint"),
        attributes=attrs,
        commands=tuple(commands),
        static=tuple(static.values()),
        explicit=bool(device.get("explicitAttrs", group.get("explicitAttrs", False))),
        timestamp=bool(device.get("timestamp", group.get("timestamp", False))),
    )
