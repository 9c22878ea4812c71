"""Linked entity retrieval (GS CIM 009 4.5.23): join=inline nests the entities a Relationship
names inside it; join=flat lists them after the entities asked for, each once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from citytwin.model.context import Context
from citytwin.model.entity import Entity
from citytwin.model.render import SIMPLIFIED, View, render_entity


def links(entity: Entity, ctx: Context, view: View) -> Iterator[tuple[str, str]]:
    """(compacted attribute name, linked id) for each Relationship the view shows."""
    for iri, instances in entity["attrs"].items():
        name = ctx.compact(iri)
        if not view.keeps(name, iri):
            continue
        for inst in instances:
            if inst.get("type") == "Relationship":
                objects = inst["object"]
                for target in objects if isinstance(objects, list) else [objects]:
                    yield name, target


Fetch = Callable[[tuple[str, ...]], Awaitable[list[Entity]]]


async def fetch_links(
    fetch: Fetch, roots: list[Entity], ctx: Context, view: View
) -> dict[str, Entity]:
    """Every entity reachable within join_level links, fetched one level at a time (fetch
    reads entities by id: the caller's store access, so this module stays free of I/O)."""
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
        found = await fetch(tuple(wanted))
        linked.update((e["id"], e) for e in found)
        frontier = [(e, wanted[e["id"]]) for e in found]
    return linked


def render_inline(
    entity: Entity, ctx: Context, view: View, linked: Mapping[str, Entity], level: int
) -> dict[str, Any]:
    """The entity with each Relationship it shows carrying (or, simplified, replaced by) the
    entity it names, down to `level` links deep."""
    out = render_entity(entity, ctx, view)
    if level <= 0:
        return out
    for name, target in links(entity, ctx, view):
        other = linked.get(target)
        if other is None or name not in out:
            continue
        nested = render_inline(other, ctx, view.for_linked(name), linked, level - 1)
        if view.form == SIMPLIFIED:
            out[name] = nested
        else:
            _attach(out, name, target, nested)
    return out


def _attach(out: dict[str, Any], name: str, target: str, nested: dict[str, Any]) -> None:
    shown = out[name] if isinstance(out[name], list) else [out[name]]
    for inst in shown:
        if isinstance(inst, dict) and (inst.get("object") == target or (
            isinstance(inst.get("object"), list) and target in inst["object"])):  # fmt: skip
            inst["entity"] = nested


def flat_order(
    roots: list[Entity], ctx: Context, view: View, linked: Mapping[str, Entity], level: int
) -> list[tuple[Entity, View]]:
    """The entities of a flat join: the roots, then what they link to, breadth first, once."""
    seen = {e["id"] for e in roots}
    order = [(e, view) for e in roots]
    frontier = list(order)
    for _ in range(level):
        following = []
        for entity, entity_view in frontier:
            for name, target in links(entity, ctx, entity_view):
                if target in linked and target not in seen:
                    seen.add(target)
                    following.append((linked[target], entity_view.for_linked(name)))
        order += following
        frontier = following
    return order
