"""The temporal API's store methods (history, aggregations, instance edits, retention), run
against each store (tests/store/conftest.py: SQLite, and PostgreSQL on a real throwaway
cluster). History is written through the stores' own write path (`mutate`,
`mutate_attribute`); then each store must give the same rows in the same order. The last test
runs one random sequence on both at once."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from citytwin.model.entity import Entity
from citytwin.model.history import HistoryQuery, HistoryRow, TimeWindow
from citytwin.model.times import to_micros
from citytwin.store.base import Change, HistoryEntry
from tests.store.conftest import opened
from tests.store.test_contract import create, sensor, set_pm25

E1, E2, E3 = (f"urn:ngsi-ld:Sensor:{n}" for n in (1, 2, 3))
PM = "https://example.org/pm25"
NAME = "https://example.org/name"
W0, W1, W2, W3 = ("2019-01-01T00:00:00.000000Z", "2026-11-30T10:00:00.000000Z",
                  "2026-11-30T10:05:00.000000Z", "2026-11-30T10:10:00.000000Z")  # fmt: skip
MINUTE = 60_000_000
BASIC = ("totalCount", "sum", "min", "max", "sumsq", "avg")  # what hourly roll-ups answer


def at(minute: int) -> str:
    """An observedAt: minutes after 2020-08-01T12:00:00Z (an hour boundary)."""
    hours, minutes = divmod(minute, 60)
    return f"2020-08-01T{12 + hours:02d}:{minutes:02d}:00Z"


def us(minute: int) -> int:
    return to_micros(at(minute))


def obs(value: Any, minute: int | None = None, **extra: Any) -> dict[str, Any]:
    inst = {"type": "Property", "value": value, **extra}
    if minute is not None:
        inst["observedAt"] = at(minute)
    return inst


async def record(
    store: Any,
    items: list[tuple[str, dict[str, Any]]],
    written: str = W1,
    entity: str = E1,
    tenant: str = "",
) -> None:
    """(attribute, instance) pairs added to an entity's history by one write, as the temporal
    API's upsert adds them; the entity is made if new (at `written`, its write time)."""

    def fn(current: Entity | None) -> Change:
        made = current or {"id": entity, "type": ["https://example.org/Sensor"],
                           "createdAt": written, "attrs": {}}  # fmt: skip
        made["modifiedAt"] = written
        for attr, inst in items:
            made["attrs"][attr] = [{**inst, "createdAt": written, "modifiedAt": written}]
        return Change(made, "written", history=[HistoryEntry(a, i) for a, i in items])

    assert await store.mutate(tenant, [(entity, fn)]) == ["written"]


async def read(store: Any, ids: list[str] | None = None, tenant: str = "", **query: Any) -> Any:
    return await store.history(tenant, ids or [E1], HistoryQuery(**query))


def values(rows: list[HistoryRow]) -> list[Any]:
    return [r.body.get("value") for r in rows]


def window(prop: str = "observedAt", start: int | None = None, end: int | None = None) -> Any:
    return TimeWindow(prop, start, end)


