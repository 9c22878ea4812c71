"""The single read/write service: model logic composed with the store (DESIGN.md data flow).

Every writer (HTTP, devices, simulator, CLI) goes through Broker. Bodies are parsed and validated
before the store is touched, and each write is a pure function of the entity's current state run
inside the store's transaction, so a failing request leaves the store exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from citytwin.errors import (
    AlreadyExists,
    BadRequestData,
    NgsiError,
    NonexistentTenant,
    ResourceNotFound,
)
from citytwin.model import update
from citytwin.model.context import Context
from citytwin.model.entity import (
    NULL,
    Entity,
    expand_name,
    parse_attribute,
    parse_attributes,
    parse_entity,
    parse_patch,
    parse_types,
)
from citytwin.model.subscription import parse_subscription, update_subscription
from citytwin.model.times import to_micros
from citytwin.model.validate import check_scope, check_uri
from citytwin.store.base import (
    MISSING,
    AttributeFn,
    Change,
    HistoryEntry,
    MutateFn,
    Query,
    QueryResult,
    Store,
)

_SECOND: list[Any] = [None, ""]  # the last whole second formatted, and its text


def now() -> str:
    """The current instant as NGSI-LD writes it (microseconds, UTC). Every reading of the
    device gateway is stamped, so the formatted second is reused."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    if seconds != _SECOND[0]:
        _SECOND[:] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_SECOND[1]}.{micros:06d}Z"


@dataclass
class BatchResult:
    """5.6.7-5.6.10: ids that succeeded (and which were created), and per-entity errors."""

    success: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    errors: list[tuple[str | None, NgsiError]] = field(default_factory=list)


