"""What every store must do, run against each: SQLite (the default) and PostgreSQL on a real
throwaway cluster (the queries and the temporal reads have files of their own beside this)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from bench.store import update
from citytwin.errors import AlreadyExists
from citytwin.model.entity import Entity
from citytwin.model.query import expand, parse_q, parse_scope_q
from citytwin.store.base import MISSING, Change, MutateFn, Query
from citytwin.store.postgres import PostgresStore

NOW = "2026-11-30T10:00:00.000000Z"
LATER = "2026-11-30T10:05:00.000000Z"


def sensor(n: int, pm25: float, at: str = NOW) -> Entity:
    instance = {"type": "Property", "value": pm25, "observedAt": at, "createdAt": at,
                "modifiedAt": at}  # fmt: skip
    return {"id": f"urn:ngsi-ld:Sensor:{n}", "type": ["https://example.org/Sensor"],
            "createdAt": at, "modifiedAt": at,
            "attrs": {"https://example.org/pm25": [instance]}}  # fmt: skip


def create(entity: Entity) -> MutateFn:
    def fn(current: Entity | None) -> Change:
        if current is not None:
            raise AlreadyExists("exists")
        return Change(entity, "created")

    return fn


def set_pm25(value: float, at: str) -> MutateFn:
    return update(value, at, "https://example.org/pm25")


def boom(current: Entity | None) -> Change:
    raise ValueError("this write fails")


async def test_written_entities_read_back_and_make_their_tenant(store: Any) -> None:
    assert not await store.tenant_exists("city")
    results = await store.mutate(
        "city", [(e["id"], create(e)) for e in (sensor(1, 5), sensor(2, 7))]
    )
    assert results == ["created", "created"]
    assert await store.tenant_exists("city")
    assert await store.get("city", "urn:ngsi-ld:Sensor:1") == sensor(1, 5)
    assert await store.get("", "urn:ngsi-ld:Sensor:1") is None  # another tenant


async def test_a_failing_write_leaves_its_entity_and_the_log_as_they_were(store: Any) -> None:
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", create(sensor(1, 5)))])
    seq = await store.last_change()
    ops = [("urn:ngsi-ld:Sensor:1", boom), ("urn:ngsi-ld:Sensor:2", create(sensor(2, 9))),
           ("urn:ngsi-ld:Sensor:1", create(sensor(1, 6)))]  # fmt: skip
    results = await store.mutate("", ops)
    assert isinstance(results[0], ValueError) and isinstance(results[2], AlreadyExists)
    assert results[1] == "created"
    assert await store.get("", "urn:ngsi-ld:Sensor:1") == sensor(1, 5)
    assert [c.entity_id for c in await store.changes_since(seq)] == ["urn:ngsi-ld:Sensor:2"]


async def test_the_change_log_holds_each_write(store: Any) -> None:
    start = await store.last_change()
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", create(sensor(1, 5)))])
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", set_pm25(8, LATER))])
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", lambda e: Change(None))])
    made, updated, deleted = await store.changes_since(start)
    assert made.before is None and made.after == sensor(1, 5) and made.attrs is None
    assert updated.attrs == ["https://example.org/pm25"]  # a partial record: what it touched
    first = sensor(1, 5)["attrs"]
    assert updated.before == {"id": "urn:ngsi-ld:Sensor:1", "attrs": first}
    assert updated.after["attrs"]["https://example.org/pm25"][0]["value"] == 8
    assert deleted.after is None and deleted.before["modifiedAt"] == LATER
    assert made.seq < updated.seq < deleted.seq == await store.last_change()
    lean = await store.changes_since(start, before=False)
    assert [c.before for c in lean][:2] == [None, None] and lean[2].before is not None
    assert [c.seq for c in await store.changes_since(made.seq, 1)] == [updated.seq]


async def test_cursors_and_subscriptions(store: Any) -> None:
    assert await store.cursor("notifier") is None
    await store.set_cursor("notifier", 7)
    await store.set_cursor("notifier", 9)
    assert await store.cursor("notifier") == 9
    doc = {"id": "urn:ngsi-ld:Subscription:1", "type": "Subscription", "q": "pm25>5"}
    versions = [await store.subscriptions_version()]
    assert await store.put_subscription("city", doc["id"], doc, create=True)
    versions.append(await store.subscriptions_version())
    assert not await store.put_subscription("city", doc["id"], doc, create=True)  # taken
    assert await store.tenant_exists("city")
    assert await store.put_subscription("city", doc["id"], {**doc, "q": "pm25>9"}, create=False)
    versions.append(await store.subscriptions_version())
    assert not await store.put_subscription("city", "urn:x", doc, create=False)  # no such one
    await store.save_status([("city", doc["id"], {"timesSent": 1})])  # not a change of it
    assert await store.subscriptions_version() == versions[-1]
    assert (await store.get_subscription("city", doc["id"]))["q"] == "pm25>9"
    assert [t for t, _ in await store.subscriptions()] == ["city"]
    assert await store.subscriptions("") == []
    assert await store.delete_subscription("city", doc["id"])
    assert not await store.delete_subscription("city", doc["id"])
    versions.append(await store.subscriptions_version())
    assert len(set(versions)) == 4  # every write of a subscription changed it


async def test_concurrent_creations_of_one_entity_let_exactly_one_win(store: Any) -> None:
    """Many writers create the same entity at once: one creates it, the others find it made
    (PostgreSQL: the losers' transactions meet the winner's row and start again)."""
    entity = sensor(1, 5)
    results = await asyncio.gather(
        *(store.mutate("", [(entity["id"], create(entity))]) for _ in range(6))
    )
    outcomes = [r[0] for r in results]
    assert outcomes.count("created") == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if o != "created")
    assert len(await store.changes_since(0)) == 1


async def test_single_attribute_writes(store: Any) -> None:
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", create(sensor(1, 5)))])
    start = await store.last_change()
    name = "https://example.org/pm25"

    def double(instances: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        assert instances is not None
        instances[0]["value"] *= 2  # in place: the log must keep what it was
        instances[0]["modifiedAt"] = LATER
        return instances

    assert await store.mutate_attribute("", "urn:ngsi-ld:Sensor:1", name, double, LATER) is None
    entity = await store.get("", "urn:ngsi-ld:Sensor:1")
    assert entity["attrs"][name][0]["value"] == 10 and entity["modifiedAt"] == LATER
    [change] = await store.changes_since(start)
    assert change.attrs == [name] and change.before["attrs"][name][0]["value"] == 5
    gone = await store.mutate_attribute("", "urn:ngsi-ld:Sensor:1", name, lambda i: [], LATER)
    assert gone is None and name not in (await store.get("", "urn:ngsi-ld:Sensor:1"))["attrs"]
    missing = await store.mutate_attribute("", "urn:ngsi-ld:Sensor:9", name, double, LATER)
    assert missing is MISSING
    with pytest.raises(ZeroDivisionError):
        await store.mutate_attribute("", "urn:ngsi-ld:Sensor:1", name, lambda i: [1 / 0], LATER)


async def test_counts_and_summary(store: Any) -> None:
    placed = sensor(2, 7)
    placed["type"].append("https://example.org/Device")
    placed["attrs"]["https://example.org/owner"] = [{"type": "Relationship", "object": "urn:x"}]
    ops = [(e["id"], create(e)) for e in (sensor(1, 5), placed)]
    await store.mutate("", ops)
    assert await store.type_counts("") == {"https://example.org/Sensor": 2,
                                           "https://example.org/Device": 1}  # fmt: skip
    assert await store.attribute_count("", "https://example.org/owner") == 1
    assert await store.attribute_count("", "https://example.org/pm25") == 2
    assert await store.type_counts("elsewhere") == {}
    summary = sorted(await store.summary(""))
    assert summary == [
        ("https://example.org/Device", "https://example.org/owner", "Relationship", 1),
        ("https://example.org/Device", "https://example.org/pm25", "Property", 1),
        ("https://example.org/Sensor", "https://example.org/owner", "Relationship", 1),
        ("https://example.org/Sensor", "https://example.org/pm25", "Property", 2),
    ]


async def test_the_log_is_searched_and_pruned(store: Any) -> None:
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", create(sensor(1, 5)))])
    await store.mutate("", [("urn:ngsi-ld:Sensor:1", set_pm25(8, LATER))])
    await store.mutate("", [("urn:ngsi-ld:Sensor:2", create(sensor(2, 5)))])
    first, second, third = (c.seq for c in await store.changes_since(0))
    found = await store.changes_touching(first, third, ["example.org/pm25", "nothing"])
    assert [c.seq for c in found] == [second, third]
    assert await store.changes_touching(0, third, ["nothing"]) == []
    assert await store.prune_changes(third, keep=2) == 1  # the newest two stay, numbers aside
    assert await store.prune_changes(third, keep=5) == 0
    assert await store.prune_changes(second) == 1
    assert [c.seq for c in await store.changes_since(0)] == [third]


async def test_provisioning(store: Any) -> None:
    version = await store.provisioning_version()
    group = ("city", "/\x1fk", {"apikey": "k"})
    assert await store.provision("group", [group], create=True)
    assert not await store.provision("group", [group, ("city", "other", {})], create=True)
    assert [k for _, k, _ in await store.provisioned("group")] == [group[1]]  # nothing half-made
    assert await store.provision("group", [("city", group[1], {"apikey": "j"})], create=False)
    assert await store.provisioned("group") == [("city", group[1], {"apikey": "j"})]
    assert not await store.provision("group", [("city", "missing", {})], create=False)
    assert await store.unprovision("group", "city", [group[1], "missing"]) == 1
    assert await store.provisioned("group") == []
    assert await store.provisioning_version() > version


async def test_one_entity_is_judged_by_id_pattern_q_and_scope(store: Any) -> None:
    """What the notifier and the stream ask of a change's entity, stored or not."""
    entity = {**sensor(4, 42), "scope": ["/Shanghai/Pudong"]}
    name = lambda n: "https://example.org/" + n  # noqa: E731

    def query(**parts: Any) -> Query:
        q = expand(parse_q(parts.pop("q")), name) if "q" in parts else None
        scope = parse_scope_q(parts.pop("scope")) if "scope" in parts else None
        return Query(q=q, scope_q=scope, **parts)

    judged = {
        "everything": query(),
        "pm25>40": query(q="pm25>40"),
        "pm25>50": query(q="pm25>50"),
        "pm25==42;pm25<43": query(q="pm25==42;pm25<43"),
        'pm25=="42"': query(q='pm25=="42"'),  # a number never matches a string
        "humidity": query(q="humidity"),
        "scope /Shanghai/#": query(scope="/Shanghai/#"),
        "scope /Beijing": query(scope="/Beijing"),
        "idPattern :4$": query(id_pattern=":4$"),
        "idPattern :5$": query(id_pattern=":5$"),
    }
    verdicts = {label: store.entity_matches("", entity, q) for label, q in judged.items()}
    assert verdicts == {
        "everything": True, "pm25>40": True, "pm25>50": False, "pm25==42;pm25<43": True,
        "pm25==\"42\"": False, "humidity": False, "scope /Shanghai/#": True,
        "scope /Beijing": False, "idPattern :4$": True, "idPattern :5$": False,
    }  # fmt: skip