def grid(minutes: int, seen: list[tuple[int, int]] | None = None) -> Callable[..., Any]:
    """Periods of `minutes` from 12:00 (whatever the instants found) up to the newest one."""
    step = minutes * MINUTE

    def periods(entity: str, low: int, high: int) -> list[tuple[int, int]]:
        if seen is not None:
            seen.append((low, high))
        return [
            (us(0) + k * step, us(0) + (k + 1) * step) for k in range((high - us(0)) // step + 1)
        ]

    return periods


def up_to(end: int, periods: Callable[..., Any]) -> Callable[..., Any]:
    """Periods made as if the newest instant were at `end` (or later)."""
    return lambda entity, low, high: periods(entity, low, max(high, end))


async def totals(
    store: Any, periods: Callable[..., Any], methods: tuple[str, ...] = BASIC, **query: Any
) -> list[tuple[Any, ...]]:
    """(datasetId, period number, totals, numeric) of E1's periods."""
    found = await store.aggregate("", [E1], HistoryQuery(**query), periods, methods)
    assert {(e, a) for e, a, *_ in found} <= {(E1, PM), (E1, NAME)}
    return [tuple(row[2:]) for row in found]


def rolled(count: int, total: float, low: float, high: float, sumsq: float) -> tuple[Any, ...]:
    """The totals of BASIC's methods (TOTALS order: the others None)."""
    return (count, None, float(total), float(low), float(high), float(sumsq), None, None)


def stddev(t: tuple[Any, ...]) -> float:
    count, dev1, dev2 = t[0], t[6], t[7]
    return math.sqrt(max(dev2 / count - (dev1 / count) ** 2, 0.0))


# -- reads ---------------------------------------------------------------------------------------


async def test_windows_select_by_observed_at_oldest_first(store: Any) -> None:
    # written out of time order: reads are ordered by time, not by instance number
    pm = [(PM, obs(v, 10 * v)) for v in (3, 1, 4, 0, 2)]
    await record(store, [*pm, (NAME, obs("x", 5))])
    await record(store, [(PM, obs(9, 50))], entity=E2)
    await record(store, [(PM, obs(7, 0))], tenant="city")
    everything = await read(store)
    assert [(r.attr, r.body["value"]) for r in everything] == [
        (NAME, "x"), (PM, 0), (PM, 1), (PM, 2), (PM, 3), (PM, 4)
    ]  # fmt: skip
    one = everything[2]
    assert (one.entity, one.dataset, one.observed, one.deleted) == (E1, None, us(10), None)
    assert one.created == one.modified == to_micros(W1)
    assert one.body == {"type": "Property", "value": 1, "observedAt": at(10)}
    assert len({r.iid for r in everything}) == 6
    assert values(await read(store, window=window(end=us(20)))) == ["x", 0, 1]
    assert values(await read(store, window=window(start=us(20)))) == [2, 3, 4]
    assert values(await read(store, window=window(start=us(10), end=us(30)))) == [1, 2]
    assert values(await read(store, attrs=frozenset({PM}), window=window(end=us(10)))) == [0]
    both = await read(store, [E2, "urn:ngsi-ld:Sensor:404", E1], attrs=frozenset({PM}))
    assert [(r.entity, r.body["value"]) for r in both][:2] == [(E2, 9), (E1, 0)]
    assert values(await read(store, tenant="city")) == [7]
    assert await read(store, tenant="elsewhere") == []


async def test_last_n_keeps_the_newest_and_limit_caps_each_series(store: Any) -> None:
    pm = [(PM, obs(v, v)) for v in range(5)] + [(PM, obs(40, 4))]  # two at minute 4
    await record(store, [*pm, (NAME, obs("a", 0)), (NAME, obs("b", 1))])
    pm_only = frozenset({PM})
    assert values(await read(store, attrs=pm_only)) == [0, 1, 2, 3, 4, 40]
    assert values(await read(store, attrs=pm_only, last_n=2)) == [4, 40]
    assert values(await read(store, attrs=pm_only, last_n=1)) == [40]  # the later instance
    assert values(await read(store, attrs=pm_only, limit=2)) == [0, 1]
    assert values(await read(store, attrs=pm_only, last_n=3, limit=2)) == [4, 40]
    assert values(await read(store, last_n=1)) == ["b", 40]  # per series
    assert values(await read(store, limit=1)) == ["a", 0]
    assert values(await read(store, last_n=2, window=window(end=us(4)))) == ["a", "b", 2, 3]


async def test_windows_by_created_modified_and_deleted_at(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (NAME, obs("a"))], written=W1)
    await record(store, [(PM, obs(2, 10)), (NAME, obs("b"))], written=W2)
    assert values(await read(store)) == [1, 2]  # no observedAt: not in observedAt windows
    assert values(await read(store, window=window("createdAt"))) == ["a", "b", 1, 2]
    since = window("createdAt", start=to_micros(W2))
    assert values(await read(store, window=since)) == ["b", 2]
    until = window("modifiedAt", end=to_micros(W2))
    assert values(await read(store, window=until)) == ["a", 1]
    assert await read(store, window=window("deletedAt")) == []


