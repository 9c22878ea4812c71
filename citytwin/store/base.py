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
from citytwin.model.query import Node, OrderKey

Entity = dict[str, Any]


@dataclass
class Change:
    """The outcome of a mutation: the entity's new state (None deletes it) and a result."""

    entity: Entity | None
    result: Any = None
    write: bool = True


MutateFn = Callable[[Entity | None], Change]
Instances = list[dict[str, Any]]
AttributeFn = Callable[[Instances | None], Instances]


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

    async def tenant_exists(self, tenant: str) -> bool: ...

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

    async def query(self, tenant: str, query: Query) -> QueryResult: ...

    async def purge(self, tenant: str, query: Query) -> int: ...

    async def summary(self, tenant: str) -> list[tuple[str, str | None, str | None, int]]:
        """Discovery (5.7.5-5.7.10): (type, attribute, attribute type, number of entities).

        A type whose entities have no attribute appears once with attribute None.
        """
        ...

    async def type_counts(self, tenant: str) -> dict[str, int]: ...

    async def attribute_count(self, tenant: str, attr: str) -> int: ...
