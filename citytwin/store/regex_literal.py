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


def id_conditions(column: str, pattern: str, contains: str) -> list[tuple[str, str]]:
    """SQL tests on a text id `column` that every id the pattern matches passes, each with `{}`
    where its value goes: a range for a prefix (the id index's), else the dialect's substring
    function `contains` (instr, strpos)."""
    found = required_literal(pattern)
    if found is None:
        return []
    literal, anchored = found
    if not anchored:
        return [(f"{contains}({column}, {{}}) > 0", literal)]
    low, high = prefix_bounds(literal)
    tests = [(f"{column} >= {{}}", low)]
    return tests + [(f"{column} < {{}}", high)] if high is not None else tests