class Broker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.subscriptions_changed: Callable[[], Awaitable[None]] | None = None
        self.delivery_status: Callable[[str, str], dict[str, Any]] = lambda tenant, sub: {}

    # -- reads -----------------------------------------------------------------------------------

    async def require_tenant(self, tenant: str, fresh: bool = False) -> None:
        if not await self.store.tenant_exists(tenant, fresh):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")

    async def _found(
        self, tenant: str, key: str, what: str, read: Callable[[str, str], Awaitable[Any]]
    ) -> Any:
        """One stored thing by id: a bad id is BadRequestData, a missing one ResourceNotFound."""
        check_uri(key, f"{what} id")
        await self.require_tenant(tenant)
        found = await read(tenant, key)
        if found is None:
            raise ResourceNotFound(f"{what} {key} does not exist")
        return found

    async def get_entity(self, tenant: str, entity_id: str) -> Entity:
        return await self._found(tenant, entity_id, "entity", self.store.get)

    async def query(self, tenant: str, query: Query) -> QueryResult:
        """5.7.2."""
        await self.require_tenant(tenant)
        return await self.store.query(tenant, query)

    async def summary(self, tenant: str) -> list[tuple[str, str | None, str | None, int]]:
        """What types and attributes the tenant's entities have (5.7.5-5.7.10)."""
        await self.require_tenant(tenant)
        return await self.store.summary(tenant)

    async def type_counts(self, tenant: str) -> dict[str, int]:
        await self.require_tenant(tenant)
        return await self.store.type_counts(tenant)

    async def attribute_count(self, tenant: str, attr: str) -> int:
        await self.require_tenant(tenant)
        return await self.store.attribute_count(tenant, attr)

    # -- single-entity writes --------------------------------------------------------------------

    async def write(self, tenant: str, entity_id: str, fn: MutateFn) -> Any:
        """Run one entity's mutation in its own transaction; what it raised is raised here."""
        (result,) = await self.store.mutate(tenant, [(entity_id, fn)])
        if isinstance(result, Exception):
            raise result
        return result

    async def create_entity(self, tenant: str, body: Any, ctx: Context) -> str:
        """5.6.1: a new entity; AlreadyExists if the id is taken."""
        entity = parse_entity(body, ctx, now())
        await self.write(tenant, entity["id"], _create(entity))
        return entity["id"]

    async def delete_entity(self, tenant: str, entity_id: str) -> None:
        """5.6.6."""
        check_uri(entity_id, "entity id")
        await self.write(tenant, entity_id, _existing(lambda e: Change(None)))

    async def merge_entity(self, tenant: str, entity_id: str, body: Any, ctx: Context) -> None:
        """5.6.17: merge-patch; urn:ngsi-ld:null (or JSON null) deletes an attribute."""
        check_uri(entity_id, "entity id")
        patch = _parse_fragment_entity(_nulls_to_ngsi(body), ctx, entity_id)
        stamp = now()
        await self.write(
            tenant, entity_id, _existing(lambda e: Change(update.merge_entity(e, patch, stamp)))
        )

    async def replace_entity(self, tenant: str, entity_id: str, body: Any, ctx: Context) -> None:
        """5.6.18: everything but the id and createdAt is replaced."""
        check_uri(entity_id, "entity id")
        stamp = now()  # the new instances' and the entity's modifiedAt are one instant
        new = parse_entity(body, ctx, stamp, need_id=False)
        if new["id"] not in (None, entity_id):
            raise BadRequestData("the body's id differs from the entity id in the path")
        await self.write(
            tenant, entity_id, _existing(lambda e: Change(update.replace_entity(e, new, stamp)))
        )

    async def append_attrs(
        self, tenant: str, entity_id: str, body: Any, ctx: Context, no_overwrite: bool
    ) -> update.Outcome:
        """5.6.3."""
        fragment = _parse_fragment(entity_id, body, ctx)
        stamp = now()
        return await self.write(
            tenant,
            entity_id,
            _outcome(lambda e: update.append_attrs(e, fragment, stamp, no_overwrite), fragment),
        )

    async def update_attrs(
        self, tenant: str, entity_id: str, body: Any, ctx: Context
    ) -> update.Outcome:
        """5.6.2."""
        fragment = _parse_fragment(entity_id, body, ctx)
        stamp = now()
        return await self.write(
            tenant,
            entity_id,
            _outcome(lambda e: update.update_attrs(e, fragment, stamp), fragment),
        )

    async def _attribute(
        self, tenant: str, entity_id: str, name: str, fn: AttributeFn, stamp: str
    ) -> None:
        if await self.store.mutate_attribute(tenant, entity_id, name, fn, stamp) is MISSING:
            raise ResourceNotFound(f"entity {entity_id} does not exist")

    async def partial_update(
        self, tenant: str, entity_id: str, attr: str, body: Any, ctx: Context
    ) -> None:
        """5.6.4."""
        check_uri(entity_id, "entity id")
        name = expand_name(attr, ctx)
        patch = parse_patch(attr, body, ctx)
        stamp = now()
        fn = partial(update.partial_update, name=attr, patch=patch, now=stamp)
        await self._attribute(tenant, entity_id, name, fn, stamp)

    async def replace_attr(
        self, tenant: str, entity_id: str, attr: str, body: Any, ctx: Context
    ) -> None:
        """5.6.19."""
        name, instances = _parse_one_attribute(entity_id, attr, body, ctx)
        stamp = now()
        fn = partial(update.replace_attr, name=attr, new=instances, now=stamp)
        await self._attribute(tenant, entity_id, name, fn, stamp)

    async def delete_attr(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        ctx: Context,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> None:
        """5.6.5."""
        check_uri(entity_id, "entity id")
        if dataset_id is not None:
            check_uri(dataset_id, "datasetId")
        stamp = now()
        if attr == "scope":
            scope_fn = _existing(lambda e: Change(update.delete_scope(e, stamp)))
            await self.write(tenant, entity_id, scope_fn)
            return
        name = expand_name(attr, ctx)
        fn = partial(update.delete_attr, name=attr, dataset_id=dataset_id, delete_all=delete_all)
        await self._attribute(tenant, entity_id, name, fn, stamp)

    # -- subscriptions (5.8) ---------------------------------------------------------------------

    async def create_subscription(
        self, tenant: str, body: Any, ctx: Context, context_url: Any
    ) -> str:
        """5.8.1."""
        doc = parse_subscription(body, ctx, context_url)
        if not await self.store.put_subscription(tenant, doc["id"], doc, create=True):
            raise AlreadyExists(f"subscription {doc['id']} already exists")
        await self._subscriptions_changed()
        return doc["id"]

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any]:
        """5.8.3."""
        return await self._found(tenant, sub_id, "subscription", self.store.get_subscription)

    async def subscriptions(self, tenant: str) -> list[dict[str, Any]]:
        """5.8.4."""
        await self.require_tenant(tenant)
        return [doc for _, doc in await self.store.subscriptions(tenant)]

    async def update_subscription(self, tenant: str, sub_id: str, body: Any, ctx: Context) -> None:
        """5.8.2."""
        doc = update_subscription(await self.get_subscription(tenant, sub_id), body, ctx)
        if not await self.store.put_subscription(tenant, sub_id, doc, create=False):
            raise ResourceNotFound(f"subscription {sub_id} does not exist")
        await self._subscriptions_changed()

    async def delete_subscription(self, tenant: str, sub_id: str) -> None:
        """5.8.5."""
        check_uri(sub_id, "subscription id")
        if not await self.store.delete_subscription(tenant, sub_id):
            raise ResourceNotFound(f"subscription {sub_id} does not exist")
        await self._subscriptions_changed()

    async def _subscriptions_changed(self) -> None:
        if self.subscriptions_changed is not None:
            await self.subscriptions_changed()

    # -- batch operations (5.6.7-5.6.10, 5.6.20) ---------------------------------------------------

    async def batch(
        self,
        tenant: str,
        op: str,
        items: Sequence[tuple[Any, Context | NgsiError]],
        options: frozenset[str],
    ) -> BatchResult:
        """Each entity succeeds or fails whole; all successes are committed together.

        An item's context may be the error met while resolving it: that entity then fails.
        """
        result = BatchResult()
        ops: list[tuple[str, MutateFn]] = []
        stamp = now()
        for body, ctx in items:
            try:
                if isinstance(ctx, NgsiError):
                    raise ctx
                ops.append(_BATCH[op](body, ctx, stamp, options))
            except NgsiError as exc:
                result.errors.append((_id_of(body), exc))
        outcomes = await self.store.mutate(tenant, ops) if ops else []
        seen: set[str] = set()
        for (entity_id, _), outcome in zip(ops, outcomes, strict=True):
            if isinstance(outcome, NgsiError):  # raised (nothing written) or partly applied
                result.errors.append((entity_id, outcome))
            elif isinstance(outcome, Exception):
                raise outcome
            elif entity_id not in seen:
                seen.add(entity_id)
                result.success.append(entity_id)
                if outcome == "created":
                    result.created.append(entity_id)
        return result

    async def measure(
        self,
        tenant: str,
        items: Sequence[tuple[str, Entity, Entity | None]],
        when: Callable[[Entity], bool] | None = None,
    ) -> list[Any]:
        """Device measurements, many entities in one transaction (the device gateway).

        Each item is (entity id, parsed attributes, the entity to create first if it does not
        exist). The items of one entity are folded into one update: the last reading of each
        attribute becomes its state, and every reading goes to the history as sent (two
        readings in one batch are two instances). `when`: write only to an entity for which it
        holds, checked in the transaction (a compare-and-set). Returns None or the error, per
        item.
        """
        stamp = now()
        folded: dict[str, tuple[dict[str, list[Any]], list[tuple[str, Any]], Entity | None]] = {}
        for entity_id, attrs, blank in items:
            latest, readings, _ = folded.setdefault(entity_id, ({}, [], blank))
            latest.update((n, i) for n, i in attrs.items() if not _stale(i, latest.get(n)))
            readings += [(name, inst) for name, instances in attrs.items() for inst in instances]
        ops = [(i, _measured(*f, stamp, when)) for i, f in folded.items()]
        results = dict(zip(folded, await self.store.mutate(tenant, ops), strict=True))
        return [results[entity_id] for entity_id, _, _ in items]

    async def adopt(self, tenant: str, entities: list[Entity]) -> None:
        """Create each entity, or add to an existing one the attributes it lacks (a device
        provisioned for a twin that is already there)."""
        stamp = now()

        def op(entity: Entity) -> MutateFn:
            def fn(current: Entity | None) -> Change:
                if current is None:
                    return Change(entity)
                outcome = update.append_attrs(current, entity, stamp, no_overwrite=True)
                return Change(outcome.entity, write=outcome.changed)

            return fn

        for result in await self.store.mutate(tenant, [(e["id"], op(e)) for e in entities]):
            if isinstance(result, Exception):
                raise result

    async def purge(
        self, tenant: str, what: Query, attrs: frozenset[str] | None = None, keep: bool = False
    ) -> int:
        """5.6.21: delete the entities a filter selects, or (keep/drop) some of their attributes."""
        await self.require_tenant(tenant, fresh=True)  # a write: not a replica's lagging view
        if attrs is None:
            return await self.store.purge(tenant, what)
        ids = [e["id"] for e in (await self.store.query(tenant, what, fresh=True)).entities]
        stamp = now()

        def trim(entity: Entity) -> Change:
            names = [n for n in entity["attrs"] if (n in attrs) != keep]
            for name in names:
                del entity["attrs"][name]
            entity["modifiedAt"] = stamp
            return Change(entity, write=bool(names))

        await self.store.mutate(tenant, [(i, _existing(trim)) for i in ids])
        return len(ids)