async def test_datasets_are_series_of_their_own(store: Any) -> None:
    # made in the order b, default, a: reads list series in key order, aggregations in the
    # order they were made (as SQLite's sids are)
    await record(store, [(PM, obs(1, 0, datasetId="urn:ds:b")), (PM, obs(2, 0)),
                         (PM, obs(3, 0, datasetId="urn:ds:a"))])  # fmt: skip
    rows = await read(store)
    assert [(r.dataset, r.body["value"]) for r in rows] == [
        (None, 2), ("urn:ds:a", 3), ("urn:ds:b", 1)
    ]  # fmt: skip
    assert rows[2].body == {"type": "Property", "value": 1, "observedAt": at(0),
                            "datasetId": "urn:ds:b"}  # fmt: skip
    assert values(await read(store, datasets=frozenset({None}))) == [2]
    assert values(await read(store, datasets=frozenset({"urn:ds:b", None}))) == [2, 1]
    found = await totals(store, grid(60), ("totalCount",))
    assert [(d, t[0]) for d, _, t, _ in found] == [("urn:ds:b", 1), (None, 1), ("urn:ds:a", 1)]
    only = await totals(store, grid(60), ("sum",), datasets=frozenset({"urn:ds:a"}))
    assert only == [("urn:ds:a", 0, (1, None, 3.0, None, None, None, None, None), True)]


async def test_deleting_an_attribute_leaves_a_tombstone(store: Any) -> None:
    made = sensor(1, 5, at(0))
    await store.mutate("", [(E1, create(made))])
    await store.mutate("", [(E1, set_pm25(8, at(1)))])
    assert await store.mutate_attribute("", E1, PM, lambda i: [], W2) is None
    assert values(await read(store)) == [5, 8]  # the tombstone has no observedAt
    rows = await read(store, window=window("createdAt"))
    assert values(rows) == [5, 8, "urn:ngsi-ld:null"]
    tomb = rows[-1]
    assert tomb.body == {"type": "Property", "value": "urn:ngsi-ld:null"}
    assert (tomb.observed, tomb.created, tomb.deleted) == (None, to_micros(W2), to_micros(W2))
    assert await read(store, window=window("deletedAt")) == [tomb]
    assert await store.history_attrs("", E1) == {PM}
    assert await store.history_entities("", [E1], HistoryQuery(window("deletedAt"))) == {E1}
    assert await store.history_entities("", [E1], HistoryQuery(window(start=us(2)))) == set()
    # tombstones are not counted, and leave the series numeric
    one = await totals(store, lambda _, low, high: [(low, high + 1)], ("totalCount", "sum"),
                       window=window("createdAt"))  # fmt: skip
    assert one == [(None, 0, (2, None, 13.0, None, None, None, None, None), True)]


async def test_entities_with_instances_in_the_window(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (PM, obs(2, 10))], entity=E1)
    await record(store, [(PM, obs(3, 50)), (NAME, obs("a", 0))], entity=E2)
    await record(store, [(NAME, obs("b", 60, datasetId="urn:ds:x"))], entity=E3)
    await record(store, [(PM, obs(4, 50))], entity=E1, tenant="city")

    async def having(ids: tuple[str, ...] = (E1, E2, E3), **query: Any) -> set[str]:
        return await store.history_entities("", list(ids), HistoryQuery(**query))

    assert await having() == {E1, E2, E3}
    assert await having(window=window(start=us(30))) == {E2, E3}
    assert await having(window=window(start=us(30)), attrs=frozenset({PM})) == {E2}
    assert await having(window=window(end=us(5))) == {E1, E2}
    assert await having(window=window(end=us(5)), attrs=frozenset({NAME})) == {E2}
    assert await having(datasets=frozenset({"urn:ds:x"})) == {E3}
    assert await having(datasets=frozenset({None}), attrs=frozenset({NAME})) == {E2}
    assert await having((E1, "urn:ngsi-ld:Sensor:404")) == {E1}
    assert await having(window=window("createdAt", end=to_micros(W1))) == set()
    assert await store.history_entities("city", [E1, E2], HistoryQuery()) == {E1}


async def test_attributes_with_history(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (NAME, obs("a", 0, datasetId="urn:ds:x"))])
    await record(store, [(NAME, obs("b", 0))], entity=E2)
    assert await store.history_attrs("", E1) == {PM, NAME}
    assert await store.history_attrs("", E2) == {NAME}
    assert await store.history_attrs("", E3) == set()
    assert await store.history_attrs("city", E1) == set()


