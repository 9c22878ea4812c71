"""The NGSI-LD query language (GS CIM 009 4.9), scope queries (4.19) and type expressions.

Parsers turn query strings into small ASTs; the store compiles them to SQL. Errors name the
offending part of the string and are BadRequestData (the API answers 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from citytwin.errors import BadRequestData

# -- AST -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """What a term looks at: attribute, sub-attributes (a.b), then keys into the value (a[k])."""

    attr: str
    sub: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Range:
    low: Any
    high: Any


@dataclass(frozen=True)
class Term:
    """One comparison; op None tests that the attribute exists."""

    path: Path
    op: str | None = None
    value: Any = None


@dataclass(frozen=True)
class All:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    parts: tuple[Node, ...]


Node = Term | All | Any_

MEMBERS = ("observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "objectType", "lang")
_OP = re.compile(r"!~=|~=|==|!=|>=|<=|>|<")
_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"-?\d{1,4300}$")
_UNQUOTED = re.compile(r"^[^=!<>~]")
_NAME_STOP = set("=!<>~;|()[].,")
_MAX_DEPTH = 32
Leaf = Callable[["_Parser"], Node]

# -- q ---------------------------------------------------------------------------------------------


def parse_q(text: str) -> Node:
    """4.9: terms joined by ; (and) and | (or), with brackets; and binds tighter than or."""
    parser = _Parser(text)
    return parser.whole(parser.expression(_Parser.term, "|", 0))


class _Parser:
    def __init__(self, text: str, what: str = "q") -> None:
        if not text:
            raise BadRequestData(f"{what} is empty")
        self.text = text
        self.what = what
        self.pos = 0

    def fail(self, why: str) -> None:
        shown = self.text[: self.pos] + " >>" + self.text[self.pos :]
        raise BadRequestData(f"invalid {self.what} at position {self.pos} ({why}): {shown}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def whole(self, node: Node) -> Node:
        if self.pos != len(self.text):
            self.fail("unexpected text")
        return node

    def expression(self, leaf: Leaf, ors: str, depth: int) -> Node:
        """Leaves joined by ; (and) and any of `ors` (or), with brackets; and binds tighter."""
        if depth > _MAX_DEPTH:
            self.fail("brackets nest too deeply")
        alternatives = [self.conjunction(leaf, ors, depth)]
        while self.peek() and self.peek() in ors:
            self.pos += 1
            alternatives.append(self.conjunction(leaf, ors, depth))
        return alternatives[0] if len(alternatives) == 1 else Any_(tuple(alternatives))

    def conjunction(self, leaf: Leaf, ors: str, depth: int) -> Node:
        parts = [self.factor(leaf, ors, depth)]
        while self.peek() == ";":
            self.pos += 1
            parts.append(self.factor(leaf, ors, depth))
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def factor(self, leaf: Leaf, ors: str, depth: int) -> Node:
        if self.peek() == "(":
            self.pos += 1
            node = self.expression(leaf, ors, depth + 1)
            if self.peek() != ")":
                self.fail("missing )")
            self.pos += 1
            return node
        return leaf(self)

    def until(self, stops: str) -> str:
        """The text up to the next stop character."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def term(self) -> Term:
        path = self.path()
        match = _OP.match(self.text, self.pos)
        if match is None:
            if self.peek() not in ("", ";", "|", ")"):
                self.fail("expected an operator")
            return Term(path)
        op = match.group()
        self.pos = match.end()
        if op in ("~=", "!~="):
            return Term(path, op, self.pattern())
        return Term(path, op, self.value(op))

    def path(self) -> Path:
        attr = self.name()
        sub: list[str] = []
        keys: list[str] = []
        while self.peek() in (".", "["):
            if self.peek() == ".":
                self.pos += 1
                sub.append(self.name())
            else:
                self.pos += 1
                keys.append(self.name())
                if self.peek() != "]":
                    self.fail("missing ]")
                self.pos += 1
        return Path(attr, tuple(sub), tuple(keys))

    def name(self) -> str:
        start = self.pos
        text = self.text
        iri = False  # a full IRI (scheme://...) may contain dots
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == ":" and text.startswith("//", self.pos + 1):
                iri = True
                self.pos += 3
                continue
            if (ch in _NAME_STOP and not (iri and ch == ".")) or ch.isspace():
                break
            self.pos += 1
        if self.pos == start:
            self.fail("expected an attribute name")
        return text[start : self.pos]

    def pattern(self) -> str:
        """A regular expression: quoted (may then hold ; | and brackets), or up to the next one."""
        start = self.pos
        if self.peek() == '"':
            raw = self.quoted()
        else:
            end = len(self.text)
            for stop in (";", "|", ")"):
                found = self.text.find(stop, self.pos)
                if found >= 0:
                    end = min(end, found)
            raw = self.text[self.pos : end]
            self.pos = end
        why = regex_error(raw)
        if why is not None:
            self.pos = start
            self.fail(f"invalid regular expression: {why}")
        return raw

    def value(self, op: str) -> Any:
        first = self.scalar()
        if self.text.startswith("..", self.pos):
            self.pos += 2
            if op not in ("==", "!="):
                self.fail("a range needs == or !=")
            return Range(first, self.scalar())
        if self.peek() == ",":
            if op not in ("==", "!="):
                self.fail("a list of values needs == or !=")
            values = [first]
            while self.peek() == ",":
                self.pos += 1
                values.append(self.scalar())
            return tuple(values)
        return first

    def scalar(self) -> Any:
        if self.peek() == '"':
            return self.quoted()
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in ";|),":
            if text.startswith("..", self.pos):
                break
            self.pos += 1
        raw = text[start : self.pos]
        if not raw:
            self.fail("expected a value")
        value = _literal(raw)
        if isinstance(value, str) and not _UNQUOTED.match(value):
            self.pos = start
            self.fail("a value cannot start with an operator character")
        return value

    def quoted(self) -> str:
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if ch == '"':
                return "".join(out)
            out.append(ch)
        self.fail("unterminated string")
        return ""


