"""The Store protocol: what the broker needs of a backend (DESIGN.md: one write path).

Writes are expressed as pure functions of an entity's current state, so each backend can run the
read, the function and the write in one transaction, and so that a failing function leaves the
entity exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from citytwin.model.geo import GeoQuery
from citytwin.model.history import TIME_PROPERTIES, HistoryQuery, HistoryRow, TimeWindow
from citytwin.model.query import Node, OrderKey

Entity = dict[str, Any]
__all__ = ["TIME_PROPERTIES", "HistoryQuery", "HistoryRow", "TimeWindow"]


@dataclass(slots=True)
class HistoryEntry:
    """An attribute instance a write adds to the history of its entity (`deleted`: a tombstone).

    `replaces`: an instance of the same attribute, datasetId and observedAt is replaced (the
    temporal API's upsert, 5.6.11) rather than kept beside it.
    """

    attr: str
    instance: dict[str, Any]
    deleted: bool = False
    replaces: bool = False


@dataclass
class Change:
    """The outcome of a mutation: the entity's new state (None deletes it) and a result.

    `history`: what the write adds to the entity's history; None lets the store work it out
    (every instance the write touched, a tombstone for every one it removed).
    `touched`: the write changed only these attributes (not the types, not the scope), and
    this is how they were (by name); the change log then records only them as before, as a
    single-attribute write does, and the store derives the history and index of those alone.
    """

    entity: Entity | None
    result: Any = None
    write: bool = True
    history: list[HistoryEntry] | None = None
    touched: tuple[list[str], dict[str, Any]] | None = None


MutateFn = Callable[[Entity | None], Change]
Instances = list[dict[str, Any]]
AttributeFn = Callable[[Instances | None], Instances]


@dataclass(slots=True)
class ChangeRecord:
    """One entry of the change log: an entity before and after one write.

    `attrs` names the attributes the write touched when only those are in `before` (a
    single-attribute write); None means the whole entity is there to compare.
    """

    seq: int
    tenant: str
    entity_id: str
    attrs: list[str] | None
    before: Entity | None
    after: Entity | None
    at: str


class Missing:
    """Returned by mutate_attribute when the entity does not exist."""


MISSING = Missing()


@dataclass(frozen=True)
class Query:
    """Which entities a query, a purge or a batch selects (5.7.2, 5.6.21); names are IRIs.

    Every condition given must hold. Results come ordered by entity id unless told otherwise.
    """

    types: Node | None = None
    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    q: Node | None = None
    scope_q: Node | None = None
    geo: GeoQuery | None = None
    attrs: frozenset[str] | None = None
    limit: int | None = None
    offset: int = 0
    count: bool = False
    order_by: tuple[OrderKey, ...] = ()

    @property
    def everything(self) -> bool:
        """No condition at all (selects every entity of the tenant)."""
        return all(
            getattr(self, f) is None
            for f in ("types", "ids", "id_pattern", "q", "scope_q", "geo", "attrs")
        )


@dataclass
class QueryResult:
    entities: list[Entity]
    count: int | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def tenant_exists(self, tenant: str, fresh: bool = False) -> bool:
        """`fresh`: as the primary has it (a store reading from a replica asks the primary)."""
        ...

    async def get(self, tenant: str, entity_id: str) -> Entity | None: ...

    async def mutate(self, tenant: str, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        """Run each (entity id, fn) atomically and in order, in one commit.

        A result is fn's Change.result, or the exception fn raised (that op then wrote nothing).
        """
        ...

    async def mutate_attribute(
        self, tenant: str, entity_id: str, name: str, fn: AttributeFn, modified_at: str
    ) -> Missing | None:
        """Rewrite one attribute atomically: fn gets its instances (None: no such attribute)
        and returns the new ones ([] deletes it); the entity's modifiedAt becomes modified_at.

        Single-attribute writes are the commonest (a device reporting a reading), so backends
        can do them without reading and writing the whole entity. Exceptions of fn propagate.
        """
        ...

    async def query(self, tenant: str, query: Query, fresh: bool = False) -> QueryResult:
        """`fresh` as in tenant_exists: for a write that acts on what it selects."""
        ...

    def entity_matches(self, tenant: str, entity: Entity, query: Query) -> bool:
        """Whether one entity, stored or not, meets a query's idPattern, q and scopeQ (the same
        code as query)."""
        ...

    async def purge(self, tenant: str, query: Query) -> int: ...

    async def summary(self, tenant: str) -> list[tuple[str, str | None, str | None, int]]:
        """Discovery (5.7.5-5.7.10): (type, attribute, attribute type, number of entities).

        A type whose entities have no attribute appears once with attribute None.
        """
        ...

    async def type_counts(self, tenant: str) -> dict[str, int]: ...

    # -- the change log, subscriptions and cursors (for the notifier) ----------------------------

    async def try_lease(self, name: str) -> bool:
        """Take a lease only one process may hold (the notifier, with several workers); True
        if this process holds it, already or now."""
        ...

    async def holds(self, name: str) -> bool:
        """Whether this process still holds a lease it took. Never lost on SQLite; lost on
        PostgreSQL when the store's connection broke and another process took it meanwhile."""
        ...

    # watch() calls back after the commits of other processes too (else they must be polled)
    watches_every_process: bool

    def watch(self, callback: Callable[[], None]) -> None:
        """Call back (thread-safely) after each commit: new changes may be in the log."""
        ...

    async def changes_since(
        self, seq: int, limit: int = 1000, before: bool = True
    ) -> list[ChangeRecord]:
        """The next changes after `seq`; `before=False` leaves out the state before a write
        (kept only for deletions), for readers that need only the new state."""
        ...

    async def changes_touching(self, seq: int, upto: int, needles: list[str]) -> list[ChangeRecord]:
        """Changes in (seq, upto] whose written attributes may hold one of the needles (a
        prefilter: some may not)."""
        ...

    async def last_change(self) -> int: ...

    async def prune_changes(self, below: int, keep: int = 0) -> int:
        """Forget the changes numbered up to `below`, but for the newest `keep` (numbers are
        not dense on PostgreSQL: a count, not a distance in numbers)."""
        ...

    async def cursor(self, name: str) -> int | None: ...

    async def set_cursor(self, name: str, seq: int) -> None: ...

    async def put_subscription(
        self, tenant: str, sub_id: str, doc: dict[str, Any], create: bool
    ) -> bool:
        """Store a subscription; False when `create` and it exists, or not `create` and not."""
        ...

    async def save_status(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Merge (tenant, id, delivery status fields) into stored subscriptions, in one write."""
        ...

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None: ...

    async def subscriptions(self, tenant: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(tenant, document) of every subscription, or of one tenant's."""
        ...

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool: ...

    async def subscriptions_version(self) -> int:
        """A number that changes with every subscription write, by any process."""
        ...

    async def attribute_count(self, tenant: str, attr: str) -> int: ...

    # -- history (the temporal API) --------------------------------------------------------------

    async def history(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> list[HistoryRow]:
        """Instances of these entities' series in the window, series by series, oldest first."""
        ...

    async def history_entities(
        self, tenant: str, entity_ids: list[str], query: HistoryQuery
    ) -> set[str]: ...

    async def history_attrs(self, tenant: str, entity_id: str) -> set[str]: ...

    async def aggregate(
        self,
        tenant: str,
        entity_ids: list[str],
        query: HistoryQuery,
        periods: Callable[[str, int, int], list[tuple[int, int]]],
        methods: tuple[str, ...],
    ) -> list[tuple[str, str, str | None, int, tuple[Any, ...], bool]]:
        """The totals the aggregation methods need, of each [start, end) period holding
        instances, per series, entity by entity (each one's series in the order they were
        made); `periods(entity, oldest, newest)` makes an entity's periods from the instants the
        query finds of it (none: no call for it)."""
        ...

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str, datasets: set[str] | None
    ) -> int: ...

    async def modify_instance(
        self, tenant: str, entity_id: str, attr: str, iid: int, inst: dict[str, Any], at: str
    ) -> bool: ...

    async def delete_instance(self, tenant: str, entity_id: str, attr: str, iid: int) -> bool: ...

    async def prune_history(self, cutoff: int) -> int: ...

    # -- provisioning of the device gateway ------------------------------------------------------

    async def provisioned(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(tenant, key, document) of every provisioned item of a kind ("group", "device")."""
        ...

    async def provision(
        self, kind: str, items: list[tuple[str, str, dict[str, Any]]], create: bool
    ) -> bool:
        """Store items all or none: False if `create` and one exists, or not and one does not."""
        ...

    async def unprovision(self, kind: str, tenant: str, keys: list[str]) -> int: ...

    async def provisioning_version(self) -> int:
        """A number that changes with every provisioning write, by any process."""
        ...
