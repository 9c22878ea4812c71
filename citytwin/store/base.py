"""The Store protocol: what the broker needs of a backend (DESIGN.md: one write path).

Writes are expressed as pure functions of an entity's current state, so each backend can run the
read, the function and the write in one transaction, and so that a failing function leaves the
entity exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

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
class Purge:
    """Which entities DELETE /entities removes (5.6.21): all conditions must hold."""

    types: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    id_pattern: str | None = None

    @property
    def everything(self) -> bool:
        return self.types is None and self.ids is None and self.id_pattern is None

    def matches(self, entity_id: str, types: list[str]) -> bool:
        if self.ids is not None and entity_id not in self.ids:
            return False
        if self.types is not None and self.types.isdisjoint(types):
            return False
        return self.id_pattern is None or re.search(self.id_pattern, entity_id) is not None


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

    async def purge(self, tenant: str, what: Purge) -> int: ...

    async def scan(self, tenant: str) -> list[Entity]: ...
