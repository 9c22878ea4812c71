"""pick and omit (GS CIM 009 4.21): which entity members a response shows, also of linked ones.

    pick=id,name,locatedAt{name,population}    omit=location

A name may carry braces naming the members to show of the entities it links to (with join).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from citytwin.errors import BadRequestData

_NAME = re.compile(r"[^\s,{}<>\"'=;()\\]+")
_MAX_DEPTH = 16


@dataclass(frozen=True)
class Projection:
    """Member names at this level, and projections for the entities an attribute links to."""

    names: frozenset[str]
    linked: dict[str, Projection] = field(default_factory=dict, hash=False, compare=False)

    def __contains__(self, name: str) -> bool:
        return name in self.names


def parse_projection(text: str, what: str = "pick") -> Projection:
    parser = _Parser(text, what)
    projection = parser.members()
    if parser.pos != len(text):
        parser.fail("unexpected '}'" if parser.peek() == "}" else "unexpected character")
    return projection


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text, self.what, self.pos = text, what, 0
        if not text:
            self.fail("empty")

    def fail(self, why: str) -> None:
        raise BadRequestData(f"invalid {self.what} at position {self.pos} ({why}): {self.text}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def members(self, depth: int = 0) -> Projection:
        if depth > _MAX_DEPTH:
            self.fail("braces nest too deeply")
        names: list[str] = []
        linked: dict[str, Projection] = {}
        while True:
            match = _NAME.match(self.text, self.pos)
            if match is None:
                self.fail("expected a member name")
                break
            name = match.group()
            names.append(name)
            self.pos = match.end()
            if self.peek() == "{":
                self.pos += 1
                linked[name] = self.members(depth + 1)
                if self.peek() != "}":
                    self.fail("unclosed '{'")
                self.pos += 1
            if self.peek() != ",":
                return Projection(frozenset(names), linked)
            self.pos += 1
