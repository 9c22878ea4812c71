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
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from citytwin.model.history import Record, derive, shape
from citytwin.store import sqlite_history as history
from citytwin.store.base import (
    MISSING,
    AttributeFn,
    Change,
    Entity,
    Missing,
    MutateFn,
    Query,
    QueryResult,
)
from citytwin.store.sql import attr_path
from citytwin.store.sqlite_changes import LogMixin, Row, record
from citytwin.store.sqlite_devices import DevicesMixin
from citytwin.store.sqlite_index import index_key, migrate, reindex, reindex_attribute
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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def try_lease(self, name: str) -> bool:
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

    async def tenant_exists(self, tenant: str) -> bool:
        if tenant == "":
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
            if _has_geo(old) or _has_geo(instances):
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
            record(conn, [(tenant, entity_id, touched, before, after, _now())])
            state = {"attrs": {name: instances} if instances else {}, "modifiedAt": modified_at}
            records = derive(tenant, entity_id, was, state, modified_at)
            history.append(conn, records)
            return None

        return await self._write(job)

    async def query(self, tenant: str, query: Query) -> QueryResult:
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
            at = _now()
            record(conn, [(tenant, i, None, doc, None, at) for i, doc in docs])
            return len(ids)

        return await self._write(job)


def _partial_before(entity_id: str, name: str, old: str | None) -> str:
    """The change log's before of a single-attribute write: that attribute as it was (its
    stored text, since the write function may have changed the parsed copy in place)."""
    attrs = f"{orjson.dumps(name).decode()}: {old}" if old is not None else ""
    return f'{{"id": {orjson.dumps(entity_id).decode()}, "attrs": {{{attrs}}}}}'


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def _may_reindex(change: Change) -> bool:
    """Can the write have changed the entity's index rows (types, geometries)? Not if it
    touched only attributes that were and are no GeoProperty (it then says it kept the types)."""
    if change.touched is None or change.entity is None:
        return True
    names, was = change.touched
    attrs = change.entity["attrs"]
    return any(_has_geo(was.get(n)) or _has_geo(attrs.get(n)) for n in names)


def _parsed(raw: bytes | None) -> Entity | None:
    return orjson.loads(raw) if raw is not None else None


def _has_geo(instances: list[Entity] | None) -> bool:
    return any(i.get("type") == "GeoProperty" for i in instances or ())


