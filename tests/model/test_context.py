"""The term resolver against pyld, a full JSON-LD processor, as the oracle."""

from __future__ import annotations

from typing import Any

import pytest
from pyld import jsonld

from citytwin.model.context import build_context, load_core_document

CORE = load_core_document()["@context"]
USER = {
    "schema": "https://schema.org/",
    "Building": "https://smart.city/Building",
    "name": "schema:name",
    "height": {"@id": "https://smart.city/height", "@type": "xsd:float"},
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}


def _loader(url: str, options: Any = None) -> dict[str, Any]:
    raise AssertionError(f"no network: {url}")


def oracle_expand(term: str) -> str:
    # ngsildproof's scoped context names a remote security vocabulary: left out, no network here
    core = {k: v for k, v in CORE.items() if k != "ngsildproof"}
    doc = {"@context": [USER, core], term: "v"}
    expanded = jsonld.expand(doc, {"documentLoader": _loader})
    return next(iter(expanded[0]))


@pytest.mark.parametrize(
    "term", ["name", "height", "Building", "speed", "schema:address", "location", "ngsi-ld:foo"]
)
def test_expand_matches_pyld(term: str) -> None:
    ctx = build_context("test", [USER, CORE])
    assert ctx.expand(term) == oracle_expand(term)


@pytest.mark.parametrize(
    ("iri", "term"),
    [
        ("https://schema.org/name", "name"),
        ("https://smart.city/height", "height"),
        ("https://uri.etsi.org/ngsi-ld/default-context/speed", "speed"),
        ("https://schema.org/address", "schema:address"),
        ("https://uri.etsi.org/ngsi-ld/location", "location"),
        ("https://other.org/x", "https://other.org/x"),
    ],
)
def test_compact_round_trips(iri: str, term: str) -> None:
    ctx = build_context("test", [USER, CORE])
    assert ctx.compact(iri) == term
    assert ctx.expand(term) == iri


def test_core_terms_are_protected() -> None:
    ctx = build_context("test", [{"location": "https://evil.org/location"}, CORE])
    assert ctx.expand("location") == "https://uri.etsi.org/ngsi-ld/location"


def test_taken_term_falls_back_to_prefix() -> None:
    ctx = build_context("test", [{"speed": "https://smart.city/speed"}, CORE])
    iri = "https://uri.etsi.org/ngsi-ld/default-context/speed"
    assert ctx.compact(iri) == "ngsi-ld:default-context/speed"
    assert ctx.expand("ngsi-ld:default-context/speed") == iri
