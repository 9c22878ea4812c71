"""The embedded SQLite store (DESIGN.md: WAL, one writer thread with group commit).

Short reads run inline on the event loop on a reader connection; every write goes to a single
writer thread that folds the writes queued at that moment into one transaction, each in its own
savepoint, and answers them only once that transaction is committed.
"""

from __future__ import annotations

import asyncio
import fcntl
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from citytwin.model.history import derive, shape
from citytwin.model.times import now_iso
from citytwin.store import sqlite_history as history
from citytwin.store.base import (
    MISSING,
    AttributeFn,
    Entity,
    Missing,
    MutateFn,
    Query,
    QueryResult,
)
from citytwin.store.plan import Plan, has_geo
from citytwin.store.sql import attr_path
from citytwin.store.sqlite_changes import LogMixin, record
from citytwin.store.sqlite_devices import DevicesMixin
from citytwin.store.sqlite_index import migrate, reindex, reindex_attribute
from citytwin.store.sqlite_query import entity_matches, matching_ids, register, run_query
from citytwin.store.sqlite_timeline import TimelineMixin

GROUP_MAX = 1000
Job = Callable[[sqlite3.Connection], Any]


def connect(
    path: str, synchronous: str = "NORMAL", factory: type[sqlite3.Connection] = sqlite3.Connection
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=30, factory=factory
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    register(conn)
    return conn


class _Writer(threading.Thread):
    """The one thread that writes: group commit of whatever is queued.

    With several worker processes on one file, each has a writer; they take turns through an
    flock on a side file, which wakes the next writer at once, where SQLite's own busy handler
    would sleep and poll.
    """

    def __init__(self, conn: history.WriterConnection, lock_path: str) -> None:
        super().__init__(name="citytwin-sqlite-writer", daemon=True)
        self.conn = conn
        self.after_commit: list[Callable[[], None]] = []
        self.lock = open(lock_path, "a+b")  # held for the writer's lifetime
        self.jobs: queue.SimpleQueue[tuple[Job, asyncio.Future[Any]] | None] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            group = [item]
            while len(group) < GROUP_MAX:
                try:
                    nxt = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.jobs.put(None)
                    break
                group.append(nxt)
            self._commit(group)

    def _commit(self, group: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        results: list[tuple[bool, Any]] = []
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            results = [self._savepoint(job) for job, _ in group]
            self.conn.execute("COMMIT")
            self.conn.series.committed()
        except Exception as exc:  # the commit itself failed: nothing of the group was written
            self.conn.series.rolled_back()
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            results = [(False, exc)] * len(group)
        finally:
            fcntl.flock(self.lock, fcntl.LOCK_UN)
        for (_, future), (ok, value) in zip(group, results, strict=True):
            future.get_loop().call_soon_threadsafe(_settle, future, ok, value)
        for callback in self.after_commit:
            callback()

    def _savepoint(self, job: Job) -> tuple[bool, Any]:
        self.conn.execute("SAVEPOINT job")
        try:
            value = job(self.conn)
        except Exception as exc:
            self.conn.series.rolled_back()
            self.conn.execute("ROLLBACK TO job")
            self.conn.execute("RELEASE job")
            return False, exc
        self.conn.execute("RELEASE job")
        return True, value


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SqliteStore(LogMixin, TimelineMixin, DevicesMixin):
    """Entities of every tenant in one SQLite file."""

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.synchronous = synchronous
        self._reader: sqlite3.Connection | None = None
        self._writer: _Writer | None = None
        self._leases: dict[str, Any] = {}

    async def open(self) -> None:
        conn = connect(self.path, self.synchronous, history.WriterConnection)
        migrate(conn)
        assert isinstance(conn, history.WriterConnection)
        self._writer = _Writer(conn, self.path + ".lock")
        self._writer.start()
        self._reader = connect(self.path, self.synchronous)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer.conn.close()
            self._writer.lock.close()
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        for handle in self._leases.values():
            handle.close()
        self._leases.clear()

    watches_every_process = False  # the writer thread sees only this process's commits

    async def try_lease(self, name: str) -> bool:
        """Hold a named lease among the processes on this file (one notifier for N workers).

        An flock: the holder keeps it until it exits, however it exits.
        """
        if name in self._leases:
            return True
        handle = open(f"{self.path}.{name}.lock", "a+b")  # noqa: SIM115 - kept while held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._leases[name] = handle
        return True

    async def holds(self, name: str) -> bool:
        """An flock is held until the store closes: never lost."""
        return name in self._leases

    def watch(self, callback: Callable[[], None]) -> None:
        """Call back (from the writer thread, so it must be thread-safe) after each commit."""
        assert self._writer is not None, "store is not open"
        self._writer.after_commit.append(callback)

    @property
    def reader(self) -> sqlite3.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    async def _write(self, job: Job) -> Any:
        assert self._writer is not None, "store is not open"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._writer.jobs.put((job, future))
        return await future

    async def tenant_exists(self, tenant: str, fresh: bool = False) -> bool:
        if tenant == "":  # (the reader sees every commit: always fresh)
            return True
        row = self.reader.execute("SELECT 1 FROM tenants WHERE name = ?", (tenant,)).fetchone()
        return row is not None

    async def get(self, tenant: str, entity_id: str) -> Entity | None:
        row = self.reader.execute(
            "SELECT doc FROM entities WHERE tenant = ? AND id = ?", (tenant, entity_id)
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    async def mutate(self, tenant: str, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        return await self._write(lambda conn: _Batch(conn, tenant).run(ops))

    async def mutate_attribute(
        self, tenant: str, entity_id: str, name: str, fn: AttributeFn, modified_at: str
    ) -> Missing | None:
        path = '$.attrs."' + name.replace('"', '\\"') + '"'

        def job(conn: sqlite3.Connection) -> Missing | None:
            row = conn.execute(
                "SELECT json_extract(doc, ?) FROM entities WHERE tenant = ? AND id = ?",
                (path, tenant, entity_id),
            ).fetchone()
            if row is None:
                return MISSING
            old = orjson.loads(row[0]) if row[0] is not None else None
            was = shape({"attrs": {name: old}}) if old else None
            instances = fn(old)
            if has_geo(old) or has_geo(instances):
                reindex_attribute(conn, tenant, entity_id, name, instances)
            if instances:
                doc = "json_set(doc, ?, json(?), '$.modifiedAt', ?)"
                args: tuple[Any, ...] = (path, orjson.dumps(instances).decode(), modified_at)
            else:
                doc = "json_set(json_remove(doc, ?), '$.modifiedAt', ?)"
                args = (path, modified_at)
            (after,) = conn.execute(
                f"UPDATE entities SET doc = {doc}, modified_at = ? WHERE tenant = ? AND id = ?"
                " RETURNING doc",
                (*args, modified_at, tenant, entity_id),
            ).fetchone()
            before = _partial_before(entity_id, name, row[0])
            touched = orjson.dumps([name]).decode()
            record(conn, [(tenant, entity_id, touched, before, after, now_iso())])
            state = {"attrs": {name: instances} if instances else {}, "modifiedAt": modified_at}
            records = derive(tenant, entity_id, was, state, modified_at)
            history.append(conn, records)
            return None

        return await self._write(job)

    async def query(self, tenant: str, query: Query, fresh: bool = False) -> QueryResult:
        return run_query(self.reader, tenant, query)

    def entity_matches(self, tenant: str, entity: Entity, query: Query) -> bool:
        return entity_matches(self.reader, tenant, entity, query)

    async def summary(self, tenant: str) -> list[tuple[str, str | None, str | None, int]]:
        return self.reader.execute(
            "SELECT t.type, a.key, json_extract(i.value, '$.type'), count(DISTINCT e.id)"
            " FROM entities e JOIN entity_types t ON t.tenant = e.tenant AND t.id = e.id"
            " LEFT JOIN json_each(e.doc, '$.attrs') a LEFT JOIN json_each(a.value) i"
            " WHERE e.tenant = ? GROUP BY 1, 2, 3",
            (tenant,),
        ).fetchall()

    async def type_counts(self, tenant: str) -> dict[str, int]:
        rows = self.reader.execute(
            "SELECT type, count(*) FROM entity_types WHERE tenant = ? GROUP BY type", (tenant,)
        )
        return dict(rows.fetchall())

    async def attribute_count(self, tenant: str, attr: str) -> int:
        row = self.reader.execute(
            "SELECT count(*) FROM entities e"
            " WHERE e.tenant = ? AND json_type(e.doc, ?) IS NOT NULL",
            (tenant, attr_path(attr)),
        ).fetchone()
        return int(row[0])

    async def purge(self, tenant: str, query: Query) -> int:
        def job(conn: sqlite3.Connection) -> int:
            ids = matching_ids(conn, tenant, query)
            docs = conn.execute(
                "SELECT id, doc FROM entities"
                " WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))",
                (tenant, orjson.dumps(ids)),
            ).fetchall()
            conn.executemany(
                "DELETE FROM entities WHERE tenant = ? AND id = ?", [(tenant, i) for i in ids]
            )
            reindex(conn, tenant, dict.fromkeys(ids))
            history.forget(conn, tenant, ids)
            at = now_iso()
            record(conn, [(tenant, i, None, doc, None, at) for i, doc in docs])
            return len(ids)

        return await self._write(job)


def _partial_before(entity_id: str, name: str, old: str | None) -> str:
    """The change log's before of a single-attribute write: that attribute as it was (its
    stored text, since the write function may have changed the parsed copy in place)."""
    attrs = f"{orjson.dumps(name).decode()}: {old}" if old is not None else ""
    return f'{{"id": {orjson.dumps(entity_id).decode()}, "attrs": {{{attrs}}}}}'


class _Batch:
    """Mutations of one request inside the writer's transaction: the current documents are
    read with one query, the plan works out the rest, and its results are written with one
    statement per kind."""

    def __init__(self, conn: sqlite3.Connection, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant

    def run(self, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        plan = Plan(self.tenant, self._load(list(dict.fromkeys(i for i, _ in ops))))
        results = plan.apply(ops)
        self._flush(plan)
        return results

    def _load(self, ids: list[str]) -> dict[str, bytes | None]:
        docs: dict[str, bytes | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT id, doc FROM entities WHERE tenant = ? AND id IN ({marks})",
                (self.tenant, *part),
            ).fetchall()
            docs.update((i, doc.encode()) for i, doc in rows)
        return docs

    def _flush(self, plan: Plan) -> None:
        inserts, updates, deletes = [], [], []
        for entity_id, entity in plan.final.items():
            key = (self.tenant, entity_id)
            if entity is None:
                if plan.existed(entity_id):
                    deletes.append(key)
                continue
            row = (
                orjson.dumps(entity["type"]).decode(),
                plan.doc(entity_id),
                entity["createdAt"],
                entity["modifiedAt"],
                *key,
            )
            (updates if plan.existed(entity_id) else inserts).append(row)
        if inserts and self.tenant:
            self.conn.execute(
                "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)",
                (self.tenant, now_iso()),
            )
        self.conn.executemany("DELETE FROM entities WHERE tenant = ? AND id = ?", deletes)
        self.conn.executemany(
            "UPDATE entities SET types = ?, doc = ?, created_at = ?, modified_at = ?"
            " WHERE tenant = ? AND id = ?",
            updates,
        )
        self.conn.executemany(
            "INSERT INTO entities (types, doc, created_at, modified_at, tenant, id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            inserts,
        )
        new = frozenset(i for i in plan.final if not plan.existed(i))
        reindex(self.conn, self.tenant, plan.reindexed(), new)
        record(self.conn, list(plan.changes(now_iso())))
        history.forget(self.conn, self.tenant, plan.deleted)
        history.append(self.conn, plan.records())