class _Batch:
    """Mutations of one request, applied in order inside the writer's transaction.

    Current documents are read with one query, each function gets its own fresh copy (a failing
    function changes nothing), and the final states are written with one statement per kind.
    """

    def __init__(self, conn: sqlite3.Connection, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant
        self.history: dict[str, dict[Any, Record]] = {}
        self.deleted: set[str] = set()
        self.docs: dict[str, bytes | None] = {}
        self.original: dict[str, bytes | None] = {}
        self.existed: dict[str, bool] = {}
        self.final: dict[str, Entity | None] = {}
        self.touched: dict[str, tuple[list[str], dict[str, Any]] | None] = {}
        self.suspect: set[str] = set()  # entities whose index rows a write may have changed

    def run(self, ops: Sequence[tuple[str, MutateFn]]) -> list[Any]:
        self._load(list(dict.fromkeys(i for i, _ in ops)))
        results = [self._apply(entity_id, fn) for entity_id, fn in ops]
        self._flush()
        return results

    def _load(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT id, doc FROM entities WHERE tenant = ? AND id IN ({marks})",
                (self.tenant, *part),
            ).fetchall()
            self.docs.update((i, doc.encode()) for i, doc in rows)
        for entity_id in ids:
            self.existed[entity_id] = entity_id in self.docs
            self.docs.setdefault(entity_id, None)
        self.original = dict(self.docs)

    def _apply(self, entity_id: str, fn: MutateFn) -> Any:
        raw = self.docs[entity_id]
        current = orjson.loads(raw) if raw is not None else None
        try:
            change = fn(current)
            entity = change.entity
            doc = orjson.dumps(entity) if change.write and entity is not None else None
        except Exception as exc:  # (a value JSON cannot hold fails this op alone)
            return exc
        if change.write:
            self.docs[entity_id] = doc
            self.final[entity_id] = entity
            if _may_reindex(change):
                self.suspect.add(entity_id)
            self._remember(entity_id, raw, change)
            self._touch(entity_id, change.touched)
        return change.result

    def _remember(self, entity_id: str, raw: bytes | None, change: Change) -> None:
        """What the change adds to the entity's history (`raw`: the entity before it, read
        again only if the change leaves the history to be worked out). Several changes of one
        entity in one batch share their instant, so a later one replaces what an earlier one
        wrote of the same attribute instance; a deletion drops everything before it (and the
        history)."""
        entity = change.entity
        if entity is None:
            self.history[entity_id] = {}
            self.deleted.add(entity_id)
            return
        at = entity["modifiedAt"]
        kept = self.history.setdefault(entity_id, {})
        if change.history is None:
            if change.touched is not None:  # only these attributes changed
                names, was = change.touched
                before = shape({"attrs": was})
                attrs = entity["attrs"]
                entity = {"attrs": {n: attrs[n] for n in names if n in attrs}, "modifiedAt": at}
            else:
                before = shape(orjson.loads(raw)) if raw is not None else None
            for r in derive(self.tenant, entity_id, before, entity, at):
                kept[(r.attr, r.instance.get("datasetId"))] = r
            return
        for n, h in enumerate(change.history, start=len(kept)):
            kept[n] = Record(self.tenant, entity_id, h.attr, h.instance, at, h.deleted, h.replaces)

    def _touch(self, entity_id: str, touched: tuple[list[str], dict[str, Any]] | None) -> None:
        """Which attributes the entity's writes in this batch touched, and how they were first
        (None: the whole entity is logged)."""
        if entity_id not in self.touched:
            self.touched[entity_id] = touched and (list(touched[0]), dict(touched[1]))
            return
        known = self.touched[entity_id]
        if known is None or touched is None:
            self.touched[entity_id] = None
            return
        names, before = known
        for name in touched[0]:
            if name not in names:
                names.append(name)
                if name in touched[1]:
                    before[name] = touched[1][name]

    def _flush(self) -> None:
        inserts, updates, deletes = [], [], []
        for entity_id, entity in self.final.items():
            key = (self.tenant, entity_id)
            if entity is None:
                if self.existed[entity_id]:
                    deletes.append(key)
                continue
            row = (
                orjson.dumps(entity["type"]).decode(),
                self.docs[entity_id].decode(),  # type: ignore[union-attr]
                entity["createdAt"],
                entity["modifiedAt"],
                *key,
            )
            (updates if self.existed[entity_id] else inserts).append(row)
        if inserts and self.tenant:
            self.conn.execute(
                "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?, ?)",
                (self.tenant, _now()),
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
        new = frozenset(i for i in self.final if not self.existed[i])
        changed = {
            i: e
            for i, e in self.final.items()
            if (i in self.suspect or not self.existed[i])
            and index_key(e) != index_key(_parsed(self.original[i]))
        }
        reindex(self.conn, self.tenant, changed, new)
        record(self.conn, list(self._changes()))
        history.forget(self.conn, self.tenant, self.deleted)
        history.append(self.conn, (r for rs in self.history.values() for r in rs.values()))

    def _changes(self) -> Iterator[Row]:
        at = _now()
        for entity_id in self.final:
            before, after = self.original[entity_id], self.docs[entity_id]
            touched = self.touched.get(entity_id)
            if touched is not None and before is not None and after is not None:
                names, was = touched
                partial = orjson.dumps({"id": entity_id, "attrs": was}).decode()
                touched_names = orjson.dumps(names).decode()
                yield self.tenant, entity_id, touched_names, partial, _text(after), at
            elif before is not None or after is not None:
                yield self.tenant, entity_id, None, _text(before), _text(after), at
