"""Resolution, caching and hosting of @context documents (GS CIM 009 5.5.7, 5.13).

The core context is built in and every ETSI core-context URL maps to it, so the broker never needs
the network for it. Remote contexts are fetched once, with a short timeout, and cached; clients can
also upload contexts for the broker to host.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from citytwin.errors import BadRequestData, LdContextNotAvailable, ResourceNotFound
from citytwin.model.context import (
    CORE_CONTEXT_URL,
    Context,
    build_context,
    is_core_context_url,
    load_core_document,
)

MAX_DEPTH = 8
HOSTED, CACHED, IMPLICIT = "Hosted", "Cached", "ImplicitlyCreated"


@dataclass
class ContextEntry:
    """A context document the broker holds: hosted by a client, or cached from its URL."""

    url: str
    local_id: str
    kind: str
    document: dict[str, Any]
    created_at: str = field(default_factory=lambda: _now())
    hits: int = 0
    last_used: str | None = None

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "URL": self.url,
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": self.created_at,
        }
        if self.kind != HOSTED:
            info["lastUsage"] = self.last_used or self.created_at
            info["numberOfHits"] = self.hits
        return info


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ContextResolver:
    """Turns an @context value (URL, object or list of both) into a processed Context."""

    def __init__(self, base_url: str = "", timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.core_document: dict[str, Any] = load_core_document()["@context"]
        self.core = build_context(CORE_CONTEXT_URL, [self.core_document])
        self._processed: dict[bytes, Context] = {}
        self._entries: dict[str, ContextEntry] = {}
        self._by_id: dict[str, str] = {}
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def resolve(self, value: Any) -> Context:
        """Process an @context value; None means the core context alone."""
        if value is None:
            return self.core
        key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        hit = self._processed.get(key)
        if hit is not None:
            return hit
        documents = await self._collect(value, 0)
        documents.append(self.core_document)
        ctx = build_context(value, documents)
        if len(self._processed) > 10_000:
            self._processed.clear()
        self._processed[key] = ctx
        return ctx

    async def _collect(self, value: Any, depth: int) -> list[dict[str, Any]]:
        if depth > MAX_DEPTH:
            raise BadRequestData("@context nests too deeply")
        items = value if isinstance(value, list) else [value]
        documents: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, str):
                if is_core_context_url(item):
                    continue
                documents += await self._collect(await self.document(item), depth + 1)
            elif isinstance(item, dict):
                documents.append(item)
            elif item is not None:
                raise BadRequestData(f"@context entries must be URLs or objects, not {item!r}")
        return documents

    async def document(self, url: str) -> Any:
        """The @context member of the document at url: hosted, cached or fetched now."""
        entry = self._entries.get(url)
        if entry is None:
            entry = await self._fetch(url)
        entry.hits += 1
        entry.last_used = _now()
        return entry.document.get("@context")

    async def _fetch(self, url: str) -> ContextEntry:
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"@context {url} is not an http(s) URL")
        async with self._lock:
            if url in self._entries:
                return self._entries[url]
            document = await self._download(url)
            return self._add(url, uuid.uuid4().hex, CACHED, document)

    async def _download(self, url: str) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        try:
            response = await self._client.get(url, headers={"Accept": "application/ld+json"})
            response.raise_for_status()
            document = orjson.loads(response.content)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            raise LdContextNotAvailable(f"@context {url} could not be retrieved: {exc}") from exc
        if not isinstance(document, dict) or "@context" not in document:
            raise LdContextNotAvailable(f"{url} is not a JSON-LD @context document")
        return document

    def _add(self, url: str, local_id: str, kind: str, document: dict[str, Any]) -> ContextEntry:
        entry = ContextEntry(url=url, local_id=local_id, kind=kind, document=document)
        self._entries[url] = entry
        self._by_id[local_id] = url
        self._processed.clear()
        return entry

    # -- hosting (5.13) ---------------------------------------------------------------------------

    def host(self, document: Any) -> ContextEntry:
        """Store a client's context document and serve it at a broker URL."""
        if not isinstance(document, dict) or not isinstance(document.get("@context"), dict | list):
            raise BadRequestData("a context document is a JSON object with an @context member")
        local_id = uuid.uuid4().hex
        return self._add(self.hosted_url(local_id), local_id, HOSTED, document)

    def hosted_url(self, local_id: str) -> str:
        return f"{self.base_url}/ngsi-ld/v1/jsonldContexts/{local_id}"

    def entries(self, kind: str | None = None) -> list[ContextEntry]:
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def find(self, ident: str) -> ContextEntry:
        url = self._by_id.get(ident, ident)
        entry = self._entries.get(url)
        if entry is None:
            raise ResourceNotFound(f"no @context {ident}")
        return entry

    def delete(self, ident: str) -> None:
        entry = self.find(ident)
        del self._entries[entry.url]
        del self._by_id[entry.local_id]
        self._processed.clear()

    async def reload(self, ident: str) -> None:
        entry = self.find(ident)
        if entry.kind == HOSTED:
            raise BadRequestData("a hosted @context cannot be reloaded")
        entry.document = await self._download(entry.url)
        self._processed.clear()
