"""JSON-LD term expansion and compaction for NGSI-LD (GS CIM 009 4.4, 5.5.7).

A full JSON-LD processor per request is far too slow for a broker, so a context is reduced once to
term maps (term -> IRI, IRI -> term, @vocab, prefixes) and cached. The core context always applies:
its terms are protected and win over user definitions.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
_GEN_DELIMS = (":", "/", "?", "#", "[", "]", "@")


_CORE_URL = re.compile(
    r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v\d+\.\d+)?\.jsonld$"
)


def is_core_context_url(url: str) -> bool:
    """Every ETSI core-context URL (any version) resolves to the built-in core context."""
    return _CORE_URL.match(url) is not None


def link_header(url: str) -> str:
    """A Link header naming a JSON-LD @context (6.3.5)."""
    return f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def load_core_document() -> dict[str, Any]:
    data = importlib.resources.files("citytwin.data") / "ngsi-ld-core-context-v1.9.jsonld"
    return orjson.loads(data.read_bytes())


@dataclass
class Context:
    """A processed @context: enough of JSON-LD to expand and compact NGSI-LD terms."""

    source: Any
    terms: dict[str, str] = field(default_factory=dict)
    vocab_typed: set[str] = field(default_factory=set)
    vocab: str | None = None
    prefixes: dict[str, str] = field(default_factory=dict)
    reverse: dict[str, str] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict, repr=False)
    _expanded: dict[str, str] = field(default_factory=dict, repr=False)
    _compacted: dict[str, str] = field(default_factory=dict, repr=False)

    def expand(self, term: str) -> str:
        """Expand an attribute name or type to an IRI (cached per term)."""
        hit = self._expanded.get(term)
        if hit is None:
            hit = self._expanded[term] = self._expand(term)
        return hit

    def _expand(self, term: str) -> str:
        if term in self.terms:
            return self.terms[term]
        prefix, sep, suffix = term.partition(":")
        if sep:
            if suffix.startswith("//") or prefix not in self.terms:
                return term
            return self.terms[prefix] + suffix
        return self.vocab + term if self.vocab else term

    def compact(self, iri: str) -> str:
        """Compact an IRI to the shortest term the context allows."""
        hit = self._compacted.get(iri)
        if hit is None:
            hit = self._compacted[iri] = self._compact(iri)
        return hit

    def _compact(self, iri: str) -> str:
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if self.vocab and iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and ":" not in rest and rest not in self.terms:
                return rest
        best = iri
        for name, base in self.prefixes.items():
            if iri.startswith(base) and len(iri) > len(base):
                candidate = f"{name}:{iri[len(base) :]}"
                if len(candidate) < len(best) and candidate not in self.terms:
                    best = candidate
        return best


def build_context(source: Any, documents: Iterable[dict[str, Any]]) -> Context:
    """Reduce resolved context objects (in order, core last) to a Context."""
    raw: dict[str, Any] = {}
    vocab: str | None = None
    protected: set[str] = set()
    for doc in documents:
        is_protected = bool(doc.get("@protected"))
        for key, value in doc.items():
            if key == "@vocab":
                vocab = value
            elif key.startswith("@") or (key in protected and not is_protected):
                continue
            else:
                raw[key] = value
                if is_protected:
                    protected.add(key)
    return _finish(source, raw, vocab)


def _finish(source: Any, raw: dict[str, Any], vocab: str | None) -> Context:
    ctx = Context(source=source, vocab=vocab)
    ids: dict[str, str] = {}
    for term, value in raw.items():
        if value is None:
            continue
        if isinstance(value, dict):
            iri = value.get("@id")
            if value.get("@type") == "@vocab":
                ctx.vocab_typed.add(term)
        else:
            iri = value
        if isinstance(iri, str):
            ids[term] = iri
        elif vocab and isinstance(value, dict):
            ids[term] = vocab + term
    ctx.terms = {term: _resolve(iri, ids, vocab) for term, iri in ids.items()}
    for term, iri in sorted(ctx.terms.items(), key=lambda kv: (len(kv[0]), kv[0]), reverse=True):
        if not iri.startswith("@"):
            ctx.reverse[iri] = term
        if isinstance(raw[term], str) and iri.endswith(_GEN_DELIMS) and ":" not in term:
            ctx.prefixes[term] = iri
    return ctx


def _resolve(iri: str, ids: dict[str, str], vocab: str | None, depth: int = 0) -> str:
    if iri.startswith("@") or depth > 8:
        return iri
    prefix, sep, suffix = iri.partition(":")
    if sep:
        if suffix.startswith("//") or prefix not in ids:
            return iri
        return _resolve(ids[prefix], ids, vocab, depth + 1) + suffix
    if iri in ids and ids[iri] != iri:
        return _resolve(ids[iri], ids, vocab, depth + 1)
    return vocab + iri if vocab else iri
