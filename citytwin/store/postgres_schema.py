"""The PostgreSQL store's schema (issue 8): numbered migrations, applied in order, each once.

Layout rules, so that the same schema can be distributed by entity on Citus:
- every table of entity data leads its primary key with (tenant, id): the entity's state, its
  geometries, its change-log rows, its history series and their hourly roll-ups;
- documents are kept as written (`raw`, what reads return, attribute order and all) with a JSONB
  copy generated from them for queries; geometries are PostGIS geometries with a GiST index;
- history is partitioned by month of its write time (`created`, microseconds since the epoch),
  so old months are dropped whole; `ensure_partitions` makes the months a write needs, and a
  default partition catches anything else, so a write never fails for want of one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from citytwin.model.times import now_iso

MIGRATIONS: list[str] = [
    # 1: entities, their types and geometries, tenants
    r"""
    CREATE EXTENSION IF NOT EXISTS postgis;
    -- JSON text as JSONB, which cannot hold U+0000: an escaped one (after an even number of
    -- backslashes) becomes U+FFFD, as NULs in query literals do (store/postgres_sql.py).
    -- Entities keep their text as written (`raw`); history and subscriptions keep U+FFFD.
    CREATE FUNCTION as_jsonb(raw TEXT) RETURNS JSONB IMMUTABLE STRICT PARALLEL SAFE
    LANGUAGE sql AS $$
        SELECT (CASE WHEN strpos(raw, '\u0000') = 0 THEN raw
                ELSE regexp_replace(raw, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')
                END)::jsonb
    $$;
    CREATE TABLE tenants (name TEXT PRIMARY KEY, created_at TEXT NOT NULL);
    CREATE TABLE entities (
        tenant TEXT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        types TEXT[] NOT NULL,
        raw TEXT NOT NULL,
        doc JSONB GENERATED ALWAYS AS (as_jsonb(raw)) STORED,
        created_at TEXT NOT NULL,
        modified_at TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX entities_types ON entities USING gin (types);
    CREATE TABLE entity_geo (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        attr TEXT NOT NULL,
        dataset TEXT NOT NULL DEFAULT '',
        geom geometry(Geometry, 4326) NOT NULL,
        PRIMARY KEY (tenant, id, attr, dataset)
    );
    CREATE INDEX entity_geo_gist ON entity_geo USING gist (geom);
    """,
    # 2: the change log (the notifier's outbox), subscriptions, cursors, provisioning
    """
    CREATE TABLE changes (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        attrs TEXT,
        before TEXT,
        after TEXT,
        at TEXT NOT NULL,
        PRIMARY KEY (tenant, id, seq)
    );
    CREATE INDEX changes_seq ON changes (seq);
    CREATE TABLE subscriptions (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        doc JSONB NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);
    CREATE TABLE provisioned (
        tenant TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        doc JSONB NOT NULL,
        PRIMARY KEY (tenant, kind, key)
    );
    """,
    # 3: history, partitioned by month of write, and hourly roll-ups of numeric series
    """
    CREATE TABLE history (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        attr TEXT NOT NULL,
        dataset TEXT NOT NULL DEFAULT '',
        created BIGINT NOT NULL,
        iid BIGINT GENERATED ALWAYS AS IDENTITY,
        observed BIGINT,
        modified BIGINT NOT NULL,
        deleted BIGINT,
        num DOUBLE PRECISION,
        body JSONB NOT NULL,
        PRIMARY KEY (tenant, id, attr, dataset, created, iid)
    ) PARTITION BY RANGE (created);
    CREATE TABLE history_default PARTITION OF history DEFAULT;
    CREATE INDEX history_observed ON history (tenant, id, attr, dataset, observed) INCLUDE (num);
    CREATE TABLE series (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        attr TEXT NOT NULL,
        dataset TEXT NOT NULL DEFAULT '',
        numeric BOOLEAN NOT NULL,
        PRIMARY KEY (tenant, id, attr, dataset)
    );
    CREATE TABLE rollup (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        attr TEXT NOT NULL,
        dataset TEXT NOT NULL DEFAULT '',
        hour BIGINT NOT NULL,
        count BIGINT NOT NULL,
        sum DOUBLE PRECISION NOT NULL,
        min DOUBLE PRECISION NOT NULL,
        max DOUBLE PRECISION NOT NULL,
        sumsq DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant, id, attr, dataset, hour)
    );
    """,
    # 4: series numbered in the order they are made, as SQLite's sids are (an entity's
    # aggregations list its series in that order)
    """
    ALTER TABLE series ADD COLUMN sid BIGINT GENERATED ALWAYS AS IDENTITY;
    """,
    # 5: each type's entities in id order (GIN on `types` finds them but cannot order them, so
    # a page of a big type sorted the whole type), as SQLite's entity_types
    """
    CREATE TABLE entity_types (
        tenant TEXT NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        PRIMARY KEY (tenant, id, type)
    );
    CREATE INDEX entity_types_in_order ON entity_types (tenant, type, id);
    INSERT INTO entity_types (tenant, id, type)
        SELECT tenant, id, t FROM entities, unnest(types) t ON CONFLICT DO NOTHING;
    """,
    # 6: a change's number is written by its transaction (its id and the change's place in
    # it, postgres_log.LOGGED) instead of taken from a sequence; the numbers so far stay, and
    # are below every new one
    """
    ALTER TABLE changes ALTER COLUMN seq DROP IDENTITY;
    """,
    # 7: documents compressed with lz4 rather than pglz where the server has it (an entity of
    # 20 attributes is TOASTed, and pglz was a third of an attribute write's time in the
    # database); values written from now on. History partitions made later take the parent's.
    """
    DO $$
    DECLARE part regclass;
    BEGIN
        ALTER TABLE entities ALTER COLUMN raw SET COMPRESSION lz4,
            ALTER COLUMN doc SET COMPRESSION lz4;
        ALTER TABLE changes ALTER COLUMN before SET COMPRESSION lz4,
            ALTER COLUMN after SET COMPRESSION lz4;
        ALTER TABLE history ALTER COLUMN body SET COMPRESSION lz4;
        FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                    WHERE inhparent = 'history'::regclass LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN body SET COMPRESSION lz4', part);
        END LOOP;
    EXCEPTION WHEN feature_not_supported THEN
        RAISE NOTICE 'lz4 is not built into this server: documents stay compressed with pglz';
    END $$;
    """,
    # 8: what is added to every change number (postgres_log.log_base)
    """
    CREATE TABLE log_base (base BIGINT NOT NULL);
    INSERT INTO log_base VALUES (0);
    """,
]

LOCK = 0x63747769  # an advisory lock: one process migrates, the others wait for it
DROP_WAIT = "200ms"  # the longest a partition's drop waits for the history table's lock


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the migrations this database lacks, each in its own transaction; the version."""
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, at TEXT NOT NULL)"
        )
        done = await conn.fetchval("SELECT coalesce(max(version), 0) FROM migrations")
        for version, sql in enumerate(MIGRATIONS[done:], start=done + 1):
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO migrations (version, at) VALUES ($1, $2)", version, now_iso()
                )
        await ensure_partitions(conn, datetime.now(UTC))
        return len(MIGRATIONS)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)


