"""Fetching the entities a response links to (join, GS CIM 009 4.5.23) and answering with them."""

from __future__ import annotations

from typing import Any

from citytwin.broker import Broker, Query
from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.join import flat_order, links, render_inline
from citytwin.model.render import View, render_entity


async def fetch_links(
    broker: Broker, tenant: str, roots: list[Entity], ctx: Context, view: View
) -> dict[str, Entity]:
    """Every entity reachable within join_level links, fetched one level at a time."""
    linked: dict[str, Entity] = {}
    frontier = [(e, view) for e in roots]
    for _ in range(view.join_level):
        wanted: dict[str, View] = {}
        for entity, entity_view in frontier:
            for name, target in links(entity, ctx, entity_view):
                if target not in linked:
                    wanted.setdefault(target, entity_view.for_linked(name))
        if not wanted:
            break
        found = (await broker.query(tenant, Query(ids=tuple(wanted)))).entities
        linked.update((e["id"], e) for e in found)
        frontier = [(e, wanted[e["id"]]) for e in found]
    return linked


async def render_joined(
    broker: Broker, tenant: str, roots: list[Entity], ctx: Context, view: View
) -> list[dict[str, Any]]:
    """Rendered entities with their links: nested (inline) or appended (flat)."""
    linked = await fetch_links(broker, tenant, roots, ctx, view)
    if view.join == "inline":
        return [render_inline(e, ctx, view, linked, view.join_level) for e in roots]
    return [
        render_entity(e, ctx, v) for e, v in flat_order(roots, ctx, view, linked, view.join_level)
    ]
