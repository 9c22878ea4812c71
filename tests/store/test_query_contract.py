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