# -- aggregations --------------------------------------------------------------------------------


async def pm_readings(store: Any) -> None:
    """12:xx: 1, 2, 3, 3; 13:xx: none; 14:xx: 10, 20; and one without an observedAt."""
    minutes = [(1, 0), (2, 20), (3, 40), (3, 50), (10, 130), (20, 150)]
    await record(store, [(PM, obs(v, m)) for v, m in minutes] + [(PM, obs(100))])


async def test_one_aggregation_gives_each_entity_its_own_periods(store: Any) -> None:
    """Periods start at each entity's own oldest instant (4.5.19 without timeAt): `periods` is
    asked once per entity holding instances, with its bounds; rows come entity by entity, in
    the order the entities were asked for."""
    await record(store, [(PM, obs(1, 10)), (PM, obs(2, 70))])
    await record(store, [(PM, obs(5, 95)), (PM, obs(7, 100))], entity=E2)
    seen: dict[str, tuple[int, int]] = {}

    def own(entity: str, low: int, high: int) -> list[tuple[int, int]]:
        seen[entity] = (low, high)
        step = 60 * MINUTE
        return [(low + k * step, low + (k + 1) * step) for k in range((high - low) // step + 1)]

    ids = [E2, "urn:ngsi-ld:Sensor:404", E1]
    found = await store.aggregate("", ids, HistoryQuery(window()), own, ("totalCount", "sum"))
    assert seen == {E1: (us(10), us(70)), E2: (us(95), us(100))}
    assert [(e, n, t[0], t[2]) for e, _, _, n, t, _ in found] == [
        (E2, 0, 2, 12.0), (E1, 0, 1, 1.0), (E1, 1, 1, 2.0)
    ]  # fmt: skip


async def test_aggregating_whole_hours_and_shorter_periods(store: Any) -> None:
    await pm_readings(store)
    seen: list[tuple[int, int]] = []
    hourly = await totals(store, grid(60, seen))
    assert seen == [(us(0), us(150))]  # the oldest and newest instant found
    assert hourly == [(None, 0, rolled(4, 9, 1, 3, 23), True),
                      (None, 2, rolled(2, 30, 10, 20, 500), True)]  # fmt: skip
    halves = await totals(store, grid(30))
    assert halves == [(None, 0, rolled(2, 3, 1, 2, 5), True),
                      (None, 1, rolled(2, 6, 3, 3, 18), True),
                      (None, 4, rolled(1, 10, 10, 10, 100), True),
                      (None, 5, rolled(1, 20, 20, 20, 400), True)]  # fmt: skip
    two_hours = await totals(store, grid(120))
    assert two_hours == [(None, 0, rolled(4, 9, 1, 3, 23), True),
                         (None, 1, rolled(2, 30, 10, 20, 500), True)]  # fmt: skip
    # a window the periods are clipped to: 12:20-14:20 (the first and last not whole hours)
    clipped = window(start=us(20), end=us(140))

    def inside(entity: str, low: int, high: int) -> list[tuple[int, int]]:
        return [(max(a, us(20)), min(b, us(140))) for a, b in grid(60)(entity, low, high)]

    assert await totals(store, inside, window=clipped) == [
        (None, 0, rolled(3, 8, 2, 3, 22), True), (None, 2, rolled(1, 10, 10, 10, 100), True)
    ]  # fmt: skip
    assert await totals(store, grid(60), window=window(start=us(160))) == []


async def test_distinct_counts_and_deviations_read_the_instances(store: Any) -> None:
    await pm_readings(store)
    for minutes in (60, 30):
        found = await totals(store, grid(minutes), ("distinctCount", "stddev", "totalCount"))
        expected = {60: [(4, 3, 0.82915619758885), (2, 2, 5.0)],
                    30: [(2, 2, 0.5), (2, 1, 0.0), (1, 1, 0.0), (1, 1, 0.0)]}[minutes]  # fmt: skip
        assert [(t[0], t[1]) for _, _, t, _ in found] == [(c, d) for c, d, _ in expected]
        assert [stddev(t) for _, _, t, _ in found] == pytest.approx([s for *_, s in expected])
        assert all(t[2:6] == (None,) * 4 for _, _, t, _ in found)
    # by createdAt: everything was written at once, the instance without observedAt too
    one = await totals(store, lambda _, low, high: [(low, high + 1)], ("totalCount", "max"),
                       window=window("createdAt"))  # fmt: skip
    assert one == [(None, 0, (7, None, None, None, 100.0, None, None, None), True)]


async def test_values_that_are_not_numbers(store: Any) -> None:
    mixed = [obs("b", 0), obs("B", 1), obs("a", 2), obs(5, 3), obs(True, 4), obs({"k": 1}, 5),
             {"type": "Relationship", "object": "urn:z", "observedAt": at(7)}]  # fmt: skip
    await record(store, [(NAME, inst) for inst in mixed])
    tomb = {"type": "Property", "value": "urn:ngsi-ld:null", "observedAt": at(6)}

    def deleted(current: Entity | None) -> Change:
        assert current is not None
        return Change(current, "gone", history=[HistoryEntry(NAME, tomb, deleted=True)])

    await store.mutate("", [(E1, deleted)])
    methods = ("totalCount", "distinctCount", "min", "max", "sum")
    found = await totals(store, lambda _, low, high: [(us(0), us(3)), (us(3), us(60))], methods)
    assert found == [(None, 0, (3, 3, None, "B", "b", None, None, None), False),
                     (None, 1, (4, 4, 6.0, 1, {"k": 1}, None, None, None), False)]  # fmt: skip
    assert type(found[1][2][3]) is int  # a boolean counts as 1, as SQLite's JSON gives it
    # text compares byte by byte ("B" < "a" < "b"), whatever the database's locale
    # a whole hour: not from the roll-ups (they hold the two numbers only)
    hour = await totals(store, grid(60), ("totalCount", "min", "max"))
    assert hour == [(None, 0, (7, None, None, 1, {"k": 1}, None, None, None), False)]


async def test_a_longer_last_period_keeps_its_number(store: Any) -> None:
    """Whole-hour periods, the last longer than the others (as a month after a shorter one is,
    with aggrPeriodDuration=P1M): its instances are counted in it, not in a period after it."""
    await record(store, [(PM, obs(1, 10)), (PM, obs(2, 150))])
    found = await totals(store, lambda _, low, high: [(us(0), us(60)), (us(60), us(180))], ("sum",))
    assert [(n, t[2]) for _, n, t, _ in found] == [(0, 1.0), (1, 2.0)]


# -- edits ---------------------------------------------------------------------------------------


async def test_modifying_an_instance(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (PM, obs(2, 20)), (PM, obs(10, 130)), (NAME, obs("a"))])
    rows = await read(store)
    second = rows[1]
    moved = obs(7, 70)
    assert await store.modify_instance("", E1, PM, second.iid, moved, W3)
    rows = await read(store)
    assert values(rows) == [1, 7, 10]
    assert rows[1].iid == second.iid and rows[1].body == moved
    assert (rows[1].observed, rows[1].created, rows[1].modified) == (
        us(70), to_micros(W1), to_micros(W3)
    )  # fmt: skip
    assert await read(store, window=window("modifiedAt", start=to_micros(W3))) == [rows[1]]
    # the hours it left and joined are counted again
    assert await totals(store, grid(60)) == [
        (None, 0, rolled(1, 1, 1, 1, 1), True), (None, 1, rolled(1, 7, 7, 7, 49), True),
        (None, 2, rolled(1, 10, 10, 10, 100), True)
    ]  # fmt: skip
    name = (await read(store, window=window("createdAt"), attrs=frozenset({NAME})))[0]
    assert not await store.modify_instance("", E1, PM, name.iid, moved, W3)  # another attribute
    assert not await store.modify_instance("", E1, PM, 10**12, moved, W3)
    assert not await store.modify_instance("city", E1, PM, second.iid, moved, W3)
    assert not await store.modify_instance("", E2, PM, second.iid, moved, W3)
    # a value that is not a number: the series is no longer numeric
    assert await store.modify_instance("", E1, PM, rows[0].iid, obs("high", 0), W3)
    found = await totals(store, grid(60), ("totalCount", "max"))
    assert [(n, t[0], t[4], numeric) for _, n, t, numeric in found] == [
        (0, 1, "high", False), (1, 1, 7, False), (2, 1, 10, False)
    ]  # fmt: skip


async def test_deleting_an_instance(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (PM, obs(2, 20)), (PM, obs(10, 130))])
    second = (await read(store))[1]
    assert not await store.delete_instance("", E1, NAME, second.iid)
    assert not await store.delete_instance("city", E1, PM, second.iid)
    assert await store.delete_instance("", E1, PM, second.iid)
    assert values(await read(store)) == [1, 10]
    assert not await store.delete_instance("", E1, PM, second.iid)
    assert await totals(store, grid(60)) == [
        (None, 0, rolled(1, 1, 1, 1, 1), True), (None, 2, rolled(1, 10, 10, 10, 100), True)
    ]  # fmt: skip


