"""Queries on both stores, where their SQL dialects could part ways: code-point order of
strings, NUL characters (PostgreSQL text cannot hold them), regular expressions (Python's on
both), a disjunction with a regular expression in it, mixed-type ordering, purge."""

from __future__ import annotations

from typing import Any

from citytwin.model.entity import Entity
from citytwin.model.query import (
    All,
    Any_,
    Path,
    Term,
    expand,
    expand_order,
    parse_order_by,
    parse_q,
)
from citytwin.store.base import Query
from tests.store.test_contract import NOW, create

EX = "https://example.org/"


def thing(n: int, **values: Any) -> Entity:
    attrs = {
        EX + name: [{"type": "Property", "value": value, "createdAt": NOW, "modifiedAt": NOW}]
        for name, value in values.items()
    }
    return {"id": f"urn:ngsi-ld:Thing:{n}", "type": [EX + "Thing"], "createdAt": NOW,
            "modifiedAt": NOW, "attrs": attrs}  # fmt: skip


def q(text: str) -> Any:
    return expand(parse_q(text), lambda n: EX + n)


async def ids(store: Any, query: Query) -> list[str]:
    return [e["id"].rsplit(":", 1)[1] for e in (await store.query("", query)).entities]


async def load(store: Any, *entities: Entity) -> None:
    results = await store.mutate("", [(e["id"], create(e)) for e in entities])
    assert results == ["created"] * len(entities)


async def test_strings_compare_and_sort_by_code_point(store: Any) -> None:
    await load(
        store, thing(1, name="a"), thing(2, name="Z"), thing(3, name="é"), thing(4, name="b")
    )
    order = expand_order(parse_order_by("name"), lambda n: EX + n)
    assert await ids(store, Query(order_by=order)) == ["2", "1", "4", "3"]
    assert await ids(store, Query(q=q('name>"Z"'))) == ["1", "3", "4"]
    assert await ids(store, Query(q=q('name<"b"'))) == ["1", "2"]


async def test_nul_characters_are_stored_and_never_confused(store: Any) -> None:
    """A NUL is kept as written; no query mistakes it for a backslash escape or for nothing.
    (SQLite's JSON functions cut text at a NUL, so there a NUL-bearing literal finds nothing;
    PostgreSQL compares it as U+FFFD on both sides and finds it.)"""
    nul, escaped = "a\x00b", "a\\u0000b"  # a NUL; a backslash followed by u0000
    await load(store, thing(1, name=nul), thing(2, name=escaped), thing(3, name="ab"))
    assert (await store.get("", "urn:ngsi-ld:Thing:1"))["attrs"][EX + "name"][0]["value"] == nul
    name = Path(EX + "name")
    assert await ids(store, Query(q=Term(name, "==", escaped))) == ["2"]
    assert await ids(store, Query(q=Term(name, "==", "ab"))) == ["3"]
    assert set(await ids(store, Query(q=Term(name, "==", nul)))) <= {"1"}
    assert await ids(store, Query(q=Term(name, "~=", "b$"))) == ["2", "3"]


async def test_regular_expressions_are_pythons(store: Any) -> None:
    """Python's syntax on both stores (PostgreSQL's reads `\\b` as a backspace)."""
    await load(store, thing(1, code="AB-12"), thing(2, code="ab-3x"), thing(4, code="cd"))
    assert await ids(store, Query(q=q("code~=^[A-Z]{2}-\\d+\\Z"))) == ["1"]
    lookahead = Term(Path(EX + "code"), "~=", "^[Aa][Bb]-(?=\\d)")
    assert await ids(store, Query(q=lookahead)) == ["1", "2"]
    assert await ids(store, Query(q=q("code!~=\\d"))) == ["4"]
    assert await ids(store, Query(q=q("code~=\\b12"))) == ["1"]
    assert await ids(store, Query(id_pattern=r":[12]\Z")) == ["1", "2"]


async def test_id_patterns_with_literals_that_sql_patterns_treat_specially(store: Any) -> None:
    """idPattern's leading literal narrows the candidates in SQL on PostgreSQL (LIKE for a
    prefix, strpos otherwise): `_`, `%` and backslashes in it must stay literal."""
    made = [f"urn:x:{suffix}" for suffix in ("a_b", "aXb", "50%", "500", "c\\d", "cd", "z-a_b")]
    await load(store, *({**thing(0), "id": i} for i in made))
    one_type = lambda pattern, **more: Query(types=Term(Path("type"), "type", EX + "Thing"),  # noqa: E731
                                             id_pattern=pattern, **more)  # fmt: skip

    async def found(query: Query) -> list[str]:
        return [e["id"] for e in (await store.query("", query)).entities]

    for query in (Query(id_pattern="^urn:x:a_b"), one_type("^urn:x:a_b")):
        assert await found(query) == ["urn:x:a_b"]
    assert await found(Query(id_pattern="a_b")) == ["urn:x:a_b", "urn:x:z-a_b"]
    assert await found(one_type("^urn:x:50%")) == ["urn:x:50%"]
    assert await found(Query(id_pattern="^urn:x:c\\\\d")) == ["urn:x:c\\d"]
    assert await found(one_type("^urn:x:", limit=2, offset=1)) == ["urn:x:500", "urn:x:aXb"]
    page = await store.query("", one_type("x:[a5]", limit=1, count=True))
    assert [e["id"] for e in page.entities] == ["urn:x:50%"] and page.count == 4


