"""The literal a pattern's matches must hold: checked against re.search on many subjects, since a
wrong literal would make a store drop an entity that matches."""

from __future__ import annotations

import random
import re

import pytest

from citytwin.store.regex_literal import required_literal


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
    assert checked > 500
