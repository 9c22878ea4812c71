"""The PostgreSQL store under concurrent writers (found by a review, each failed before its fix):
change numbers are committed in order, batches naming the same new entities in other orders do
not deadlock, and two processes meeting a new month both write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction

from citytwin.store.base import Change, Query
from citytwin.store.postgres import PostgresStore
from tests.store.test_contract import LATER, create, sensor, set_pm25

AN_ID = "SELECT pg_current_xact_id()"  # gives the transaction its id


@contextlib.asynccontextmanager
async def other_transaction(database: str, statement: str) -> AsyncIterator[Transaction]:
    """Another connection's transaction, begun with `statement`; rolled back at the end unless
    the test ended it."""
    conn = await asyncpg.connect(database)
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(statement)
        yield tx
    finally:
        if conn.is_in_transaction():
            await tx.rollback()
        await conn.close()


async def test_a_reader_following_numbers_misses_no_change(database: str) -> None:  # noqa: F811
    """A write held up (here by a lock on its history) must not let a later write's change
    be read first: a reader moving its cursor past it would never see it."""
    store = PostgresStore(database)
    await store.open()
    try:
        a, b = sensor(1, 5), sensor(2, 5)
        await store.mutate("", [(a["id"], create(a)), (b["id"], create(b))])
        seen = await store.last_change()
        lock = "LOCK TABLE series IN EXCLUSIVE MODE"  # T1 waits at its history
        async with other_transaction(database, lock) as tx:
            slow = asyncio.create_task(store.mutate("", [(a["id"], set_pm25(8, LATER))]))
            await asyncio.sleep(0.5)
            no_history = lambda e: Change({**e, "modifiedAt": LATER}, "updated", history=[])  # noqa: E731
            await store.mutate("", [(b["id"], no_history)])  # T2 commits first
            got = await store.changes_since(seen)
            cursor = got[-1].seq if got else seen  # a notifier/stream moves to what it read
            await tx.rollback()
        await slow
        everything = await store.changes_since(seen)
        later = await store.changes_since(cursor)
        assert len(everything) == 2
        assert {c.seq for c in got} | {c.seq for c in later} == {c.seq for c in everything}
    finally:
        await store.close()


async def test_batches_creating_the_same_entities_in_other_orders(database: str) -> None:  # noqa: F811
    store = PostgresStore(database)
    await store.open()
    try:
        errors: list[Any] = []
        for round_ in range(10):
            entities = [sensor(round_ * 1000 + n, 1) for n in range(300)]
            ops = [(e["id"], create(e)) for e in entities]
            results = await asyncio.gather(
                store.mutate("", ops), store.mutate("", ops[::-1]), return_exceptions=True
            )
            errors += [r for r in results if isinstance(r, BaseException)]
        assert not errors
    finally:
        await store.close()


async def test_two_processes_meet_a_new_month(database: str, monkeypatch: Any) -> None:  # noqa: F811
    from datetime import UTC, datetime

    import citytwin.store.postgres as pg

    stores = [PostgresStore(database), PostgresStore(database)]
    for s in stores:
        await s.open()
    try:
        for n, s in enumerate(stores):
            e = sensor(n, 1)
            await s.mutate("", [(e["id"], create(e))])

        class Later(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return datetime(2030, 1, 15, tzinfo=UTC)

        monkeypatch.setattr(pg, "datetime", Later)
        errors: list[Any] = []
        for round_ in range(5):
            for s in stores:
                s._month = ""
            conn = await asyncpg.connect(database)
            await conn.execute("DROP TABLE IF EXISTS history_2030_01, history_2030_02")
            await conn.close()
            results = await asyncio.gather(
                *(
                    s.mutate("", [(f"urn:ngsi-ld:Sensor:{n}", set_pm25(round_, LATER))])
                    for n, s in enumerate(stores)
                ),
                return_exceptions=True,
            )
            errors += [r for r in results if isinstance(r, BaseException)]
        assert not errors
    finally:
        for s in stores:
            await s.close()


async def test_changes_behind_a_running_transaction_are_read_once_it_ends(
    database: str,  # noqa: F811
    monkeypatch: Any,
    caplog: Any,
) -> None:
    """A write commits while an older transaction, not the store's, still runs: its change is
    not read meanwhile (a change of the older one would be numbered below it), the log says
    that it waits, and readers waiting for a wake are woken once the transaction ends,
    although it sends no NOTIFY."""
    import citytwin.store.postgres_notify as notify

    monkeypatch.setattr(notify, "HELD_WARNING", 0.1)
    store = PostgresStore(database)
    await store.open()
    try:
        seen = await store.last_change()
        woken, got = asyncio.Event(), []
        store.watch(woken.set)
        entity = sensor(1, 5)

        async def reader() -> None:
            while not got:
                await woken.wait()
                woken.clear()
                got.extend(await store.changes_since(seen))

        async with other_transaction(database, AN_ID) as tx:  # an id below the write's
            await store.mutate("", [(entity["id"], create(entity))])
            reading = asyncio.create_task(reader())
            await asyncio.sleep(0.5)
            assert got == [] and await store.last_change() == seen
            assert "behind a transaction still running" in caplog.text
            await tx.commit()
            await asyncio.wait_for(reading, 5)
        assert [c.entity_id for c in got] == [entity["id"]]
        assert await store.last_change() == got[0].seq
    finally:
        await store.close()


async def test_types_are_stored_whatever_characters_they_hold(database: str) -> None:  # noqa: F811
    """Types holding quotes, backslashes, commas, braces and spaces come back as written."""
    store = PostgresStore(database)
    await store.open()
    try:
        odd = ['https://example.org/a,b{c}"d\\e f', "https://example.org/NULL", ""]
        entity = {**sensor(1, 5), "type": odd}
        await store.mutate("", [(entity["id"], create(entity))])
        await store.mutate("", [(entity["id"], set_pm25(8, LATER))])  # an update, too
        conn = await asyncpg.connect(database)
        try:
            assert await conn.fetchval("SELECT types FROM entities") == odd
        finally:
            await conn.close()
        assert (await store.get("", entity["id"]))["type"] == odd
    finally:
        await store.close()


async def test_writes_of_many_entities_stay_within_the_lock_table(database: str) -> None:  # noqa: F811
    """Entity locks are advisory locks, which fill PostgreSQL's shared lock table (64 a
    connection by default): eight concurrent writes of 2,000 entities, then a purge of all
    16,000 in one transaction, must neither run out of it nor block each other for good."""
    store = PostgresStore(database)
    await store.open()
    try:
        batches = [[sensor(b * 2000 + n, 1) for n in range(2000)] for b in range(8)]
        await asyncio.gather(
            *(store.mutate("", [(e["id"], create(e)) for e in batch]) for batch in batches)
        )
        assert (await store.query("", Query(count=True, limit=0))).count == 16_000
        assert await store.purge("", Query()) == 16_000
    finally:
        await store.close()


async def test_numbers_go_on_above_the_log_of_a_restored_database(database: str) -> None:  # noqa: F811
    """A dump restored into a new cluster has its change log and cursors numbered by the old
    cluster's transaction ids, above the new one's: the next store to open numbers on above
    them, so a notifier going on from its cursor misses nothing."""
    store = PostgresStore(database)
    await store.open()
    entity = sensor(1, 5)
    await store.mutate("", [(entity["id"], create(entity))])
    await store.close()
    conn = await asyncpg.connect(database)  # as if the ids had been far higher
    try:
        await conn.execute("UPDATE changes SET seq = seq + (1::bigint << 50)")
        cursor = await conn.fetchval("SELECT max(seq) FROM changes")
        await conn.execute("INSERT INTO cursors (name, seq) VALUES ('notifier', $1)", cursor)
    finally:
        await conn.close()
    store = PostgresStore(database)
    await store.open()
    try:
        assert await store.last_change() == cursor
        await store.mutate("", [(entity["id"], set_pm25(8, LATER))])
        later = await store.changes_since(cursor)
        assert [c.entity_id for c in later] == [entity["id"]] and later[0].seq > cursor
    finally:
        await store.close()


async def test_a_store_opening_while_writes_overlap_keeps_the_base(database: str) -> None:  # noqa: F811
    """A change committed while an older transaction still runs is above the oldest running id
    but below the next one to be given: a store opening then must not take it for a restored
    log and raise the base (processes would number with different bases)."""
    store = PostgresStore(database)
    await store.open()
    try:
        async with other_transaction(database, AN_ID):
            entity = sensor(1, 5)
            await store.mutate("", [(entity["id"], create(entity))])
            other = PostgresStore(database)
            await other.open()
            await other.close()
        assert other._base == store._base == 0
    finally:
        await store.close()


async def test_a_change_held_back_for_long_is_looked_at_every_second(database: str) -> None:  # noqa: F811
    """The looks back off, doubling up to once a second, however many there are."""
    store = PostgresStore(database)  # (not opened: the looks need no connection)
    delays = []
    for _ in range(2000):
        store._held_back(7)
        assert store._again is not None
        delays.append(store._again.when() - asyncio.get_running_loop().time())
        store._again.cancel()
        store._again = None
    assert delays[0] < 0.05 and 0.9 < delays[-1] <= 1.0
