"""The provisioned service groups and devices: kept in the store, looked up from memory.

A measurement names its device by apikey and device_id (the MQTT topic or the HTTP query), a
command by its twin entity; both are answered from maps rebuilt after every provisioning change,
and again from the store now and then, since other workers may provision too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citytwin.devices.provision import DEFAULT_RESOURCE, Doc, Profile, profile
from citytwin.store.base import Store

GROUP, DEVICE = "group", "device"
SEP = "\x1f"


def group_key(path: str, resource: str, apikey: str) -> str:
    return f"{path}{SEP}{resource}{SEP}{apikey}"


def device_key(path: str, device_id: str) -> str:
    return f"{path}{SEP}{device_id}"


@dataclass
class _Maps:
    groups: dict[tuple[str, str], Doc] = field(default_factory=dict)  # (tenant, key)
    devices: dict[tuple[str, str], Doc] = field(default_factory=dict)
    by_apikey: dict[str, list[tuple[str, str, Doc]]] = field(default_factory=dict)
    own_apikey: dict[tuple[str, str], tuple[str, str, Doc]] = field(default_factory=dict)
    by_entity: dict[tuple[str, str], Profile] = field(default_factory=dict)
    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)  # (tenant, key)


class Registry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.maps = _Maps()
        self.version = -1

    async def load(self) -> None:
        """Read every group and device; again if a provisioning write came between the reads
        (another worker's: a device read without the group written just before it would not
        be recognised)."""
        while True:
            version = await self.store.provisioning_version()
            maps = await self._read()
            if await self.store.provisioning_version() == version:
                break
        self.maps = maps
        self.version = version

    async def _read(self) -> _Maps:
        maps = _Maps()
        for tenant, key, doc in await self.store.provisioned(GROUP):
            maps.groups[(tenant, key)] = doc
            path = key.split(SEP, 1)[0]
            maps.by_apikey.setdefault(doc["apikey"], []).append((tenant, path, doc))
        for tenant, key, doc in await self.store.provisioned(DEVICE):
            maps.devices[(tenant, key)] = doc
            path = key.split(SEP, 1)[0]
            if doc.get("apikey"):
                maps.own_apikey[(doc["apikey"], doc["device_id"])] = (tenant, path, doc)
            found = profile(tenant, path, doc, self._group_of(maps, tenant, path, doc))
            maps.by_entity[(tenant, found.entity_id)] = found
            maps.profiles[(tenant, key)] = found
        return maps

    async def refresh(self) -> bool:
        """Read the store again if any worker provisioned since the last read (a one-row
        read finds out); True if it did."""
        if await self.store.provisioning_version() == self.version:
            return False
        await self.load()
        return True

    @staticmethod
    def _group_of(maps: _Maps, tenant: str, path: str, device: Doc) -> Doc | None:
        """A device's group: the one of its apikey, else its service path's (the /iot/json one
        first)."""
        candidates = [
            doc
            for (t, key), doc in maps.groups.items()
            if t == tenant and key.split(SEP, 1)[0] == path
        ]
        if device.get("apikey"):
            candidates = [g for g in candidates if g["apikey"] == device["apikey"]]
        candidates.sort(key=lambda g: g.get("resource") != DEFAULT_RESOURCE)
        return candidates[0] if candidates else None

    def group_of(self, tenant: str, path: str, device: Doc) -> Doc | None:
        return self._group_of(self.maps, tenant, path, device)

    # -- lookups ---------------------------------------------------------------------------------

    def device(self, apikey: str, device_id: str) -> Profile | None:
        maps = self.maps
        own = maps.own_apikey.get((apikey, device_id))
        if own is not None:
            tenant, path, _ = own
            return maps.profiles.get((tenant, device_key(path, device_id)))
        for tenant, path, _ in maps.by_apikey.get(apikey, ()):
            key = (tenant, device_key(path, device_id))
            doc = maps.devices.get(key)
            if doc is not None and doc.get("apikey") in (None, apikey):
                return maps.profiles[key]
        return None

    def group(self, apikey: str) -> tuple[str, str, Doc] | None:
        """The group an unknown device of this apikey is provisioned into."""
        groups = self.maps.by_apikey.get(apikey)
        return groups[0] if groups else None

    def by_entity(self, tenant: str, entity_id: str) -> Profile | None:
        return self.maps.by_entity.get((tenant, entity_id))

    def commanded(self) -> list[Profile]:
        return [p for p in self.maps.by_entity.values() if p.commands]

    def groups(self, tenant: str, path: str | None) -> list[tuple[str, Doc]]:
        return self._listing(self.maps.groups, tenant, path)

    def devices(self, tenant: str, path: str | None) -> list[tuple[str, Doc]]:
        return self._listing(self.maps.devices, tenant, path)

    @staticmethod
    def _listing(
        items: dict[tuple[str, str], Doc], tenant: str, path: str | None
    ) -> list[tuple[str, Doc]]:
        return [
            (key, doc)
            for (t, key), doc in items.items()
            if t == tenant and (path is None or key.split(SEP, 1)[0] == path)
        ]
