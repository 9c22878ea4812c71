"""Fetching the entities a response links to (join, GS CIM 009 4.5.23) and answering with them."""

from __future__ import annotations

from typing import Any

from citytwin.broker import Broker, Query
from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.join import fetch_links, flat_order, render_inline
from citytwin.model.render import View, render_entity


async def render_joined(
    broker: Broker, tenant: str, roots: list[Entity], ctx: Context, view: View
) -> list[dict[str, Any]]:
    """Rendered entities with their links: nested (inline) or appended (flat)."""

    async def fetch(ids: tuple[str, ...]) -> list[Entity]:
        return (await broker.query(tenant, Query(ids=ids))).entities

    linked = await fetch_links(fetch, roots, ctx, view)
    if view.join == "inline":
        return [render_inline(e, ctx, view, linked, view.join_level) for e in roots]
    return [
        render_entity(e, ctx, v) for e, v in flat_order(roots, ctx, view, linked, view.join_level)
    ]
