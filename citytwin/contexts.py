"""Resolution, caching and hosting of @context documents (GS CIM 009 5.5.7, 5.13).

The core context is built in and every ETSI core-context URL maps to it, so the broker never needs
the network for it. Remote contexts are fetched once, with a short timeout, and cached; clients can
also upload contexts for the broker to host, and a URL naming one of the broker's own
/jsonldContexts/{id} resources is resolved locally, whatever host it was spelled with.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from citytwin.errors import BadRequestData, InvalidRequest, LdContextNotAvailable, ResourceNotFound
from citytwin.model.context import (
    CORE_CONTEXT_URL,
    Context,
    build_context,
    is_core_context_url,
    load_core_document,
)
from citytwin.model.times import now_iso

MAX_DEPTH = 8
HOSTED, CACHED, IMPLICIT = "Hosted", "Cached", "ImplicitlyCreated"
PATH = "/ngsi-ld/v1/jsonldContexts/"


@dataclass
class ContextEntry:
    """A context document the broker holds: hosted for a client, implicit, or cached."""

    url: str
    local_id: str
    kind: str
    document: dict[str, Any]
    created_at: str = field(default_factory=now_iso)
    hits: int = 0
    last_used: str | None = None

    def details(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "URL": self.url,
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": self.created_at,
        }
        if self.kind != HOSTED:  # usage is only meaningful for what the broker cached itself
            info["lastUsage"] = self.last_used or self.created_at
            info["numberOfHits"] = self.hits
        return info

    def hit(self) -> None:
        self.hits += 1
        self.last_used = now_iso()


@dataclass
class _Processed:
    context: Context
    urls: list[str]


class ContextResolver:
    """Turns an @context value (URL, object or list of both) into a processed Context."""

    def __init__(self, base_url: str = "", timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.core_document = load_core_document()
        self.core = build_context(CORE_CONTEXT_URL, [self.core_document["@context"]])
        self._processed: dict[bytes, _Processed] = {}
        self._entries: dict[str, ContextEntry] = {}
        self._by_id: dict[str, str] = {}
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        self._add(CORE_CONTEXT_URL, "core", CACHED, self.core_document)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    # -- resolution --------------------------------------------------------------------------------

    async def resolve(self, value: Any, hit: bool = True) -> Context:
        """Process an @context value; None means the core context alone.

        hit=False for the broker's own use (rebuilding subscriptions), which is not a use by a
        client and so does not count in numberOfHits.
        """
        if value is None:
            return self.core
        key = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        processed = self._processed.get(key)
        if processed is None:
            urls: list[str] = []
            documents = await self._collect(value, 0, urls)
            documents.append(self.core_document["@context"])
            processed = _Processed(build_context(value, documents), urls)
            if len(self._processed) > 10_000:
                self._processed.clear()
            self._processed[key] = processed
        for url in processed.urls if hit else ():
            entry = self._entries.get(url)
            if entry is not None:
                entry.hit()
        return processed.context

    async def _collect(self, value: Any, depth: int, urls: list[str]) -> list[dict[str, Any]]:
        if depth > MAX_DEPTH:
            raise BadRequestData("@context nests too deeply")
        items = value if isinstance(value, list) else [value]
        documents: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, str):
                if is_core_context_url(item):
                    continue
                entry = await self.entry_for(item)
                urls.append(entry.url)
                documents += await self._collect(entry.document.get("@context"), depth + 1, urls)
            elif isinstance(item, dict):
                documents.append(item)
            elif item is not None:
                raise BadRequestData(f"@context entries must be URLs or objects, not {item!r}")
        return documents

    async def entry_for(self, url: str) -> ContextEntry:
        """The entry for a context URL: one of ours, already cached, or fetched now."""
        local = self._local(url)
        if local is not None:
            return local
        entry = self._entries.get(url)
        if entry is not None:
            return entry
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"@context {url} is not an http(s) URL")
        async with self._lock:
            if url not in self._entries:
                self._add(url, uuid.uuid4().hex, CACHED, await self._download(url))
            return self._entries[url]

    def _local(self, url: str) -> ContextEntry | None:
        _, sep, ident = url.rpartition("/jsonldContexts/")
        if not sep or ident not in self._by_id:
            return None
        entry = self._entries[self._by_id[ident]]
        return entry if entry.kind != CACHED else None

    async def _download(self, url: str) -> dict[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        try:
            response = await self._client.get(url, headers={"Accept": "application/ld+json"})
            response.raise_for_status()
            document = orjson.loads(response.content)
        except (httpx.HTTPError, httpx.InvalidURL, orjson.JSONDecodeError) as exc:
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

    # -- management (5.13) -------------------------------------------------------------------------

    def host(self, document: Any) -> ContextEntry:
        """5.13.2: store a client's context document and serve it at a broker URL."""
        if not isinstance(document, dict) or not isinstance(document.get("@context"), dict | list):
            raise InvalidRequest("a context document is a JSON object with an @context member")
        return self._new_local(HOSTED, document)

    def implicit(self, value: Any) -> str:
        """A URL for an inline @context, so that it can be named in a Link header later."""
        if isinstance(value, str):
            return value
        for entry in self._entries.values():
            if entry.kind == IMPLICIT and entry.document.get("@context") == value:
                return entry.url
        return self._new_local(IMPLICIT, {"@context": value}).url

    def _new_local(self, kind: str, document: dict[str, Any]) -> ContextEntry:
        local_id = uuid.uuid4().hex
        return self._add(self.base_url + PATH + local_id, local_id, kind, document)

    def entries(self, kind: str | None = None) -> list[ContextEntry]:
        return [e for e in self._entries.values() if kind is None or e.kind == kind]

    def find(self, ident: str) -> ContextEntry:
        """By local id, by URL, or (for the core context) by any core-context URL."""
        url = CORE_CONTEXT_URL if is_core_context_url(ident) else self._by_id.get(ident, ident)
        entry = self._entries.get(url) or self._local(ident)
        if entry is None:
            raise ResourceNotFound(f"no @context {ident}")
        return entry

    def delete(self, ident: str) -> None:
        """5.13.5: forget a context; the core context stays."""
        entry = self.find(ident)
        if entry.url == CORE_CONTEXT_URL:
            raise BadRequestData("the core @context cannot be deleted")
        del self._entries[entry.url]
        del self._by_id[entry.local_id]
        self._processed.clear()

    async def reload(self, ident: str) -> None:
        """5.13.5 with reload=true: fetch a cached context anew; it stays as it was on failure."""
        try:
            entry = self.find(ident)
        except ResourceNotFound as exc:
            raise BadRequestData(f"no cached @context {ident} to reload") from exc
        if entry.kind != CACHED:
            raise BadRequestData(f"a {entry.kind} @context cannot be reloaded")
        if entry.url == CORE_CONTEXT_URL:
            entry.document = self.core_document
        else:
            entry.document = await self._download(entry.url)
        self._processed.clear()