async def test_deleting_an_attributes_history(store: Any) -> None:
    await record(store, [(PM, obs(1, 0)), (PM, obs(2, 10)),
                         (PM, obs(5, 0, datasetId="urn:ds:a")), (NAME, obs("x", 0))])  # fmt: skip
    assert await store.delete_history("", E1, PM, {""}) == 2
    assert [r.dataset for r in await read(store, attrs=frozenset({PM}))] == ["urn:ds:a"]
    assert await totals(store, grid(60), ("totalCount", "sum"), attrs=frozenset({PM})) == [
        ("urn:ds:a", 0, (1, None, 5.0, None, None, None, None, None), True)
    ]  # fmt: skip
    assert await store.delete_history("", E1, PM, {"urn:ds:a", "urn:ds:zzz"}) == 1
    assert await store.delete_history("", E1, PM, None) == 0
    assert await store.delete_history("", E1, "https://example.org/nothing", None) == 0
    assert values(await read(store)) == ["x"]
    assert await store.history_attrs("", E1) == {PM, NAME}  # its series are still known
    await record(store, [(PM, obs(4, 30))], written=W2)
    assert await totals(store, grid(60), ("totalCount", "sum"), attrs=frozenset({PM})) == [
        (None, 0, (1, None, 4.0, None, None, None, None, None), True)
    ]  # fmt: skip
    assert await store.delete_history("", E1, NAME, None) == 1


