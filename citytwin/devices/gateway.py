"""The device gateway: FIWARE IoT Agent JSON devices in (MQTT and HTTP) and commands out.

Topics (iotagent-json conventions, with or without a leading '/json'):
    /{apikey}/{device_id}/attrs            a JSON object of measurements
    /{apikey}/{device_id}/attrs/{object}   one measurement
    /{apikey}/{device_id}/cmd              commands to the device (published by the gateway)
    /{apikey}/{device_id}/cmdexe           the device's answers
A bad message (unknown apikey or device, not JSON, a value that does not fit its type) is
dropped, counted in `metrics` and logged once per kind; every other device goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from citytwin.broker import Broker, now
from citytwin.devices.commands import Commands
from citytwin.devices.ingest import Ingest, Reading
from citytwin.devices.measure import BadValue, attributes, coerce, twin
from citytwin.devices.provision import Profile, parse_device, profile, wrong
from citytwin.devices.registry import DEVICE, Registry, device_key
from citytwin.errors import NgsiError
from citytwin.model.context import Context
from citytwin.model.entity import ENTITY_MEMBERS, MEMBERS, Entity, expand_name, parse_entity
from citytwin.mqtt.client import MqttClient

log = logging.getLogger("citytwin.devices")
SUFFIXES = ("attrs", "cmdexe")
Done = Callable[[Exception | None], None]


class Dropped(Exception):
    """A message the gateway cannot use: `kind` is its metrics counter."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def parse_topic(topic: str) -> tuple[str, str, str, str | None] | None:
    """(apikey, device_id, attrs|cmdexe|cmd, object_id) of a device topic, else None."""
    parts = topic.lstrip("/").split("/")
    if len(parts) >= 4 and parts[0] == "json" and parts[3] in (*SUFFIXES, "cmd"):
        parts = parts[1:]
    if len(parts) == 3 and parts[2] in (*SUFFIXES, "cmd"):
        return parts[0], parts[1], parts[2], None
    if len(parts) == 4 and parts[2] == "attrs" and parts[3]:
        return parts[0], parts[1], "attrs", parts[3]
    return None


