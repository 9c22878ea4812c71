"""Entities into response bodies: the chosen form, GeoJSON, and linked entities (join)."""

from __future__ import annotations

from typing import Any

from citytwin.api.join import render_joined
from citytwin.api.negotiation import GEO_JSON
from citytwin.broker import Broker
from citytwin.errors import ResourceNotFound
from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.render import View, render_entity, render_feature


async def represent(
    broker: Broker, tenant: str, entities: list[Entity], ctx: Context, view: View, media: str
) -> list[dict[str, Any]]:
    if media == GEO_JSON:
        return [render_feature(e, ctx, view) for e in entities]
    if view.join is not None:
        return await render_joined(broker, tenant, entities, ctx, view)
    return [render_entity(e, ctx, view) for e in entities]


def check_shown(
    rendered: dict[str, Any], entity: Entity, attrs: list[str] | None, ctx: Context
) -> None:
    """5.7.1: 404 when pick/omit leave nothing to show, or none of the attrs asked for exists."""
    if not rendered:
        raise ResourceNotFound(f"entity {entity['id']} has nothing that pick/omit would show")
    if attrs and not any(ctx.expand(a) in entity["attrs"] for a in attrs):
        raise ResourceNotFound(f"entity {entity['id']} has none of the attributes {attrs}")
