"""Query ASTs (model.query, model.geo) compiled to SQLite SQL over the stored documents.

Attribute instances are reached with json_each over `$.attrs."<IRI>"`; the value member depends
on the instance's type (value, object, languageMap, ...), so it is chosen with a CASE. Each value
(or each element of an array value, or each language of a languageMap) is compared with the
literal's own JSON type, so that a number never matches a string.
"""

from __future__ import annotations

import re
from typing import Any

from citytwin.errors import BadRequestData
from citytwin.model.query import All, Any_, Node, OrderKey, Range, Term, scope_regex

_VALUE_MEMBER = (
    "CASE json_extract({src}, '{base}.type')"
    " WHEN 'Relationship' THEN '{base}.object'"
    " WHEN 'LanguageProperty' THEN '{base}.languageMap'"
    " WHEN 'VocabProperty' THEN '{base}.vocab'"
    " WHEN 'ListProperty' THEN '{base}.valueList'"
    " WHEN 'ListRelationship' THEN '{base}.objectList'"
    " WHEN 'JsonProperty' THEN '{base}.json'"
    " ELSE '{base}.value' END"
)
_META = {"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "objectType", "lang"}
_SQL_OPS = {"==": "=", "!=": "=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


_UNQUOTABLE = re.compile(r"[\"'\\\x00-\x1f\x7f]")


def quote_key(name: str) -> str:
    """A JSON path key, to be embedded in SQL text: quotes, backslashes, controls are refused."""
    if _UNQUOTABLE.search(name):
        raise BadRequestData(f"unsupported character in name {name!r}")
    return '"' + name + '"'


def attr_path(iri: str) -> str:
    return "$.attrs." + quote_key(iri)


def compile_node(node: Node, params: list[Any], tenant: str) -> str:
    """SQL for a q, type or scope AST; `e` is the entities row."""
    if isinstance(node, All):
        return "(" + " AND ".join(compile_node(p, params, tenant) for p in node.parts) + ")"
    if isinstance(node, Any_):
        return "(" + " OR ".join(compile_node(p, params, tenant) for p in node.parts) + ")"
    if node.op == "type":  # an index probe per row: cheap where other conditions drive
        params.extend((tenant, node.value))
        return (
            "EXISTS (SELECT 1 FROM entity_types x"
            " WHERE x.tenant = ? AND x.type = ? AND x.id = e.id)"
        )
    if node.op == "id":
        params.append(node.value)
        return "e.id = ?"
    if node.op == "idPattern":
        params.append(node.value)
        return "regexp(?, e.id)"
    if node.op == "scope":
        params.append(scope_regex(node.value))
        return "EXISTS (SELECT 1 FROM json_each(e.doc, '$.scope') s WHERE regexp(?, s.value))"
    return _term(node, params)


def _term(term: Term, params: list[Any]) -> str:
    path = term.path
    params.append(attr_path(path.attr))
    instances = "json_each(e.doc, ?) i"
    base = "$" + "".join("." + quote_key(s) for s in path.sub if s not in _META)
    meta = [s for s in path.sub if s in _META]
    if meta:
        target = f"'{base}.{meta[-1]}'"
    else:
        target = _VALUE_MEMBER.format(src="i.value", base=base)
    if path.keys:
        target += " || '" + "".join("." + quote_key(k) for k in path.keys) + "'"
    if term.op is None:
        return f"EXISTS (SELECT 1 FROM {instances} WHERE json_type(i.value, {target}) IS NOT NULL)"
    values = f"json_each(i.value, {target}) v"
    test = _compare(term, params)
    if term.op in ("!=", "!~="):
        return (
            f"EXISTS (SELECT 1 FROM {instances} WHERE json_type(i.value, {target}) IS NOT NULL"
            f" AND NOT EXISTS (SELECT 1 FROM {values} WHERE {test}))"
        )
    return f"EXISTS (SELECT 1 FROM {instances}, {values} WHERE {test})"


def _compare(term: Term, params: list[Any]) -> str:
    op, value = term.op, term.value
    if op in ("~=", "!~="):
        params.append(value)
        return "v.type = 'text' AND regexp(?, v.value)"
    if isinstance(value, Range):
        params.extend((_bindable(value.low), _bindable(value.high)))
        return f"{_type_test(value.low)} AND v.value BETWEEN ? AND ?"
    if isinstance(value, tuple):
        tests = [_equal(v, params) for v in value]
        return "(" + " OR ".join(tests) + ")"
    if op in ("==", "!="):
        return _equal(value, params)
    params.append(_bindable(value))
    return f"{_type_test(value)} AND v.value {_SQL_OPS[op]} ?"  # type: ignore[index]


def _equal(value: Any, params: list[Any]) -> str:
    if isinstance(value, bool):
        return f"v.type = '{'true' if value else 'false'}'"
    params.append(_bindable(value))
    return f"{_type_test(value)} AND v.value = ?"


def _bindable(value: Any) -> Any:
    """SQLite integers are 64-bit; a larger literal is compared as a float, as JSON would."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _type_test(value: Any) -> str:
    if isinstance(value, bool):
        return f"v.type = '{'true' if value else 'false'}'"
    if isinstance(value, int | float):
        return "v.type IN ('integer', 'real')"
    return "v.type = 'text'"


_ENTITY_ORDER = {
    "id": "e.id",
    "type": "json_extract(e.types, '$[0]')",
    "createdAt": "e.created_at",
    "modifiedAt": "e.modified_at",
}


def order_by(keys: tuple[OrderKey, ...]) -> str:
    """ORDER BY for 4.23: entities without the attribute come last; ties by id."""
    terms = []
    for key in keys:
        direction = " DESC" if key.descending else ""
        if key.entity_member:
            terms.append(_ENTITY_ORDER[key.path.attr] + direction)
            continue
        value = _first_value(key)
        terms.append(f"({value}) IS NULL, {value}{direction}")
    return ", ".join([*terms, "e.id"])


def _first_value(key: OrderKey) -> str:
    path = key.path
    base = attr_path(path.attr) + "[0]"
    base += "".join("." + quote_key(s) for s in path.sub if s not in _META)
    meta = [s for s in path.sub if s in _META]
    keys = "".join("." + quote_key(k) for k in path.keys)
    if meta:
        return f"json_extract(e.doc, '{base}.{meta[-1]}')"
    return (
        f"coalesce(json_extract(e.doc, '{base}.value{keys}'),"
        f" json_extract(e.doc, '{base}.object{keys}'))"
    )
