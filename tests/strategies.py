"""Hypothesis strategies shared by the parser and API fuzzers: random and mutated query text."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str], tricky: list[str], min_edits: int = 0) -> str:
    """A valid string with a few random edits: insertions, deletions, replacements, repeats."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(min_edits, 4))):
        i = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        if kind == "insert":
            text = text[:i] + draw(st.sampled_from(tricky)) + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(tricky)) + text[i + 1 :]
        else:
            j = draw(st.integers(i, len(text)))
            text = text[:j] + text[i:j] * draw(st.integers(1, 3)) + text[j:]
    return text
