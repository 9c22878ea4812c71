"""A literal every match of a regular expression holds, for a store to narrow its candidates
before the exact test (Python's `re.search`, as queries mean it) judges each one.

Only what is certain is told: the run of plain characters the pattern begins with, and whether
it must begin the subject (after `^` or `\\A`). A character that a quantifier follows ends the
run (`*`, `?` and `{` make it optional; after `+` it is required, but what follows is not next
to it). An alternation anywhere, a group, a class, an inline flag or an escape other than of
punctuation ends the run, or gives nothing. Narrowing by a literal the matches hold only ever
keeps every match.
"""

from __future__ import annotations

from dataclasses import dataclass

_META = set(".^$*+?{}[]\\|()")


def required_literal(pattern: str) -> tuple[str, bool] | None:
    """(literal, anchored at the start) or None."""
    if "|" in pattern:
        return None
    anchored = pattern.startswith(("^", "\\A"))
    i = 1 if pattern.startswith("^") else 2 if anchored else 0
    run: list[str] = []
    while i < len(pattern):
        char, step = _plain(pattern, i)
        if char is None:
            break
        after = pattern[i + step : i + step + 1]
        if after and after in "*?{":
            break
        run.append(char)
        i += step
        if after == "+":
            break
    return ("".join(run), anchored) if run else None


def _plain(pattern: str, i: int) -> tuple[str | None, int]:
    """The literal character at i and its length in the pattern (None: not a literal)."""
    char = pattern[i]
    if char == "\\":
        escaped = pattern[i + 1 : i + 2]
        if escaped and escaped.isascii() and not escaped.isalnum() and not escaped.isspace():
            return escaped, 2
        return None, 0
    return (None, 0) if char in _META else (char, 1)


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high) holding exactly the strings that start with `prefix`, in code point order
    (SQLite's BINARY and PostgreSQL's "C" collations: UTF-8 bytes); high is None if there is
    no string above them all."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last == 0xD800:  # past the surrogates, which no UTF-8 string holds
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix, "".join(chars) + chr(last)
    return prefix, None


@dataclass(frozen=True)
class Narrowing:
    """What every id a pattern matches meets: low <= id < high (None: no such bound), or `part`
    within it."""

    low: str | None = None
    high: str | None = None
    part: str | None = None


def narrowing(pattern: str) -> Narrowing | None:
    found = required_literal(pattern)
    if found is None:
        return None
    literal, anchored = found
    return Narrowing(*prefix_bounds(literal)) if anchored else Narrowing(part=literal)
