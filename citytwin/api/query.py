"""Query entities: GET /entities and POST /entityOperations/query (GS CIM 009 5.7.2, 6.23).

Request parameters (or a Query body) become a store Query with every name expanded through the
request's @context; pagination answers with NGSILD-Results-Count and Link rel="next"/"prev".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from citytwin.api import params
from citytwin.api.negotiation import GEO_JSON, accept, json_response, read_body
from citytwin.api.represent import represent
from citytwin.api.state import request_context, state, tenant_of
from citytwin.broker import Query
from citytwin.errors import BadRequestData, TooManyResults
from citytwin.model.context import Context
from citytwin.model.entity import expand_name
from citytwin.model.geo import parse_geo_query
from citytwin.model.query import (
    All,
    Any_,
    Node,
    Path,
    Term,
    expand,
    expand_order,
    expand_values,
    parse_order_by,
    parse_q,
    parse_scope_q,
    regex_error,
)
from citytwin.model.query import parse_types as parse_type_expression
from citytwin.model.render import View
from citytwin.model.validate import check_uri

QUERY_PARAMS = params.VIEW_PARAMS | {
    "type", "id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates",
    "geoproperty", "csf", "limit", "offset", "count", "orderBy", "collation", "datasetId",
    "expandValues", "jsonKeys", "entityMap", "doNotCompact", "join", "joinLevel", "containedBy",
}  # fmt: skip
PAGE_PARAMS = {"limit", "offset", "count", "options", "format", "lang", "local", "via"}


async def query_entities(request: Request) -> Response:
    """5.7.2: GET /entities."""
    params.check_params(request, QUERY_PARAMS)
    media = accept(request, geo=True)
    view = params.view(request)
    ctx = await request_context(request)
    query = selection(request.query_params, ctx, require=True)
    return await _answer(request, _paged(request, query), ctx, view, media)


async def query_body(request: Request) -> tuple[dict[str, Any], Context]:
    """A Query data type (5.2.23) from a request body, and its @context."""
    app = state(request)
    body = await read_body(request, app.settings.max_body_bytes, app.settings.max_json_depth)
    ctx = await request_context(request, body)
    data = body.data
    if not isinstance(data, dict) or data.get("type", "Query") != "Query":
        raise BadRequestData("the body must be a Query object")
    return data, ctx


async def post_query(request: Request) -> Response:
    """5.7.2 via POST /entityOperations/query: a Query data type (5.2.23) in the body."""
    params.check_params(request, PAGE_PARAMS)
    media = accept(request, geo=True)
    data, ctx = await query_body(request)
    query = _paged(request, body_selection(data, ctx))
    view = params.view(request, _body_view(data))
    return await _answer(request, query, ctx, view, media)


async def _answer(request: Request, query: Query, ctx: Context, view: View, media: str) -> Response:
    broker, tenant = state(request).broker, tenant_of(request)
    query = _picked(query, view, ctx)
    result = await broker.query(tenant, query)
    page = await represent(broker, tenant, result.entities, ctx, view, media)
    headers = {}
    if result.count is not None:
        headers["NGSILD-Results-Count"] = str(result.count)
    links = _links(request, query, result.count, len(page))
    if links:
        headers["Link"] = links
    data: Any = page
    if media == GEO_JSON:
        data = {"type": "FeatureCollection", "features": page}
    return json_response(data, media=media, ctx=ctx, headers=headers)


def _picked(query: Query, view: View, ctx: Context) -> Query:
    """pick naming only attributes selects the entities that have one of them (4.21)."""
    if view.pick is None or view.pick.names & {"id", "type", "scope"}:
        return query
    attrs = frozenset(expand_name(n, ctx) for n in view.pick.names)
    return replace(query, attrs=attrs)


def _paged(request: Request, query: Query) -> Query:
    limit, offset, count = page_params(request)
    return replace(query, limit=limit, offset=offset, count=count)


def page_params(request: Request) -> tuple[int, int, bool]:
    """limit, offset and count of a collection request (6.3.10, 6.3.13)."""
    settings = state(request).settings
    limit = _natural(request.query_params.get("limit"), "limit", settings.default_limit)
    if limit > settings.max_limit:
        raise TooManyResults(f"limit {limit} is over the maximum of {settings.max_limit}")
    offset = _natural(request.query_params.get("offset"), "offset", 0)
    count = params.flag(request, "count")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed with count=true")
    return limit, offset, count


def page_of(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """One page of an in-memory collection, with the count and Link headers."""
    limit, offset, count = page_params(request)
    page = items[offset : offset + limit]
    headers = {"NGSILD-Results-Count": str(len(items))} if count else {}
    links = _links(request, Query(limit=limit, offset=offset), len(items), len(page))
    if links:
        headers["Link"] = links
    return page, headers


def _natural(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequestData(f"{name} must be a non-negative integer, not {raw!r}")
    return int(raw)


def _links(request: Request, query: Query, count: int | None, returned: int) -> str:
    """Link rel="prev"/"next" for the neighbouring pages (6.3.10)."""
    limit, offset = query.limit or 0, query.offset
    links = []
    if offset > 0 and limit:
        links.append(_link(request, max(offset - limit, 0), limit, "prev"))
    more = count is not None and offset + returned < count
    if limit and (more or (count is None and returned == limit)):
        links.append(_link(request, offset + limit, limit, "next"))
    return ", ".join(links)


def _link(request: Request, offset: int, limit: int, rel: str) -> str:
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]
    items += [("limit", str(limit)), ("offset", str(offset))]
    path = request.url.path.rstrip("/")
    return f'<{path}?{urlencode(items)}>;rel="{rel}";type="application/ld+json"'


# -- selection ------------------------------------------------------------------------------------


def selection(values: Mapping[str, Any], ctx: Context, require: bool = False) -> Query:
    """The entities a request selects, from query parameters (also used by purge)."""
    types = _types(values.get("type"), ctx)
    ids = _ids(values.get("id"))
    pattern = _pattern(values.get("idPattern"))
    q = _q(values.get("q"), ctx, values.get("expandValues"))
    scope_q = parse_scope_q(values["scopeQ"]) if values.get("scopeQ") is not None else None
    geo = parse_geo_query(
        values.get("georel"), values.get("geometry"), values.get("coordinates"),
        values.get("geoproperty"),
    )  # fmt: skip
    if geo is not None:
        geo = replace(geo, geoproperty=expand_name(geo.geoproperty, ctx))
    attrs = values.get("attrs")
    attr_names = _attrs(attrs, ctx) if attrs else None
    order = values.get("orderBy")
    order_keys = expand_order(parse_order_by(order), lambda n: expand_name(n, ctx)) if order else ()
    if any(key.distance for key in order_keys) and (geo is None or geo.georel != "near"):
        raise BadRequestData("orderBy=geo:distance needs a near geo-query")
    query = Query(types, ids, pattern, q, scope_q, geo, attr_names, order_by=order_keys)
    if require and types is None and attrs is None and q is None and geo is None:
        if values.get("type") != "*" and scope_q is None and values.get("local") != "true":
            raise BadRequestData("a query needs at least one of type, attrs, q, scopeQ or georel")
    return query


def _attrs(text: str, ctx: Context) -> frozenset[str]:
    names = [n.strip() for n in text.split(",")]
    if any(n in ("id", "type") for n in names):
        raise BadRequestData("attrs names attributes; id and type are not attributes")
    return frozenset(expand_name(n, ctx) for n in names)


def _types(text: str | None, ctx: Context) -> Node | None:
    if text is None or text == "*":
        return None
    node = parse_type_expression(text)
    return expand(node, lambda name: expand_name(name, ctx, "entity type"))


def _ids(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    ids = tuple(i.strip() for i in text.split(",") if i.strip())
    for entity_id in ids:
        check_uri(entity_id, "id")
    return ids or None


def _pattern(text: str | None) -> str | None:
    if text is None:
        return None
    why = regex_error(text)
    if why is not None:
        raise BadRequestData(f"idPattern is not a valid regular expression: {why}")
    return text


def _q(text: str | None, ctx: Context, expand_list: str | None = None) -> Node | None:
    if text is None:
        return None
    node = expand(parse_q(text), lambda name: expand_name(name, ctx))
    if expand_list:
        attrs = frozenset(expand_name(n.strip(), ctx) for n in expand_list.split(","))
        node = expand_values(node, attrs, ctx.expand)
    return node


def body_selection(data: dict[str, Any], ctx: Context) -> Query:
    """A Query body: entities (type, id, idPattern selectors), attrs, q, geoQ, scopeQ."""
    values: dict[str, Any] = {k: data[k] for k in ("q", "scopeQ") if isinstance(data.get(k), str)}
    attrs = data.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            raise BadRequestData("attrs must be a list of attribute names")
        values["attrs"] = ",".join(attrs)
    geo_q = data.get("geoQ")
    if geo_q is not None:
        if not isinstance(geo_q, dict):
            raise BadRequestData("geoQ must be an object")
        for key in ("georel", "geometry", "coordinates", "geoproperty"):
            if key in geo_q:
                values[key] = geo_q[key]
    query = selection(values, ctx)
    entities = _selectors(data.get("entities"), ctx)
    if entities is None and query.everything:
        raise BadRequestData("a Query needs entities, attrs, q, geoQ or scopeQ")
    return replace(query, types=entities)


def _selectors(value: Any, ctx: Context) -> Node | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise BadRequestData("entities must be a non-empty list of entity selectors")
    return Any_(tuple(_selector(item, ctx) for item in value))


def _selector(item: Any, ctx: Context) -> Node:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise BadRequestData("each entity selector needs a type")
    parts: list[Node] = [_types(item["type"], ctx) or Term(Path("id"), "idPattern", ".*")]
    if item.get("id") is not None:
        parts.append(Term(Path("id"), "id", check_uri(item["id"], "id")))
    if item.get("idPattern") is not None:
        parts.append(Term(Path("id"), "idPattern", _pattern(item["idPattern"])))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _body_view(data: dict[str, Any]) -> dict[str, str]:
    """Representation members of a Query body, as query parameters would give them."""
    out: dict[str, str] = {}
    for key in ("attrs", "pick", "omit"):
        if isinstance(data.get(key), list):
            out[key] = ",".join(data[key])
    for key in ("lang", "join", "joinLevel"):
        if isinstance(data.get(key), str | int) and not isinstance(data.get(key), bool):
            out[key] = str(data[key])
    return out
