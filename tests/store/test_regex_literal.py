"""The literal a pattern's matches must hold: checked against re.search on many subjects, since a
wrong literal would make a store drop an entity that matches."""

from __future__ import annotations

import random
import re

import pytest

from citytwin.store.regex_literal import prefix_bounds, required_literal


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("^urn:ngsi-ld:Vehicle:", ("urn:ngsi-ld:Vehicle:", True)),
        ("urn:ngsi-ld:Vehicle:.*", ("urn:ngsi-ld:Vehicle:", False)),
        ("\\Aurn:x\\.y", ("urn:x.y", True)),
        ("^ab*c", ("a", True)),
        ("^ab+c", ("ab", True)),
        ("ab?c", ("a", False)),
        ("ab{2}c", ("a", False)),
        ("^(?i)abc", None),
        ("(?i)abc", None),
        ("abc|xyz", None),
        ("[ab]c", None),
        ("^\\dabc", None),
        (".*", None),
        ("", None),
        ("^", None),
    ],
)
def test_literals_of_patterns(pattern: str, expected: tuple[str, bool] | None) -> None:
    assert required_literal(pattern) == expected


def test_every_match_holds_the_literal() -> None:
    rng = random.Random(5)
    pieces = ["a", "b", "ab", ".", "*", "+", "?", "^", "\\.", "\\d", "[ab]", "(a|b)", "{2}", ":"]
    alphabet = "ab.:1"
    checked = 0
    for _ in range(3000):
        pattern = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        try:
            compiled = re.compile(pattern)
        except re.error:
            continue
        found = required_literal(pattern)
        if found is None:
            continue
        literal, anchored = found
        for _ in range(40):
            subject = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            if compiled.search(subject):
                checked += 1
                assert literal in subject, (pattern, subject)
                assert not anchored or subject.startswith(literal), (pattern, subject)
                low, high = prefix_bounds(literal)
                inside = low <= subject and (high is None or subject < high)
                assert inside or not anchored, (pattern, subject)
    assert checked > 500


def test_prefix_bounds_hold_exactly_the_strings_starting_with_the_prefix() -> None:
    assert prefix_bounds("urn:x:") == ("urn:x:", "urn:x;")
    assert prefix_bounds("a\ud7ff") == ("a\ud7ff", "a\ue000")  # no surrogate in UTF-8
    assert prefix_bounds("a\U0010ffff") == ("a\U0010ffff", "b")
    assert prefix_bounds("\U0010ffff") == ("\U0010ffff", None)
    low, high = prefix_bounds("ab")
    inside = ["ab", "ab\x00", "ab\U0010ffff", "abz"]
    outside = ["a", "aa\U0010ffff", "ac", "b", "\U0010ffff"]
    encoded = lambda s: s.encode()  # noqa: E731 (the stores compare UTF-8 bytes)
    assert all(encoded(low) <= encoded(s) < encoded(high) for s in inside)
    assert not any(encoded(low) <= encoded(s) < encoded(high) for s in outside)