# -- mutation functions: pure, run inside the store's transaction ---------------------------------


def _create(entity: Entity) -> MutateFn:
    def fn(current: Entity | None) -> Change:
        if current is not None:
            raise AlreadyExists(f"entity {entity['id']} already exists")
        return Change(entity, "created")

    return fn


def _existing(fn: Callable[[Entity], Change]) -> MutateFn:
    def guarded(current: Entity | None) -> Change:
        if current is None:
            raise ResourceNotFound("entity does not exist")
        return fn(current)

    return guarded


def _outcome(fn: Callable[[Entity], update.Outcome], fragment: Entity) -> MutateFn:
    def run(entity: Entity) -> Change:
        outcome = fn(entity)
        return Change(outcome.entity, outcome, write=outcome.changed)

    return _existing(_only(fragment, run))


def _only(fragment: Entity, fn: Callable[[Entity], Change]) -> Callable[[Entity], Change]:
    """A write of a fragment's attributes: when it changes neither types nor scope, the change
    names the attributes it changed and how they were, so that the store logs and works out the
    history of those alone (not of the whole entity), and readers of the log (commands) see
    only what was written."""

    def run(current: Entity) -> Change:
        names = list(fragment["attrs"])
        was = {n: list(current["attrs"][n]) for n in names if n in current["attrs"]}
        types = list(current["type"])
        change = fn(current)
        if "scope" not in fragment and change.entity and change.entity["type"] == types:
            after = change.entity["attrs"]  # what noOverwrite kept as it was is not touched
            changed = [n for n in names if was.get(n) != after.get(n)]
            change.touched = (changed, {n: was[n] for n in changed if n in was})
        return change

    return run