async def test_a_disjunction_with_a_regex_pages_after_the_check(store: Any) -> None:
    await load(store, *(thing(n, code=f"c{n}", level=n) for n in range(1, 9)))
    either = q("code~=[1357]$|level>7")
    assert await ids(store, Query(q=either)) == ["1", "3", "5", "7", "8"]
    page = await store.query("", Query(q=either, limit=2, offset=1, count=True))
    assert [e["id"][-1] for e in page.entities] == ["3", "5"] and page.count == 5
    selector = Any_((Term(Path("id"), "idPattern", "[26]$"), Term(Path("type"), "type", EX + "X")))
    assert await ids(store, Query(types=All((selector,)), q=q("level<6"))) == ["2"]


async def test_mixed_types_sort_numbers_first_and_absent_last(store: Any) -> None:
    await load(store, thing(1, v="x"), thing(2, v=5), thing(3), thing(4, v=True), thing(5, v=-1))
    order = expand_order(parse_order_by("v"), lambda n: EX + n)
    assert await ids(store, Query(order_by=order)) == ["5", "4", "2", "1", "3"]
    descending = expand_order(parse_order_by("v;desc"), lambda n: EX + n)
    assert await ids(store, Query(order_by=descending)) == ["1", "2", "4", "5", "3"]


async def test_numbers_compare_as_numbers_never_as_strings(store: Any) -> None:
    await load(store, thing(1, v=10), thing(2, v="10"), thing(3, v=9.5), thing(4, v=[1, 20]))
    assert await ids(store, Query(q=q("v>9.75"))) == ["1", "4"]
    assert await ids(store, Query(q=q('v=="10"'))) == ["2"]
    assert await ids(store, Query(q=q("v==9..10"))) == ["1", "3"]
    assert await ids(store, Query(q=q("v!=10"))) == ["2", "3", "4"]


async def test_purge_deletes_what_a_query_selects(store: Any) -> None:
    await load(store, *(thing(n, code=f"c{n}") for n in range(1, 6)))
    assert await store.purge("", Query(q=q("code~=[24]"))) == 2
    assert await ids(store, Query()) == ["1", "3", "5"]
    last = await store.changes_since(0)
    assert [(c.entity_id[-1], c.after) for c in last[-2:]] == [("2", None), ("4", None)]


async def test_ranges_whose_ends_differ_in_type_compare_as_sqlite_orders_values(
    store: Any,
) -> None:
    """Every number comes before every string; a boolean is 1 or 0 against numbers."""
    await load(store, thing(1, v=1), thing(2, v=5), thing(3, v="a"), thing(4, v=True))
    assert await ids(store, Query(q=q("v==1..b"))) == ["1", "2"]
    assert await ids(store, Query(q=q("v==a..1"))) == []
    assert await ids(store, Query(q=q("v==0..true"))) == ["1"]
    assert await ids(store, Query(q=q("v!=1..b"))) == ["3", "4"]


async def test_booleans_compare_only_with_themselves(store: Any) -> None:
    await load(store, thing(1, v=True), thing(2, v=False), thing(3, v=1))
    found = {text: await ids(store, Query(q=q(text)))
             for text in ("v>=false", "v>true", "v<=true", "v==true..true", "v==true")}  # fmt: skip
    assert found == {"v>=false": ["2"], "v>true": [], "v<=true": ["1"], "v==true..true": ["1"],
                     "v==true": ["1"]}  # fmt: skip


async def test_keys_name_members_never_array_positions(store: Any) -> None:
    await load(store, thing(1, v=[1, 2]), thing(2, v={"0": 1}))
    assert await ids(store, Query(q=q("v[0]==1"))) == ["2"]
    assert await ids(store, Query(q=q("v[0]"))) == ["2"]
    order = expand_order(parse_order_by("v[0];desc"), lambda n: EX + n)
    assert await ids(store, Query(order_by=order)) == ["2", "1"]


async def test_order_ties_equal_numbers_and_puts_json_null_last(store: Any) -> None:
    await load(store, thing(5, v=1), thing(6, v=1.0), thing(7, v=True), thing(8, w={"k": None}),
               thing(9, w={"k": 3}), thing(4, w={"k": "x"}))  # fmt: skip

    async def ordered(spec: str) -> list[str]:
        return await ids(store, Query(order_by=expand_order(parse_order_by(spec), EX.__add__)))

    assert (await ordered("v"))[:3] == (await ordered("v;desc"))[:3] == ["5", "6", "7"]
    assert await ordered("w[k];desc") == ["4", "9", "5", "6", "7", "8"]  # absent: by id
    assert await ordered("w[k]") == ["9", "4", "5", "6", "7", "8"]


async def test_count_with_an_attribute_order(store: Any) -> None:
    await load(store, *(thing(n, v=n) for n in range(1, 6)))
    order = expand_order(parse_order_by("v;desc"), lambda n: EX + n)
    page = await store.query("", Query(order_by=order, count=True, limit=2, q=q("v>1")))
    assert [e["id"][-1] for e in page.entities] == ["5", "4"] and page.count == 4


async def test_geometries_with_altitude_or_nothing_in_them_are_stored(store: Any) -> None:
    from citytwin.model.geo import GeoQuery

    def placed(n: int, value: dict[str, Any]) -> Entity:
        entity = thing(n)
        entity["attrs"][EX + "location"] = [{"type": "GeoProperty", "value": value}]
        return entity

    await load(store, placed(1, {"type": "Point", "coordinates": [121.5, 31.2, 12.0]}),
               placed(2, {"type": "GeometryCollection", "geometries": []}),
               placed(3, {"type": "Point", "coordinates": [100.0, 10.0]}))  # fmt: skip
    box = {"type": "Polygon", "coordinates": [[[121, 31], [122, 31], [122, 32], [121, 32],
                                                [121, 31]]]}  # fmt: skip
    assert await ids(store, Query(geo=GeoQuery("within", box, EX + "location"))) == ["1"]