async def test_postgres_keeps_history_rollups_and_geometries(database: str) -> None:  # noqa: F811
    store = PostgresStore(database)
    await store.open()
    try:
        placed = sensor(1, 5)
        placed["attrs"]["https://uri.etsi.org/ngsi-ld/location"] = [
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [121.47, 31.23]},
             "createdAt": NOW, "modifiedAt": NOW}]  # fmt: skip
        await store.mutate("", [(placed["id"], create(placed))])
        await store.mutate("", [(placed["id"], set_pm25(8, LATER))])
        conn = await asyncpg.connect(database)
        history = await conn.fetch("SELECT attr, num FROM history ORDER BY created, attr")
        assert [(r["attr"], r["num"]) for r in history] == [
            ("https://example.org/pm25", 5.0), ("https://uri.etsi.org/ngsi-ld/location", None),
            ("https://example.org/pm25", 8.0)]  # fmt: skip
        rollup = await conn.fetchrow("SELECT count, sum, min, max FROM rollup")
        assert tuple(rollup) == (2, 13.0, 5.0, 8.0)
        near = await conn.fetchval(
            "SELECT id FROM entity_geo WHERE ST_DWithin(geom::geography,"
            " ST_SetSRID(ST_MakePoint(121.471, 31.231), 4326)::geography, 500)"
        )
        assert near == placed["id"]
        await store.mutate("", [(placed["id"], lambda e: Change(None))])
        for table in ("history", "rollup", "entity_geo", "entities"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        await conn.close()
    finally:
        await store.close()


async def test_concurrent_writers_of_one_entity_each_keep_their_attribute(store: Any) -> None:
    """Two writers (concurrent transactions on PostgreSQL) each set their own attribute of one
    entity, many times: both attributes end at their last value, and the entity is never torn."""
    await store.mutate("", [(sensor(1, 0)["id"], create(sensor(1, 0)))])

    def put(name: str, value: int) -> MutateFn:
        def fn(current: Entity | None) -> Change:
            assert current is not None
            was = {name: current["attrs"][name]} if name in current["attrs"] else {}
            current["attrs"][name] = [{"type": "Property", "value": value}]
            return Change(current, value, touched=([name], was))

        return fn

    async def writer(name: str) -> None:
        for n in range(40):
            assert await store.mutate("", [("urn:ngsi-ld:Sensor:1", put(name, n))]) == [n]

    await asyncio.gather(writer("https://example.org/a"), writer("https://example.org/b"))
    attrs = (await store.get("", "urn:ngsi-ld:Sensor:1"))["attrs"]
    assert attrs["https://example.org/a"][0]["value"] == 39
    assert attrs["https://example.org/b"][0]["value"] == 39
    assert attrs["https://example.org/pm25"][0]["value"] == 0


async def test_each_entitys_changes_are_numbered_in_the_order_of_its_writes(store: Any) -> None:
    """Concurrent batches over overlapping entities, each counting one up from the value it
    read: read in number order, each entity's changes count 1, 2, 3... with none missing (on
    PostgreSQL writers number their changes without waiting for each other, postgres_log)."""
    import random

    entities = [sensor(n, 0) for n in range(40)]  # a write of all: PostgreSQL's large-write locks
    await store.mutate("", [(e["id"], create(e)) for e in entities])
    start = await store.last_change()

    def count_up(current: Entity | None) -> Change:
        assert current is not None
        value = current["attrs"]["https://example.org/pm25"][0]["value"] + 1
        return set_pm25(value, LATER)(current)

    async def writer(seed: int) -> int:
        rng, written = random.Random(seed), 0
        for _ in range(25):
            chosen = entities if rng.random() < 0.2 else rng.sample(entities[:6], rng.randint(1, 4))
            await store.mutate("", [(e["id"], count_up) for e in chosen])
            written += len(chosen)
        return written

    written = sum(await asyncio.gather(*(writer(seed) for seed in range(6))))
    counts: dict[str, list[int]] = {}
    seq = start
    while changes := await store.changes_since(seq, 100):
        for change in changes:
            value = change.after["attrs"]["https://example.org/pm25"][0]["value"]
            counts.setdefault(change.entity_id, []).append(value)
        seq = changes[-1].seq
    assert sum(len(values) for values in counts.values()) == written
    for values in counts.values():
        assert values == list(range(1, len(values) + 1))