def _measured(
    attrs: dict[str, list[Any]],
    readings: list[tuple[str, Any]],
    blank: Entity | None,
    stamp: str,
    when: Callable[[Entity], bool] | None = None,
) -> MutateFn:
    def fn(current: Entity | None) -> Change:
        if current is None:
            if blank is None:
                raise ResourceNotFound("entity does not exist")
            current = {**blank, "attrs": dict(blank["attrs"]), "createdAt": stamp}
        if when is not None and not when(current):
            return Change(current, write=False)
        fresh = {n: i for n, i in attrs.items() if not _stale(i, current["attrs"].get(n))}
        before = {n: list(current["attrs"][n]) for n in fresh if n in current["attrs"]}
        entity = update.update_attrs(current, {"type": [], "attrs": fresh}, stamp).entity
        written = [HistoryEntry(name, inst) for name, inst in readings]
        return Change(entity, history=written, touched=(list(fresh), before))

    return fn


def _stale(new: list[Any], old: list[Any] | None) -> bool:
    """Is a reading older than the state it would replace? Readings reach the twin out of
    order when several workers share the devices, or a broker sends one again: the newest
    observation stays the state (the older one still goes to the history)."""
    seen = next((i.get("observedAt") for i in old or () if "datasetId" not in i), None)
    came = next((i.get("observedAt") for i in new if "datasetId" not in i), None)
    return seen is not None and came is not None and to_micros(came) < to_micros(seen)


def _upsert(entity: Entity, stamp: str, mode_update: bool) -> MutateFn:
    def fn(current: Entity | None) -> Change:
        if current is None:
            return Change(entity, "created")
        if mode_update:
            return Change(update.upsert_update(current, entity, stamp), "updated")
        return Change(update.replace_entity(current, entity, stamp), "updated")

    return fn


