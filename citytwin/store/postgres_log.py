"""The PostgreSQL store's change log (the notifier's outbox), cursors and subscriptions.

A change's number is its transaction's id (xid8) shifted left by SHIFT bits, plus the change's
place in the transaction, written by the transaction itself: writers take no lock to number
their changes, so their commits (and fsyncs) overlap. Numbers are then not committed in
order, so the log is read only below the horizon: the oldest transaction still running, as the
reading statement's own snapshot gives it (`pg_snapshot_xmin`). Every transaction below it has
ended and none can start below it, so what is read there is final, and a reader that has seen
number n never meets a smaller one later.

A base is added to every number (`log_base`, read as a process opens the store): a database
restored into another cluster gets transaction ids below its change log's, and new numbers
must still come above it.

Two writes of one entity are numbered in their order: a write takes its entities' locks
before its first row write assigns its transaction id (store/postgres.py), so the second
write's id is taken after the first has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson

from citytwin.model.times import now_iso
from citytwin.store.base import ChangeRecord
from citytwin.store.postgres_devices import bump
from citytwin.store.postgres_schema import affected
from citytwin.store.sqlite_changes import PRUNE_CHUNK, SUBSCRIPTIONS

log = logging.getLogger("citytwin.store")
SHIFT = 20
MAX_CHANGES = 1 << SHIFT  # changes one transaction can number
LOGGED = (  # a write's change rows (postgres_batch), numbered by its id, the base + their place
    "INSERT INTO changes (tenant, id, attrs, before, after, at, seq) SELECT t, i, a, b, f, w,"
    f" (pg_current_xact_id()::text::bigint << {SHIFT}) + p FROM unnest({{}}::text[],"
    " {}::text[], {}::text[], {}::text[], {}::text[], {}::text[], {}::bigint[])"
    " AS u(t, i, a, b, f, w, p)"
)
LOWEST = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {SHIFT})"  # + the base
NEXT = f"(pg_snapshot_xmax(pg_current_snapshot())::text::bigint << {SHIFT})"  # ids not yet given


class LogMixin:
    pool: asyncpg.Pool
    _base = 0  # added to every number (see `log_base`)
    _held_back: Callable[[int | None], None]  # look again soon: changes wait behind the horizon
    _caught_up: Callable[[], None]

    @property
    def _horizon(self) -> str:
        """Below it every number is final (see the module's docstring)."""
        return f"({LOWEST} + {int(self._base)})"

    async def changes_since(
        self, seq: int, limit: int = 1000, before: bool = True
    ) -> list[ChangeRecord]:
        was = "before" if before else "CASE WHEN after IS NULL THEN before END"
        rows = await self.pool.fetch(
            f"SELECT seq, tenant, id, attrs, {was}, after, at,"
            f" seq < (SELECT {self._horizon}) AS final"  # (a subquery: the horizon once)
            " FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            seq,
            limit,
        )
        final = [row[:7] for row in rows if row["final"]]  # a prefix: rows are in seq order
        if len(final) < len(rows):
            self._held_back(rows[len(final)]["seq"])
        elif len(rows) < limit:  # (a full page says nothing of what lies after it)
            self._caught_up()
        return _records(final)

    async def last_change(self) -> int:
        """The newest final change's number (see the module's docstring)."""
        final, held = await self.pool.fetchrow(
            f"SELECT coalesce((SELECT max(seq) FROM changes WHERE seq < {self._horizon}), 0),"
            f" coalesce((SELECT max(seq) FROM changes), 0) >= {self._horizon}"
        )
        if held:
            self._held_back(None)
        else:
            self._caught_up()
        return int(final)

    async def cursor(self, name: str) -> int | None:
        seq = await self.pool.fetchval("SELECT seq FROM cursors WHERE name = $1", name)
        return int(seq) if seq is not None else None

    async def set_cursor(self, name: str, seq: int) -> None:
        await self.pool.execute(
            "INSERT INTO cursors (name, seq) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            name,
            seq,
        )

    async def put_subscription(
        self, tenant: str, sub_id: str, doc: dict[str, Any], create: bool
    ) -> bool:
        text = orjson.dumps(doc).decode()
        async with self.pool.acquire() as conn, conn.transaction():
            if create:
                done = await conn.execute(
                    "INSERT INTO subscriptions (tenant, id, doc) VALUES ($1, $2, as_jsonb($3))"
                    " ON CONFLICT DO NOTHING",
                    tenant,
                    sub_id,
                    text,
                )
            else:
                done = await conn.execute(
                    "UPDATE subscriptions SET doc = as_jsonb($3) WHERE tenant = $1 AND id = $2",
                    tenant,
                    sub_id,
                    text,
                )
            made = affected(done) == 1
            if made:
                await bump(conn, SUBSCRIPTIONS)
            if made and create and tenant:
                await conn.execute(
                    "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    tenant,
                    now_iso(),
                )
        return made

    async def save_status(self, items: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Merge delivery status fields into the subscriptions' `notification` member."""
        rows = [(tenant, sub_id, orjson.dumps(status).decode()) for tenant, sub_id, status in items]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "UPDATE subscriptions SET doc = jsonb_set(doc, '{notification}',"
                " coalesce(doc -> 'notification', '{}') || as_jsonb($3))"
                " WHERE tenant = $1 AND id = $2",
                rows,
            )

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        doc = await self.pool.fetchval(
            "SELECT doc FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, sub_id
        )
        return orjson.loads(doc) if doc is not None else None

    async def subscriptions(self, tenant: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT tenant, doc FROM subscriptions WHERE $1::text IS NULL OR tenant = $1"
            " ORDER BY tenant, id",
            tenant,
        )
        return [(t, orjson.loads(doc)) for t, doc in rows]

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.execute(
                "DELETE FROM subscriptions WHERE tenant = $1 AND id = $2", tenant, sub_id
            )
            if affected(done) == 1:
                await bump(conn, SUBSCRIPTIONS)
        return affected(done) == 1

    async def subscriptions_version(self) -> int:
        """A number that changes with every subscription write (other workers' too)."""
        seq = await self.pool.fetchval("SELECT seq FROM cursors WHERE name = $1", SUBSCRIPTIONS)
        return int(seq) if seq is not None else 0

    async def changes_touching(self, seq: int, upto: int, needles: list[str]) -> list[ChangeRecord]:
        """Changes in (seq, upto] whose touched attributes (or whole new state) hold a needle."""
        rows = await self.pool.fetch(
            "SELECT seq, tenant, id, attrs, before, after, at FROM changes c"
            " WHERE seq > $1 AND seq <= $2 AND after IS NOT NULL AND EXISTS"
            " (SELECT 1 FROM unnest($3::text[]) n WHERE strpos(coalesce(c.attrs, c.after), n) > 0)"
            " ORDER BY seq",
            seq,
            upto,
            needles,
        )
        return _records(rows)

    async def prune_changes(self, below: int, keep: int = 0) -> int:
        """Forget changes up to `below` but the newest `keep`, a chunk a transaction."""
        kept = await self.pool.fetchval(
            "SELECT seq FROM changes ORDER BY seq DESC LIMIT 1 OFFSET $1", keep
        )
        if kept is None:
            return 0
        below = min(below, kept)
        total = 0
        while True:
            done = await self.pool.execute(
                "DELETE FROM changes WHERE seq IN"
                " (SELECT seq FROM changes WHERE seq <= $1 ORDER BY seq LIMIT $2)",
                below,
                PRUNE_CHUNK,
            )
            count = affected(done)
            total += count
            if count < PRUNE_CHUNK:
                return total


def _records(rows: list[Any]) -> list[ChangeRecord]:
    return [
        ChangeRecord(s, t, i, _json(a), _json(b), _json(f), at) for s, t, i, a, b, f, at in rows
    ]


def _json(text: str | None) -> Any:
    return orjson.loads(text) if text is not None else None


async def log_base(conn: asyncpg.Connection, lock: int) -> int:
    """The number added to every change number, raised when the database's transaction ids are
    below what its log and cursors hold (a database restored from a dump into a new cluster
    starts its ids low again): new numbers then start above them. Checked by every process as
    it opens, under the migrations' lock, before it writes. The check is against the next id to
    be given (xmax), which every number written in this cluster is below: xmin would also see
    the numbers of transactions committed while an older one still runs."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
        base = int(await conn.fetchval("SELECT base FROM log_base"))
        high = await conn.fetchval(
            "SELECT greatest((SELECT max(seq) FROM changes), (SELECT max(seq) FROM cursors))"
        )
        lowest = int(await conn.fetchval(f"SELECT {NEXT}"))
        if high is not None and lowest + base <= high:
            base = high + 1 - lowest
            await conn.execute("UPDATE log_base SET base = $1", base)
            log.warning(
                "change numbers now start above %d: the database's transaction ids are below"
                " its change log's (restored into another cluster?)",
                high,
            )
    return base