class Gateway:
    def __init__(self, broker: Broker, ctx: Context, queue: int, command_timeout: float) -> None:
        self.broker = broker
        self.ctx = ctx
        self.registry = Registry(broker.store)
        self.metrics: Counter[str] = Counter()
        self.ingest = Ingest(broker, self.metrics, queue)
        self.commands = Commands(
            broker, self.registry, ctx, self.metrics, self._send, command_timeout
        )
        self.publish: Callable[[str, bytes], Any] | None = None  # set when MQTT is linked
        self.mqtt: MqttClient | None = None
        self.logged: set[str] = set()
        self.blanks: dict[tuple[str, str], Entity] = {}  # twins to create, by entity
        self.blanks_of = -1  # the registry version they were made for
        self.slow: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.registry.load()
        self.ingest.start()

    async def stop(self) -> None:
        await self.commands.stop()
        await self.ingest.stop()

    # -- measurements in -------------------------------------------------------------------------

    async def known(self, apikey: str, device_id: str) -> Profile:
        found = self.registry.device(apikey, device_id)
        if found is None:  # look again even if this refresh read nothing: another message's
            await self.registry.refresh()  # may have read it meanwhile
            found = self.registry.device(apikey, device_id)
        if found is None:
            raise Dropped("unknown-device", f"device {device_id!r} is not provisioned")
        return found

    async def device(self, apikey: str, device_id: str, transport: str) -> Profile:
        """The device a message comes from, provisioned on the spot if its group allows it."""
        with contextlib.suppress(Dropped):
            return await self.known(apikey, device_id)
        group = self.registry.group(apikey)
        if group is None:
            raise Dropped("unknown-apikey", f"no service group has apikey {apikey!r}")
        tenant, path, doc = group
        if doc.get("autoprovision") is False:
            raise Dropped("unknown-device", f"device {device_id!r} is not provisioned")
        try:
            doc = parse_device({"device_id": device_id, "transport": transport})
            created = await self.provision(tenant, path, [doc])
        except NgsiError as exc:
            raise Dropped("unknown-device", f"{device_id!r} cannot be provisioned: {exc}") from None
        found = self.registry.device(apikey, device_id)
        if not created or found is None:  # provisioned meanwhile, or under another apikey
            raise Dropped("unknown-device", f"device {device_id!r} has another apikey")
        self.metrics["devices.autoprovisioned"] += 1
        return found

    def reading(self, device: Profile, payload: Any, done: Done | None = None) -> Reading:
        """A measurement payload as a reading of the device's twin (Dropped if unusable)."""
        if not isinstance(payload, dict):
            raise Dropped("not-json-object", "measurements must be a JSON object")
        stamp = now()
        try:
            body = attributes(device, payload, stamp)
            attrs = {expand_name(n, self.ctx): [self._stored(a, stamp)] for n, a in body.items()}
        except (BadValue, NgsiError) as exc:
            raise Dropped("bad-value", str(exc)) from None
        if any(name in ENTITY_MEMBERS for name in body):
            raise Dropped("bad-value", "a measurement cannot be named id, type or scope")
        return Reading(device.tenant, device.entity_id, attrs, self._blank(device), done)

    def _stored(self, attr: dict[str, Any], stamp: str) -> dict[str, Any]:
        """A measured attribute in the stored form. `measure.attribute` made and checked it,
        so only the names of its sub-properties are left to expand (no full parse: this runs
        for every reading)."""
        out = {}
        for key, value in attr.items():
            if key in MEMBERS:
                out[key] = value
            else:
                out[expand_name(key, self.ctx)] = self._stored(value, stamp)
        out["createdAt"] = out["modifiedAt"] = stamp
        return out

    def _blank(self, device: Profile) -> Entity:
        if self.blanks_of != self.registry.version:  # provisioning changed (any worker's)
            self.blanks, self.blanks_of = {}, self.registry.version
        key = (device.tenant, device.entity_id)
        blank = self.blanks.get(key)
        if blank is None:
            blank = self.blanks[key] = parse_entity(twin(device), self.ctx, now())
        return blank

    def drop(self, error: Dropped, where: str) -> None:
        self.metrics[f"dropped.{error.kind}"] += 1
        if error.kind not in self.logged:  # once per kind: a broken device must not flood logs
            self.logged.add(error.kind)
            log.warning("dropped a message (%s) on %s: %s", error.kind, where, error)

    def message(self, topic: str, payload: bytes, done: Done) -> None:
        """One MQTT message; `done` is called once it is committed, or dropped. Readings of
        known devices are queued at once, in order; the rest take the slow path."""
        self.metrics["received"] += 1
        try:
            parsed = parse_topic(topic)
            if parsed is None:
                raise Dropped("bad-topic", f"{topic} is not a device topic")
            apikey, device_id, suffix, object_id = parsed
            if suffix == "cmd":
                done(None)  # our own command, seen through a wildcard subscription
                return
            device = self.registry.device(apikey, device_id)
            if device is None or suffix == "cmdexe":
                task = asyncio.create_task(self._slow(topic, parsed, payload, done))
                self.slow.add(task)
                task.add_done_callback(self.slow.discard)
                return
            self._measured(device, payload, object_id, done)
        except Exception as exc:  # whatever the message, the gateway goes on
            self._dropped(exc, topic, done)

    def _dropped(self, exc: Exception, topic: str, done: Done) -> None:
        if not isinstance(exc, Dropped):
            log.exception("a message on %s could not be used", topic)
            exc = Dropped("error", f"{type(exc).__name__}: {exc}")
        self.drop(exc, topic)
        done(exc)

    async def _slow(
        self, topic: str, parsed: tuple[str, str, str, str | None], payload: bytes, done: Done
    ) -> None:
        apikey, device_id, suffix, object_id = parsed
        try:
            if suffix == "attrs":
                device = await self.device(apikey, device_id, "MQTT")
                self._measured(device, payload, object_id, done)
                return
            device = await self.known(apikey, device_id)  # answers provision nothing
            data = _json(payload)
            if not isinstance(data, dict):
                raise Dropped("not-json-object", "a command answer must be a JSON object")
            await self.commands.answered(device, data)
            done(None)
        except Exception as exc:
            self._dropped(exc, topic, done)

    def _measured(self, device: Profile, payload: bytes, object_id: str | None, done: Done) -> None:
        if object_id is None:
            data = _json(payload)
        else:
            try:
                data = {object_id: orjson.loads(payload)}
            except orjson.JSONDecodeError:  # a single value may be plain text
                data = {object_id: payload.decode(errors="replace")}
        self.ingest.offer(self.reading(device, data, done), bounded=False)

    # -- commands out ----------------------------------------------------------------------------

    async def _send(self, device: Profile, name: str, value: Any) -> None:
        if self.publish is None:
            raise ConnectionError("no MQTT broker is linked")
        topic = f"/{device.apikey}/{device.device_id}/cmd"
        await self.publish(topic, orjson.dumps({name: value}))
        self.metrics["commands.sent"] += 1

    # -- provisioning ----------------------------------------------------------------------------

    async def provision(self, tenant: str, path: str, devices: list[dict[str, Any]]) -> bool:
        """Create the devices' twins (or add to existing twins what they lack) and store the
        devices; False, with nothing stored, if one of them exists."""
        await self.registry.load()
        if any(
            (tenant, device_key(path, d["device_id"])) in self.registry.maps.devices
            for d in devices
        ):
            return False
        twins = [self.twin_of(tenant, path, doc) for doc in devices]
        await self.broker.adopt(tenant, twins)
        items = [(tenant, device_key(path, d["device_id"]), d) for d in devices]
        created = await self.broker.store.provision(DEVICE, items, create=True)
        await self.registry.load()
        return created

    async def reprovision(self, tenant: str, path: str, key: str, doc: dict[str, Any]) -> None:
        """PUT of a device: its twin gains what the new provisioning adds."""
        await self.broker.adopt(tenant, [self.twin_of(tenant, path, doc)])
        await self.broker.store.provision(DEVICE, [(tenant, key, doc)], create=False)
        await self.registry.load()

    def twin_of(
        self, tenant: str, path: str, device: dict[str, Any], group: dict[str, Any] | None = None
    ) -> Entity:
        """The twin a device provisioning makes, checked (a bad static value or attribute
        name is the provisioning's 400, not a failure of every later reading)."""
        group = group or self.registry.group_of(tenant, path, device)
        found = profile(tenant, path, device, group)
        names = [a.name for a in found.attributes.values()] + list(found.commands)
        if set(names) & ENTITY_MEMBERS:
            raise wrong("an attribute cannot be named id, type, scope or a system attribute")
        try:
            entity = parse_entity(twin(found), self.ctx, now())
            for attr in found.attributes.values():
                for name in [attr.name, *attr.metadata]:
                    if name != "unitCode":
                        expand_name(name, self.ctx)
        except (BadValue, NgsiError) as exc:
            raise wrong(f"{device['device_id']}: {exc}") from None
        return entity


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise Dropped("not-json", "the payload is not JSON") from None


__all__ = ["Dropped", "Gateway", "coerce", "parse_topic"]
