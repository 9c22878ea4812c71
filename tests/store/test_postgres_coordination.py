"""Coordination between processes sharing one store (issue 8): leases, commits heard by every
process, and a link to the database that breaks. Two stores on one file or one database stand
for two processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from citytwin.store.postgres import PostgresStore
from citytwin.store.postgres_notify import lease_key
from citytwin.store.sqlite import SqliteStore
from tests.postgres import fresh_database
from tests.store.test_contract import create, sensor

GUARD = 20.0  # seconds: a guard against hanging, never a measure
Opened = Callable[[], Awaitable[Any]]


@pytest.fixture(params=["sqlite", "postgres"])
async def opener(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
) -> AsyncIterator[Opened]:
    """Opens stores on one file or one database, each standing for a process; all closed at
    the end (closing one twice is harmless)."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            where = str(tmp_path / "twin.db")
            kind: Any = SqliteStore
        else:
            where = await stack.enter_async_context(fresh_database(postgres_url))
            kind = PostgresStore

        async def open_one() -> Any:
            made = kind(where)
            await made.open()
            stack.push_async_callback(made.close)
            return made

        yield open_one


@pytest.fixture
async def store(opener: Opened) -> Any:
    return await opener()


async def test_a_lease_is_exclusive_until_its_holder_closes(opener: Opened) -> None:
    first, second = await opener(), await opener()
    assert await first.try_lease("notifier") is True
    assert await second.try_lease("notifier") is False
    assert await first.try_lease("notifier") is True  # holding it already
    assert await second.try_lease("retention") is True  # another name, another lease
    assert await first.holds("notifier") and not await second.holds("notifier")
    await first.close()
    assert await second.try_lease("notifier") is True  # the holder is gone: taken over
    assert await second.holds("notifier")


async def test_delivery_status_merges_into_stored_subscriptions(store: Any) -> None:
    hook = {"uri": "http://example.org/hook"}
    doc = {"id": "urn:ngsi-ld:Subscription:1", "type": "Subscription", "q": "pm25>5",
           "notification": {"endpoint": hook, "timesSent": 1}}  # fmt: skip
    other = {**doc, "id": "urn:ngsi-ld:Subscription:2"}
    await store.put_subscription("city", doc["id"], doc, create=True)
    await store.put_subscription("city", other["id"], other, create=True)
    first = {"timesSent": 3, "lastNotification": "2026-11-30T10:00:00Z"}
    await store.save_status(
        [("city", doc["id"], first), ("city", "urn:ngsi-ld:Subscription:none", first)]
    )
    await store.save_status([("city", doc["id"], {"timesSent": 4, "lastFailure": "x"})])
    saved = await store.get_subscription("city", doc["id"])
    assert saved["notification"] == {
        "endpoint": hook,
        "timesSent": 4,
        "lastNotification": "2026-11-30T10:00:00Z",
        "lastFailure": "x",
    }
    assert saved["q"] == "pm25>5"
    assert await store.get_subscription("city", other["id"]) == other  # untouched
    assert await store.get_subscription("city", "urn:ngsi-ld:Subscription:none") is None


# -- PostgreSQL: commits heard by every process, and a broken link ------------------------------


@pytest.fixture
async def two(database: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:  # noqa: F811
    first, second = PostgresStore(database), PostgresStore(database)
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def event_on_commit(store: PostgresStore) -> asyncio.Event:
    event = asyncio.Event()
    store.watch(event.set)
    return event


async def write(store: PostgresStore, n: int) -> None:
    entity = sensor(n, 5)
    assert await store.mutate("", [(entity["id"], create(entity))]) == ["created"]


async def kill_link(store: PostgresStore, url: str) -> None:
    """End the backend of the store's own connection (leases and LISTEN) from outside."""
    assert store._link is not None
    admin = await asyncpg.connect(url)
    try:  # waits until the backend is gone (its advisory locks with it)
        assert await admin.fetchval(
            "SELECT pg_terminate_backend($1, 10000)", store._link.get_server_pid()
        )
    finally:
        await admin.close()


async def test_a_commit_of_one_process_wakes_the_watchers_of_another(
    two: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two
    heard = event_on_commit(second)
    await write(first, 1)
    await asyncio.wait_for(heard.wait(), GUARD)
    heard.clear()
    await write(first, 2)
    await asyncio.wait_for(heard.wait(), GUARD)


async def test_after_its_link_breaks_a_store_connects_again_and_keeps_its_lease(
    two: tuple[PostgresStore, PostgresStore],
    database: str,  # noqa: F811
) -> None:
    first, second = two
    assert await first.try_lease("notifier")
    back = event_on_commit(first)  # the watchers are called once the link is back
    await kill_link(first, database)
    await asyncio.wait_for(back.wait(), GUARD)
    assert await first.holds("notifier")
    assert not await second.try_lease("notifier")  # taken back: still exclusive
    back.clear()
    await write(second, 1)  # heard on the new link
    await asyncio.wait_for(back.wait(), GUARD)
    heard = event_on_commit(second)
    await write(first, 2)
    await asyncio.wait_for(heard.wait(), GUARD)


async def test_a_lease_taken_by_another_process_while_the_link_was_down_is_lost(
    two: tuple[PostgresStore, PostgresStore],
    database: str,  # noqa: F811
) -> None:
    first, _ = two
    assert await first.try_lease("notifier")
    rival = await asyncpg.connect(database)  # another process, queued for the same lock
    try:
        taking = asyncio.create_task(
            rival.execute("SELECT pg_advisory_lock($1::int4, $2::int4)", *lease_key("notifier"))
        )
        await _until_queued(database)
        back = event_on_commit(first)
        await kill_link(first, database)
        await asyncio.wait_for(taking, GUARD)  # the rival has it the moment the link died
        await asyncio.wait_for(back.wait(), GUARD)
        assert not await first.holds("notifier")
        assert not await first.try_lease("notifier")
    finally:
        await rival.close()
    assert await first.try_lease("notifier")  # free again: taken anew


async def _until_queued(url: str) -> None:
    """Until a connection waits for an advisory lock."""
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(GUARD):
            sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            while not await conn.fetchval(sql):
                await asyncio.sleep(0.01)
    finally:
        await conn.close()
