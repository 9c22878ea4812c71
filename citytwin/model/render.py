"""Stored entities out to the client's forms (GS CIM 009 4.5.1-4.5.4, 4.5.16-17, 4.15, 4.21).

Names and types are compacted with the caller's @context; the form is normalized, concise or
simplified (keyValues), optionally as a GeoJSON Feature.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from citytwin.model.context import Context
from citytwin.model.entity import ATTRIBUTE_TYPES, SYSTEM, Entity, Instance
from citytwin.model.projection import Projection

NORMALIZED, CONCISE, SIMPLIFIED = "normalized", "concise", "simplified"
_SIMPLE_WRAPPED = {
    "LanguageProperty",
    "VocabProperty",
    "ListProperty",
    "ListRelationship",
    "JsonProperty",
}


@dataclass(frozen=True)
class View:
    """How one response shows entities."""

    form: str = NORMALIZED
    sys_attrs: bool = False
    pick: Projection | None = None
    omit: Projection | None = None
    lang: str | None = None
    geometry: str = "location"
    join: str | None = None
    join_level: int = 1
    dataset_ids: frozenset[str | None] | None = None

    def keeps(self, *names: str) -> bool:
        """pick/omit on a member, named compacted (and, for attributes, also by IRI).

        In omit, a name with braces is not omitted itself: its braces omit members of the
        entities it links to.
        """
        omit = self.omit
        if omit is not None and any(n in omit.names and n not in omit.linked for n in names):
            return False
        return self.pick is None or any(n in self.pick.names for n in names)

    def for_linked(self, attr: str) -> View:
        """The view of the entities an attribute links to: the projection in its braces."""
        pick = self.pick.linked.get(attr) if self.pick is not None else None
        omit = self.omit.linked.get(attr) if self.omit is not None else None
        return replace(self, pick=pick, omit=omit)


def render_head(entity: Entity, ctx: Context, view: View) -> dict[str, Any]:
    """id and type, as the view keeps them."""
    out: dict[str, Any] = {}
    if view.keeps("id"):
        out["id"] = entity["id"]
    if view.keeps("type"):
        types = [ctx.compact(t) for t in entity["type"]]
        out["type"] = types[0] if len(types) == 1 else types
    return out


def render_entity(entity: Entity, ctx: Context, view: View) -> dict[str, Any]:
    out = render_head(entity, ctx, view)
    if "scope" in entity and view.keeps("scope"):
        scope = entity["scope"]
        out["scope"] = scope[0] if len(scope) == 1 else scope
    for iri, instances in entity["attrs"].items():
        name = ctx.compact(iri)
        if view.dataset_ids is not None:
            instances = [i for i in instances if i.get("datasetId") in view.dataset_ids]
        if instances and view.keeps(name, iri):
            out[name] = render_attribute(instances, ctx, view)
    if view.sys_attrs:
        out["createdAt"] = entity["createdAt"]
        out["modifiedAt"] = entity["modifiedAt"]
    return out


def render_attribute(instances: list[Instance], ctx: Context, view: View) -> Any:
    rendered = [render_instance(i, ctx, view) for i in instances]
    if view.form == SIMPLIFIED and len(rendered) > 1:
        return _simplified_multi(instances, rendered)
    return rendered[0] if len(rendered) == 1 else rendered


def _simplified_multi(instances: list[Instance], rendered: list[Any]) -> Any:
    """4.5.4: several instances show as {"dataset": {datasetId or "@none": value}}."""
    dataset = {
        inst.get("datasetId", "@none"): value
        for inst, value in zip(instances, rendered, strict=True)
    }
    return {"dataset": dataset}


def render_instance(inst: Instance, ctx: Context, view: View) -> Any:
    kind = inst["type"]
    if kind == "LanguageProperty" and view.lang is not None:
        inst = _language_as_property(inst, view.lang)
        kind = "Property"
    if view.form == SIMPLIFIED:
        return _simple_value(inst, kind, ctx)
    out: dict[str, Any] = {}
    for key, value in inst.items():
        if key in SYSTEM:
            if view.sys_attrs:
                out[key] = value
        elif ":" in key:
            out[ctx.compact(key)] = render_instance(value, ctx, view)
        elif key == "objectType" or key == "vocab":
            out[key] = _compact_values(value, ctx)
        else:
            out[key] = value
    return _concise(out, kind) if view.form == CONCISE else out


def _simple_value(inst: Instance, kind: str, ctx: Context) -> Any:
    key = ATTRIBUTE_TYPES[kind]
    value = inst[key]
    if kind == "VocabProperty":
        value = _compact_values(value, ctx)
    return {key: value} if kind in _SIMPLE_WRAPPED else value


def _concise(out: dict[str, Any], kind: str) -> Any:
    out.pop("type", None)
    if kind in ("Property", "GeoProperty") and list(out) == ["value"]:
        value = out["value"]
        if not isinstance(value, dict) or kind == "GeoProperty":
            return value
    return out


def _compact_values(value: Any, ctx: Context) -> Any:
    if isinstance(value, list):
        return [ctx.compact(v) for v in value]
    return ctx.compact(value)


def _language_as_property(inst: Instance, lang: str) -> Instance:
    """4.15: with lang, a LanguageProperty shows as a Property in the best matching language."""
    chosen, text = best_language(inst["languageMap"], lang)
    out = {k: v for k, v in inst.items() if k != "languageMap"}
    out["type"] = "Property"
    out["value"] = text
    if chosen is not None:
        out["lang"] = chosen
    return out


def best_language(language_map: dict[str, Any], lang: str) -> tuple[str | None, Any]:
    wanted = _ranked_languages(lang)
    for tag in wanted:
        if tag == "*" and language_map:
            first = next(iter(language_map))
            return first, language_map[first]
        for key in language_map:
            if key.lower() == tag or key.lower().split("-")[0] == tag:
                return key, language_map[key]
    if "@none" in language_map:
        return "@none", language_map["@none"]
    first = next(iter(language_map), None)
    return first, language_map.get(first) if first is not None else None


def _ranked_languages(lang: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(lang.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            ranked.append((-quality, i, tag.lower()))
    return [tag for _, _, tag in sorted(ranked)]


def render_feature(entity: Entity, ctx: Context, view: View) -> dict[str, Any]:
    """4.5.16: an entity as a GeoJSON Feature; geometry from the chosen GeoProperty."""
    body = render_entity(entity, ctx, view)
    feature: dict[str, Any] = {"id": body.pop("id", entity["id"]), "type": "Feature"}
    feature["geometry"] = _geometry(entity, ctx.expand(view.geometry))
    feature["properties"] = body
    return feature


def _geometry(entity: Entity, iri: str) -> Any:
    instances = entity["attrs"].get(iri) or []
    for inst in instances:
        if inst["type"] == "GeoProperty" and "datasetId" not in inst:
            return inst["value"]
    return instances[0]["value"] if instances and instances[0]["type"] == "GeoProperty" else None