async def ensure_partitions(conn: asyncpg.Connection, when: datetime) -> None:
    """The history partitions of the month of `when` and the next one, under the migrations'
    lock (two processes meeting a new month would otherwise both create its partition)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
        for start, end in (_month(when, 0), _month(when, 1)):
            name = f"history_{start:%Y_%m}"
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF history"
                f" FOR VALUES FROM ({_micros(start)}) TO ({_micros(end)})"
            )


async def drop_emptied_partitions(conn: asyncpg.Connection, before: int) -> list[str]:
    """Drop the history partitions whose month ended by `before` (microseconds) and that hold
    no row any more (retention deleted them): deleted rows leave their space to the table,
    a dropped partition gives it back. Rows are never written into a past month (a row's
    month is its write's), so an empty past partition stays empty. Dropping one locks the
    history table: it waits at most DROP_WAIT for readers, else it is left to the next run."""
    names = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'history'::regclass AND c.relname ~ '^history_[0-9]{4}_[0-9]{2}$'"
        " ORDER BY 1"
    )
    dropped = []
    for (name,) in names:
        _, end = _month(datetime(int(name[8:12]), int(name[13:15]), 1, tzinfo=UTC), 0)
        if _micros(end) > before:
            continue
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
                await conn.execute(f"SET LOCAL lock_timeout = '{DROP_WAIT}'")
                if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {name})"):
                    continue
                await conn.execute(f"DROP TABLE {name}")
            dropped.append(name)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            continue  # a reader holds the history table: the next run tries again
        except asyncpg.UndefinedTableError:
            continue  # another process dropped it meanwhile
    return dropped


def _month(when: datetime, ahead: int) -> tuple[datetime, datetime]:
    index = when.year * 12 + when.month - 1 + ahead
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    index += 1
    return start, datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _micros(when: datetime) -> int:
    return int(when.timestamp()) * 1_000_000


def affected(status: str) -> int:
    """The rows a statement touched, from asyncpg's status text ("UPDATE 3", "INSERT 0 1")."""
    return int(status.rsplit(" ", 1)[1])
