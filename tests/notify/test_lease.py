"""With several workers on one SQLite file, exactly one holds the notifier lease."""

from __future__ import annotations

from pathlib import Path

from citytwin.store.sqlite import SqliteStore


async def test_one_holder_and_a_successor(tmp_path: Path) -> None:
    first, second = SqliteStore(str(tmp_path / "twin.db")), SqliteStore(str(tmp_path / "twin.db"))
    await first.open()
    await second.open()
    try:
        assert first.try_lease("notifier") is True
        assert second.try_lease("notifier") is False
        assert first.try_lease("notifier") is True  # holding it already
        await first.close()
        assert second.try_lease("notifier") is True  # the holder is gone: taken over
    finally:
        await second.close()