def _literal(raw: str) -> Any:
    if raw == "true":
        return True
    if raw == "false":
        return False
    if _INTEGER.match(raw):
        return int(raw)
    if _NUMBER.match(raw):
        return float(raw)
    return raw  # a DateTime, Date, Time or URI: compared as text


def regex_error(pattern: str) -> str | None:
    """Why a regular expression cannot be used, or None. Any failure of the compiler counts:
    huge repeat counts overflow and deep nesting recurses, beyond re.error."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def expand(node: Node, expand_name: Any) -> Node:
    """The same query with attribute, sub-attribute and type names expanded to IRIs."""
    if isinstance(node, Term):
        if node.op in ("scope", "id", "idPattern"):
            return node
        if node.op == "type":
            return Term(node.path, "type", expand_name(node.value))
        path = node.path
        sub = tuple(s if s in MEMBERS else expand_name(s) for s in path.sub)
        return Term(Path(expand_name(path.attr), sub, path.keys), node.op, node.value)
    parts = tuple(expand(p, expand_name) for p in node.parts)
    return All(parts) if isinstance(node, All) else Any_(parts)


def expand_values(node: Node, attrs: frozenset[str], expand_name: Any) -> Node:
    """4.9 expandValues: text values compared with these attributes are IRIs in compact form."""
    if isinstance(node, Term):
        if node.path.attr not in attrs or node.op in (None, "~=", "!~="):
            return node
        return Term(node.path, node.op, _expanded(node.value, expand_name))
    parts = tuple(expand_values(p, attrs, expand_name) for p in node.parts)
    return All(parts) if isinstance(node, All) else Any_(parts)


def _expanded(value: Any, expand_name: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_expanded(v, expand_name) for v in value)
    return expand_name(value) if isinstance(value, str) else value


# -- type expressions ------------------------------------------------------------------------------


def parse_types(text: str) -> Node:
    """Entity type selection (4.17): `,` and `|` are or, `;` is and, with brackets.

    The AST reuses Term with op "type" and the (compact) type name as value.
    """
    if not text.strip():
        raise BadRequestData("type is empty")  # also catches blanks, which _Parser would take
    parser = _Parser(text, "type")
    return parser.whole(parser.expression(_type_name, ",|", 0))


def type_names(node: Node) -> list[str]:
    """Every type a type expression names (a subscription matches any of them)."""
    if isinstance(node, Term):
        return [node.value]
    return [name for part in node.parts for name in type_names(part)]


def _type_name(parser: _Parser) -> Node:
    name = parser.until(";|,()").strip()
    if not name:
        parser.fail("expected a type name")
    return Term(Path(name), "type", name)


# -- scopeQ ----------------------------------------------------------------------------------------

_SCOPE = re.compile(r"^/(#|\+|[^/#+\s;|()]+)?(/(#|\+|[^/#+\s;|()]+))*$")


def parse_scope_q(text: str) -> Node:
    """4.19: scope patterns (/a/b, /a/+, /a/#, /#) joined by ; and | (or ,) with brackets."""
    parser = _Parser(text, "scopeQ")
    return parser.whole(parser.expression(_scope_pattern, "|,", 0))


def _scope_pattern(parser: _Parser) -> Node:
    pattern = parser.until(";|,()")
    if not _SCOPE.match(pattern):
        parser.fail(f"invalid scope pattern {pattern!r}")
    return Term(Path("scope"), "scope", pattern)


def scope_regex(pattern: str) -> str:
    """A scope pattern as a regular expression over scope strings (+: one level, #: any)."""
    if pattern == "/#":
        return r"^/.*$"
    parts = []
    for level in pattern.strip("/").split("/"):
        parts.append({"+": "[^/]+", "#": ".*"}.get(level, re.escape(level)))
    regex = "^/" + "/".join(parts)
    return regex[:-3] + "(/.*)?$" if regex.endswith("/.*") else regex + "$"


# -- orderBy ---------------------------------------------------------------------------------------

ENTITY_KEYS = ("id", "type", "createdAt", "modifiedAt")
DISTANCE = "geo:distance"  # the distance to a near geo-query's geometry


@dataclass(frozen=True)
class OrderKey:
    """4.23: sort by an entity member (id, type, createdAt, modifiedAt) or an attribute path."""

    path: Path
    descending: bool = False

    @property
    def entity_member(self) -> bool:
        return not self.path.sub and not self.path.keys and self.path.attr in ENTITY_KEYS

    @property
    def distance(self) -> bool:
        return self.path == Path(DISTANCE)


def parse_order_by(text: str) -> tuple[OrderKey, ...]:
    """`path[;asc|;desc]`, comma-separated; paths as in q (a, a.b, a.observedAt, a[k])."""
    keys = []
    for item in text.split(","):
        spec, _, direction = item.partition(";")
        if direction not in ("", "asc", "desc"):
            raise BadRequestData(f"orderBy direction must be asc or desc, not {direction!r}")
        parser = _Parser(spec.strip(), "orderBy")
        path = parser.path()
        if parser.pos != len(parser.text):
            parser.fail("unexpected text in orderBy")
        keys.append(OrderKey(path, direction == "desc"))
    return tuple(keys)


def expand_order(keys: tuple[OrderKey, ...], expand_name: Any) -> tuple[OrderKey, ...]:
    out = []
    for key in keys:
        if key.entity_member or key.distance:
            out.append(key)
            continue
        term = expand(Term(key.path), expand_name)
        assert isinstance(term, Term)
        out.append(OrderKey(term.path, key.descending))
    return tuple(out)