async def test_pruning_old_instances(store: Any) -> None:
    readings = [(1, 0), (2, 50), (3, 70), (5, 80), (4, 130)]  # 12:00, 12:50, 13:10, 13:20, 14:10
    await record(store, [(PM, obs(v, m)) for v, m in readings] + [(NAME, obs("new"))])
    await record(store, [(NAME, obs("old"))], written=W0)  # no observedAt, written long ago
    await record(store, [(PM, obs(9, 10))], tenant="city")
    many = [(f"https://example.org/a{n}", obs(n, 0)) for n in range(205)]  # > a batch
    await record(store, many, entity=E2)
    cutoff = us(75)  # 13:15
    assert await store.prune_history(cutoff) == 3 + 1 + 1 + 205
    assert values(await read(store, window=window("createdAt"))) == ["new", 5, 4]
    assert await read(store, tenant="city") == [] and await read(store, [E2]) == []
    # the hours before the cutoff's are gone, the cutoff's is counted again
    assert await totals(store, grid(60)) == [
        (None, 1, rolled(1, 5, 5, 5, 25), True), (None, 2, rolled(1, 4, 4, 4, 16), True)
    ]  # fmt: skip
    assert await store.prune_history(cutoff) == 0


# -- both stores at once -------------------------------------------------------------------------


def random_instance(rng: random.Random, attr: str) -> dict[str, Any]:
    value: Any = rng.randint(-5, 30)
    if attr == NAME:
        value = rng.choice(["a", "b", "ab", 3, 7, True, False, {"k": 2}, [1]])
    minute = rng.choice([None, *range(0, 240, 3)])
    extra = {"datasetId": "urn:ds:x"} if rng.random() < 0.3 else {}
    return obs(value, minute, **extra)


