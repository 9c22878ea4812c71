"""Query ASTs (model.query) compiled to PostgreSQL SQL over the JSONB documents.

The same rules as the SQLite dialect (store/sql.py): each instance of an attribute is looked at
through the member its type keeps its value in (value, object, languageMap, ...); each value, or
each element of an array, or each member of an object, is compared as the literal's own JSON
type, so that a number never matches a string; strings compare by code point (COLLATE "C", as
SQLite's binary collation does with UTF-8).

Regular expressions (idPattern, `~=`, scope queries) are not compiled: PostgreSQL's dialect is
not Python's. `without_regex` gives a condition the SQL can test instead, true of every entity
the full one is (the store then checks the candidates in Python, with the SQLite dialect).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from citytwin.model.query import All, Any_, Node, OrderKey, Range, Term
from citytwin.store.sql import quote_key

REGEX_OPS = ("idPattern", "scope", "~=", "!~=")
_META = {"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "objectType", "lang"}
_MEMBER = (
    "CASE {sub} ->> 'type' WHEN 'Relationship' THEN 'object'"
    " WHEN 'LanguageProperty' THEN 'languageMap' WHEN 'VocabProperty' THEN 'vocab'"
    " WHEN 'ListProperty' THEN 'valueList' WHEN 'ListRelationship' THEN 'objectList'"
    " WHEN 'JsonProperty' THEN 'json' ELSE 'value' END"
)
# the values a term compares: an array's elements, an object's members, or a scalar itself
_EACH = (
    "jsonb_path_query({t}, CASE jsonb_typeof({t}) WHEN 'object' THEN '$.*'::jsonpath"
    " ELSE 'lax $[*]'::jsonpath END) v(x)"
)
_SQL_OPS = {"==": "=", "!=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


class Params(list[Any]):
    """Parameters of a statement; `add` gives the placeholder of a new one.

    PostgreSQL text cannot hold U+0000: it becomes U+FFFD, as in the stored JSONB copies.
    """

    def add(self, value: Any) -> str:
        self.append(_text(value))
        return f"${len(self)}"


def _text(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value


def has_regex(node: Node | None) -> bool:
    if node is None:
        return False
    if isinstance(node, All | Any_):
        return any(has_regex(p) for p in node.parts)
    return node.op in REGEX_OPS


def without_regex(node: Node) -> Node | None:
    """A condition implied by `node` with no regular expression in it (None: no condition).

    Every negation sits inside a term, so dropping a regex term from a conjunction, or a
    disjunction with one, only ever widens what is selected.
    """
    if isinstance(node, Term):
        return None if node.op in REGEX_OPS else node
    parts = [without_regex(p) for p in node.parts]
    if isinstance(node, Any_):
        return None if any(p is None for p in parts) else Any_(tuple(parts))  # type: ignore[arg-type]
    kept = tuple(p for p in parts if p is not None)
    return All(kept) if kept else None


def compile_node(node: Node, params: Params) -> str:
    """SQL for a regex-free q, type or scope AST; `e` is the entities row."""
    if isinstance(node, All):
        return "(" + " AND ".join(compile_node(p, params) for p in node.parts) + ")"
    if isinstance(node, Any_):
        return "(" + " OR ".join(compile_node(p, params) for p in node.parts) + ")"
    if node.op == "type":
        return f"e.types @> ARRAY[{params.add(node.value)}::text]"
    if node.op == "id":
        return f"e.id = {params.add(node.value)}"
    assert node.op not in REGEX_OPS, "regular expressions are checked in Python"
    return _term(node, params)


def _keys(expr: str, keys: list[str], params: Params) -> str:
    """Object members by name, one `->` each (never an array position, as `#>` would take
    "0" for: SQLite's `$."0"` names a member too)."""
    for key in keys:
        expr = f"({expr} -> {params.add(key)}::text)"
    return expr


def _term(term: Term, params: Params) -> str:
    path = term.path
    for name in (path.attr, *path.sub, *path.keys):
        quote_key(name)  # refuses what SQLite's paths cannot name, so both stores answer alike
    instances = f"jsonb_array_elements(e.doc -> 'attrs' -> {params.add(path.attr)}) i(inst)"
    sub = _keys("i.inst", [s for s in path.sub if s not in _META], params)
    meta = [s for s in path.sub if s in _META]
    member = params.add(meta[-1]) + "::text" if meta else _MEMBER.format(sub=sub)
    target = _keys(f"({sub} -> {member})", list(path.keys), params)
    if term.op is None:
        return f"EXISTS (SELECT 1 FROM {instances} WHERE {target} IS NOT NULL)"
    values = _EACH.format(t=target)
    test = _compare(term, params)
    if term.op == "!=":
        return (
            f"EXISTS (SELECT 1 FROM {instances} WHERE {target} IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {values} WHERE {test}))"
        )
    return f"EXISTS (SELECT 1 FROM {instances} CROSS JOIN LATERAL {values} WHERE {test})"


# SQLite's comparisons, which these follow: a value is compared only with literals of its own
# JSON type (booleans: the same boolean), by SQLite's order of SQL values, in which a boolean is
# 1 or 0 and every number comes before every string.


def _compare(term: Term, params: Params) -> str:
    op, value = term.op, term.value
    if isinstance(value, Range):
        low, high = value.low, value.high
        above = f"{_scalar(low)} >= {_operand(low, params)}"
        if _numeric(low) != _numeric(high):  # a number is below any string
            below = "TRUE" if _numeric(low) else "FALSE"
        else:
            below = f"{_scalar(low)} <= {_operand(high, params)}"
        return f"{_type_test(low)} AND {above} AND {below}"
    if isinstance(value, tuple):
        return "(" + " OR ".join(_equal(v, params) for v in value) + ")"
    if op in ("==", "!="):
        return _equal(value, params)
    operand = _operand(value, params)
    return f"{_type_test(value)} AND {_scalar(value)} {_SQL_OPS[op]} {operand}"  # type: ignore[index]


def _equal(value: Any, params: Params) -> str:
    if isinstance(value, bool):
        return _type_test(value)
    return f"{_type_test(value)} AND {_scalar(value)} = {_operand(value, params)}"


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float)  # booleans too


