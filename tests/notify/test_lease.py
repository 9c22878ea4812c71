"""With several workers on one SQLite file, exactly one holds the notifier lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from citytwin.contexts import ContextResolver
from citytwin.notify import notifier as notifier_module
from citytwin.notify.notifier import CURSOR, Notifier
from citytwin.store.sqlite import SqliteStore


async def test_one_holder_and_a_successor(tmp_path: Path) -> None:
    first, second = SqliteStore(str(tmp_path / "twin.db")), SqliteStore(str(tmp_path / "twin.db"))
    await first.open()
    await second.open()
    try:
        assert await first.try_lease("notifier") is True
        assert await second.try_lease("notifier") is False
        assert await first.try_lease("notifier") is True  # holding it already
        await first.close()
        assert await second.try_lease("notifier") is True  # the holder is gone: taken over
    finally:
        await second.close()


async def test_a_notifier_that_loses_its_lease_stops_until_it_holds_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease is lost on PostgreSQL when the store's connection broke and another process
    took it meanwhile; here the SQLite store is told to report it lost."""
    monkeypatch.setattr(notifier_module, "LEASE_RETRY", 0.01)
    store = SqliteStore(str(tmp_path / "twin.db"))
    await store.open()
    notifier = Notifier(store, ContextResolver())
    lost: set[str] = set()
    held, take = store.holds, store.try_lease

    async def holds(name: str) -> bool:
        return name not in lost and await held(name)

    async def try_lease(name: str) -> bool:
        return name not in lost and await take(name)

    monkeypatch.setattr(store, "holds", holds)
    monkeypatch.setattr(store, "try_lease", try_lease)
    try:
        await notifier.start()
        assert notifier.tasks  # the holder works
        lost.add(CURSOR)
        await _until(lambda: not notifier.tasks)
        lost.clear()
        await _until(lambda: bool(notifier.tasks))
    finally:
        await notifier.stop()
        await store.close()


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):  # a guard, not a measure
        while not condition():
            await asyncio.sleep(0.01)
