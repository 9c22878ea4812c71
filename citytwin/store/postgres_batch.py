"""Several data-modifying statements sent as one (issue 8): a write's history, roll-ups and
change-log rows in one round trip instead of one each.

A part is a statement over `unnest` of parallel arrays, its parameters written `{}`; `run`
numbers them and sends the parts as the items of one WITH and its last statement. PostgreSQL
runs every data-modifying WITH item to completion, all on one snapshot, so the parts must not
read what another one writes, nor write one row twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Part:
    sql: str  # its parameters written "{}", in the order of `arrays`
    arrays: Sequence[Any]


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as the parallel arrays `unnest` takes."""
    return [[row[i] for row in rows] for i in range(width)]


async def run(conn: asyncpg.Connection, parts: Sequence[Part]) -> None:
    if not parts:
        return
    numbered, args = [], []
    for part in parts:
        first = len(args) + 1
        numbered.append(part.sql.format(*(f"${first + i}" for i in range(len(part.arrays)))))
        args += part.arrays
    *items, last = numbered
    head = ", ".join(f"w{n} AS ({sql})" for n, sql in enumerate(items))
    await conn.execute(f"WITH {head} {last}" if items else last, *args)