def _type_test(value: Any) -> str:
    if isinstance(value, bool):
        return f"v.x = '{'true' if value else 'false'}'::jsonb"
    if isinstance(value, int | float):
        return "jsonb_typeof(v.x) = 'number'"
    return "jsonb_typeof(v.x) = 'string'"


def _scalar(value: Any) -> str:
    """The compared value as SQL of the literal's type (numbers exactly, booleans as 1 or 0,
    strings by code point).

    A CASE keeps the cast from running on a value of another type: PostgreSQL does not promise
    to test the type first.
    """
    if isinstance(value, bool):
        return "(CASE WHEN jsonb_typeof(v.x) = 'boolean' THEN (v.x)::boolean::int END)"
    if isinstance(value, int | float):
        return "(CASE WHEN jsonb_typeof(v.x) = 'number' THEN (v.x)::numeric END)"
    return "((v.x #>> '{}') COLLATE \"C\")"


def _operand(value: Any, params: Params) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return params.add(Decimal(repr(value)) if isinstance(value, float) else value) + "::numeric"
    return params.add(str(value)) + "::text"


_ENTITY_ORDER = {
    "id": "e.id",
    "type": 'e.types[1] COLLATE "C"',
    "createdAt": 'e.created_at COLLATE "C"',
    "modifiedAt": 'e.modified_at COLLATE "C"',
}


def order_by(keys: tuple[OrderKey, ...], params: Params) -> str:
    """ORDER BY for 4.23 as in SQLite: entities without the value (or with JSON null) last;
    numbers (and booleans, as 1 and 0) before strings, reversed when descending; equal numbers
    tie, and ties go by id."""
    terms = []
    for key in keys:
        direction = " DESC" if key.descending else ""
        if key.entity_member:
            terms.append(_ENTITY_ORDER[key.path.attr] + direction)
            continue
        value = _first_value(key, params)
        kind = f"jsonb_typeof({value})"
        terms += [
            f"coalesce({kind}, 'null') = 'null'",
            f"(CASE WHEN {kind} IN ('number', 'boolean') THEN 0"
            f" WHEN {kind} IN ('string', 'object', 'array') THEN 1 END){direction}",
            f"(CASE {kind} WHEN 'number' THEN ({value})::numeric"
            f" WHEN 'boolean' THEN ({value})::boolean::int END){direction}",
            f"(CASE WHEN {kind} IN ('string', 'object', 'array')"
            f" THEN ({value}) #>> '{{}}' END) COLLATE \"C\"{direction}",
        ]
    return ", ".join([*terms, "e.id"])


def _first_value(key: OrderKey, params: Params) -> str:
    """The value of an attribute's first instance (its meta-member, or a key into it)."""
    path = key.path
    first = _keys(f"(e.doc -> 'attrs' -> {params.add(path.attr)} -> 0)",
                  [s for s in path.sub if s not in _META], params)  # fmt: skip
    meta = [s for s in path.sub if s in _META]
    if meta:
        return _keys(first, [meta[-1]], params)
    value = _keys(first, ["value", *path.keys], params)
    return f"coalesce({value}, {_keys(first, ['object', *path.keys], params)})"


def attr_exists(attrs: frozenset[str], params: Params) -> str:
    """The entity has one of these attributes."""
    return f"(e.doc -> 'attrs') ?| {params.add(sorted(attrs))}::text[]"