def _batch_create(body: Any, ctx: Context, stamp: str, options: frozenset[str]) -> Any:
    entity = parse_entity(body, ctx, stamp)
    return entity["id"], _create(entity)


def _batch_upsert(body: Any, ctx: Context, stamp: str, options: frozenset[str]) -> Any:
    entity = parse_entity(body, ctx, stamp)
    return entity["id"], _upsert(entity, stamp, "update" in options)


def _batch_update(body: Any, ctx: Context, stamp: str, options: frozenset[str]) -> Any:
    entity = _parse_batch_fragment(body, ctx)
    keep = "noOverwrite" in options

    def fn(current: Entity) -> Change:
        outcome = update.append_attrs(current, entity, stamp, keep)
        if outcome.not_updated:
            return Change(outcome.entity, _not_updated(outcome))
        return Change(outcome.entity, "updated")

    return entity["id"], _existing(_only(entity, fn))


def _not_updated(outcome: update.Outcome) -> NgsiError:
    names = ", ".join(name for name, _ in outcome.not_updated)
    return BadRequestData(f"attributes not updated (noOverwrite): {names}")


def _batch_merge(body: Any, ctx: Context, stamp: str, options: frozenset[str]) -> Any:
    entity = _parse_batch_fragment(_nulls_to_ngsi(body), ctx)
    return entity["id"], _existing(lambda e: Change(update.merge_entity(e, entity, stamp)))


def _batch_delete(body: Any, ctx: Context, stamp: str, options: frozenset[str]) -> Any:
    return check_uri(body, "entity id"), _existing(lambda e: Change(None))


_BATCH = {
    "create": _batch_create,
    "upsert": _batch_upsert,
    "update": _batch_update,
    "merge": _batch_merge,
    "delete": _batch_delete,
}


def _id_of(body: Any) -> str | None:
    if isinstance(body, dict):
        ident = body.get("id", body.get("@id"))
        return ident if isinstance(ident, str) else None
    return body if isinstance(body, str) else None


def _parse_batch_fragment(body: Any, ctx: Context) -> Entity:
    if not isinstance(body, dict):
        raise BadRequestData("each entity of a batch is a JSON object")
    entity_id = check_uri(body.get("id", body.get("@id")), "entity id")
    return _parse_fragment_entity(body, ctx, entity_id)


def _parse_fragment_entity(body: Any, ctx: Context, entity_id: str) -> Entity:
    """An entity fragment: attributes, and optionally type and scope."""
    if not isinstance(body, dict):
        raise BadRequestData("the body must be a JSON object")
    if body.get("id", entity_id) != entity_id:
        raise BadRequestData("the body's id differs from the entity id in the path")
    fragment: Entity = {"id": entity_id, "type": [], "attrs": parse_attributes(body, ctx, now())}
    if body.get("type") is not None:
        fragment["type"] = parse_types(body["type"], ctx)
    if "scope" in body:
        fragment["scope"] = check_scope(body["scope"])
    return fragment


def _parse_fragment(entity_id: str, body: Any, ctx: Context) -> Entity:
    check_uri(entity_id, "entity id")
    return _parse_fragment_entity(body, ctx, entity_id)


def _parse_one_attribute(
    entity_id: str, attr: str, body: Any, ctx: Context
) -> tuple[str, list[dict[str, Any]]]:
    check_uri(entity_id, "entity id")
    if attr in ("scope", "id", "type"):
        raise BadRequestData(f"{attr} is not an attribute that can be replaced")
    if not isinstance(body, dict | list):
        raise BadRequestData("an attribute fragment is a JSON object")
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "@context"}
    return expand_name(attr, ctx), parse_attribute(attr, body, ctx, now())


def _nulls_to_ngsi(body: Any) -> Any:
    """A top-level RFC 7396 null in a merge-patch deletes the attribute, as urn:ngsi-ld:null does.

    Nulls deeper down (a Property whose value is null) stay invalid input (5.6.17).
    """
    if isinstance(body, dict):
        return {k: NULL if v is None else v for k, v in body.items()}
    return body


__all__ = ["BatchResult", "Broker", "Query", "QueryResult"]
