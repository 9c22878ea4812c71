"""Content negotiation, @context, tenant and body handling (GS CIM 009 6.3.4-6.3.6, 4.14).

Requests name their @context by a Link header (with application/json bodies or none) or by an
@context member (with application/ld+json bodies); responses compact with that same context and
name it back the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from citytwin.errors import (
    BadRequestData,
    InvalidRequest,
    LengthRequired,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from citytwin.model.context import CORE_CONTEXT_URL, Context, link_header
from citytwin.model.validate import json_depth_exceeds

JSON, JSON_LD, GEO_JSON = "application/json", "application/ld+json", "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_TENANT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass
class Body:
    """A parsed request body and the @context it came with."""

    data: Any
    context: Any
    media_type: str


def tenant_of(request: Request) -> str:
    """4.14: NGSILD-Tenant names the tenant; no header is the default tenant."""
    tenant = request.headers.get("ngsild-tenant")
    if tenant is None or tenant == "":
        return ""
    if not _TENANT.match(tenant):
        raise BadRequestData(f"invalid tenant name {tenant!r}")
    return tenant


def link_context(request: Request) -> str | None:
    """The @context URL of a JSON-LD context Link header, if any."""
    header = request.headers.get("link")
    if not header:
        return None
    for match in _LINK.finditer(header):
        if CONTEXT_REL in match.group(2):
            return match.group(1).strip()
    raise BadRequestData("the Link header names no JSON-LD @context (rel=json-ld#context)")


def accept(request: Request, geo: bool = False) -> str:
    """The response media type: application/json unless the client asks for another (6.3.4)."""
    header = request.headers.get("accept")
    if not header:
        return JSON
    offered = [JSON, JSON_LD, GEO_JSON] if geo else [JSON, JSON_LD]
    best, best_q = None, 0.0
    for part in header.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        quality = _quality(params)
        choice = _match(media, offered)
        if choice and quality > best_q:
            best, best_q = choice, quality
    if best is None:
        raise NotAcceptable(f"none of {header!r} can be produced; try one of {offered}")
    return best


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _match(media: str, offered: list[str]) -> str | None:
    if media in ("*/*", "application/*"):
        return JSON
    return media if media in offered else None


async def read_body(request: Request, max_bytes: int, max_depth: int, merge: bool = False) -> Body:
    """Check the media type and size, parse JSON, find the @context (6.3.5)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    allowed = (JSON, JSON_LD, MERGE_PATCH) if merge else (JSON, JSON_LD)
    if media not in allowed:
        raise UnsupportedMediaType(f"Content-Type {media or 'none'} is not one of {allowed}")
    length = request.headers.get("content-length")
    if length is None and "chunked" not in request.headers.get("transfer-encoding", ""):
        raise LengthRequired("a request body needs a Content-Length")
    if length is not None and int(length) > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    raw = await request.body()
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc
    if json_depth_exceeds(raw, max_depth):
        raise BadRequestData(f"the body nests deeper than {max_depth} levels")
    link = link_context(request)
    if media == JSON_LD and link is not None:
        raise BadRequestData("with application/ld+json the @context goes in the body, not Link")
    return Body(data, link, media)


def item_context(body: Body, item: Any) -> Any:
    """The @context source of one JSON object of a body (6.3.5): its member or the Link."""
    has_member = isinstance(item, dict) and "@context" in item
    if body.media_type == JSON_LD:
        if not has_member:
            raise BadRequestData("an application/ld+json body needs an @context")
        return item["@context"]
    if has_member:
        raise BadRequestData("an application/json body cannot carry @context; use a Link header")
    return body.context


def context_url(ctx: Context) -> str:
    source = ctx.source
    if isinstance(source, str):
        return source
    if isinstance(source, list) and len(source) == 1 and isinstance(source[0], str):
        return source[0]
    return CORE_CONTEXT_URL


def json_response(
    data: Any,
    status: int = 200,
    media: str = JSON,
    ctx: Context | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Entity data out: @context in the body for JSON-LD, in a Link header otherwise."""
    out_headers = dict(headers or {})
    if ctx is not None:
        source = ctx.source if ctx.source is not None else CORE_CONTEXT_URL
        if media == JSON_LD:
            data = _with_context(data, source)
        elif media == GEO_JSON:  # 6.3.15: GeoJSON carries the @context in the body
            data = {**data, "@context": source} if isinstance(data, dict) else data
        else:
            links = [link_header(context_url(ctx)), out_headers.get("Link")]
            out_headers["Link"] = ", ".join(link for link in links if link)
    return Response(orjson.dumps(data), status, out_headers, media_type=media)


def _with_context(data: Any, source: Any) -> Any:
    if isinstance(data, list):
        return [_with_context(item, source) for item in data]
    if isinstance(data, dict):
        return {**data, "@context": source}
    return data