async def test_both_stores_give_the_same_answers(
    tmp_path: Path, postgres_url: str, migrated: str
) -> None:
    """One random sequence of writes and edits on both stores; every read of both agrees
    (instance numbers aside: each store numbers its own), before and after pruning."""
    rng = random.Random(8)
    async with (
        opened("sqlite", tmp_path, postgres_url, migrated) as lite,
        opened("postgres", tmp_path, postgres_url, migrated) as pg,
    ):
        for step in range(150):
            await _random_step(rng, (lite, pg), step)
        await _agree(rng, lite, pg)
        cutoff = us(rng.randint(0, 120))
        assert await lite.prune_history(cutoff) == await pg.prune_history(cutoff)
        await _agree(rng, lite, pg)


async def _random_step(rng: random.Random, stores: tuple[Any, Any], step: int) -> None:
    """The same on each store: instances written through the temporal path or the core one,
    one modified or deleted, an attribute deleted (tombstones) or its history forgotten."""
    attr, entity = rng.choice([PM, NAME]), rng.choice([E1, E2])
    written = f"2026-11-30T{10 + step // 60:02d}:{step % 60:02d}:00.000000Z"
    kind = rng.choice(["write", "write", "write", "core", "modify", "delete", "drop", "forget"])
    if kind == "write":
        items = [(attr, random_instance(rng, attr)) for _ in range(rng.randint(1, 6))]
        for s in stores:
            await record(s, items, written=written, entity=entity)
        return
    if kind in ("core", "drop"):
        new = [{**random_instance(rng, attr), "modifiedAt": written}] if kind == "core" else []
        for s in stores:
            await s.mutate_attribute("", entity, attr, lambda old: [dict(i) for i in new], written)
        return
    if kind == "forget":
        sets = rng.choice([None, {""}, {"urn:ds:x"}])
        counts = [await s.delete_history("", entity, attr, sets) for s in stores]
        assert counts[0] == counts[1]
        return
    rows = [await read(s, [entity], attrs=frozenset({attr}), window=window("createdAt"))
            for s in stores]  # fmt: skip
    if not rows[0]:
        return
    k = rng.randrange(len(rows[0]))
    new_instance = random_instance(rng, attr)
    for s, found in zip(stores, rows, strict=True):
        if kind == "modify":
            assert await s.modify_instance("", entity, attr, found[k].iid, new_instance, W3)
        else:
            assert await s.delete_instance("", entity, attr, found[k].iid)


async def _agree(rng: random.Random, lite: Any, pg: Any) -> None:
    def same(rows: list[HistoryRow]) -> list[tuple[Any, ...]]:
        return [(r.entity, r.attr, r.dataset, r.observed, r.created, r.modified, r.deleted,
                 r.body) for r in rows]  # fmt: skip

    ids = [E2, E1, E3]
    for prop in ("observedAt", "createdAt", "modifiedAt", "deletedAt"):
        for _ in range(6):
            start = rng.choice([None, us(rng.randint(0, 240))])
            query = HistoryQuery(window(prop, start, None), last_n=rng.choice([None, 1, 3]),
                                 limit=rng.choice([None, 2, 50]),
                                 datasets=rng.choice([None, frozenset({None}),
                                                      frozenset({"urn:ds:x"})]))  # fmt: skip
            got = [await s.history("", ids, query) for s in (lite, pg)]
            assert typed(same(got[0])) == typed(same(got[1])), query
            got = [await s.history_entities("", ids, query) for s in (lite, pg)]
            assert got[0] == got[1]
    methods = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
    for minutes, chosen, prop, entities in itertools.product(
        (60, 30, 180, 1440),
        (methods[:1], ("min", "max"), BASIC, methods),
        ("observedAt", "createdAt"),
        ([E1], [E2], [E2, E1]),  # both: their series aggregated together where alike
    ):
        query = HistoryQuery(window(prop))
        periods = up_to(us(600), grid(minutes))  # alike for both entities: one statement
        if prop == "createdAt":
            periods = lambda e, a, b: [(a, b + 1)]  # noqa: E731
        got = [await s.aggregate("", entities, query, periods, chosen) for s in (lite, pg)]
        assert typed(got[0]) == typed(got[1]), (minutes, chosen, prop, entities)


def typed(found: Any) -> bytes:
    """What would be rendered: 7 and 7.0 differ (keys sorted: JSONB keeps no key order)."""
    return orjson.dumps(found, option=orjson.OPT_SORT_KEYS)
