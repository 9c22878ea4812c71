"""The change log: written with every entity write, pruned a chunk at a time."""

from __future__ import annotations

from pathlib import Path

from citytwin.store.sqlite import SqliteStore
from citytwin.store.sqlite_changes import PRUNE_CHUNK, record


async def test_prune_keeps_what_is_above_the_mark(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "twin.db"))
    await store.open()
    try:
        count = PRUNE_CHUNK * 2 + 500
        rows = [("", f"urn:x:{n}", None, None, "{}", "t") for n in range(count)]
        await store._write(lambda conn: record(conn, rows))
        keep_from = count - 300
        assert await store.prune_changes(keep_from) == keep_from
        left = await store.changes_since(0, count)
        assert [c.seq for c in left] == list(range(keep_from + 1, count + 1))
    finally:
        await store.close()
