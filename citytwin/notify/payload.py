"""Notification bodies (GS CIM 009 5.3.1): the entities as the subscription asked to see them."""

from __future__ import annotations

import uuid
from typing import Any

from citytwin.model.context import Context
from citytwin.model.entity import ATTRIBUTE_TYPES, NULL, Entity, Instance
from citytwin.model.projection import Projection
from citytwin.model.render import CONCISE, NORMALIZED, SIMPLIFIED, View, render_entity
from citytwin.model.subscription import now
from citytwin.notify.match import Compiled

_FORMS = {"normalized": NORMALIZED, "keyValues": SIMPLIFIED, "simplified": SIMPLIFIED,
          "concise": CONCISE}  # fmt: skip
_PREVIOUS = {"value": "previousValue", "object": "previousObject",
             "languageMap": "previousLanguageMap", "vocab": "previousVocab",
             "valueList": "previousValueList", "objectList": "previousObjectList",
             "json": "previousJson"}  # fmt: skip


def view_of(sub: Compiled) -> View:
    params = sub.doc["notification"]
    pick = omit = None
    if params.get("attributes"):
        names = {sub.ctx.compact(a) for a in params["attributes"]}
        pick = Projection(frozenset({"id", "type", *names}))
    if params.get("pick"):
        pick = Projection(frozenset(params["pick"]))
    if params.get("omit"):
        omit = Projection(frozenset(params["omit"]))
    ids = sub.doc.get("datasetId")
    join = params.get("join")
    return View(
        form=_FORMS[params.get("format", "normalized")],
        sys_attrs=bool(params.get("sysAttrs")),
        pick=pick,
        omit=omit,
        lang=sub.doc.get("lang"),
        join=None if join in (None, "@none") else join,
        join_level=params.get("joinLevel", 1),
        dataset_ids=frozenset(None if i == "@none" else i for i in ids) if ids else None,
    )


def shown_entity(
    sub: Compiled, before: Entity | None, after: Entity | None, reason: str, at: str
) -> Entity:
    """What a notification shows of a change (5.8.6): the entity after it, with deleted
    attributes as NGSI-LD Null; for a deleted entity, its id, type and deletedAt (and its
    attributes as Null when the subscription asked for changes or for attribute deletions)."""
    if after is not None:
        shown = {**after, "attrs": {k: list(v) for k, v in after["attrs"].items()}}
        for name, instances in (before or {}).get("attrs", {}).items():
            _add_deleted(shown, name, instances, after["attrs"].get(name, []), at)
        return shown
    assert before is not None
    shown = {k: v for k, v in before.items() if k != "attrs"}
    shown["deletedAt"] = at
    shown["attrs"] = {}
    watched = sub.watched
    if sub.doc["notification"].get("showChanges") or reason == "attributeDeleted":
        for name, instances in before["attrs"].items():
            if watched is None or name in watched:
                shown["attrs"][name] = [_null(i, at, entity_deleted=True) for i in instances]
    return shown


def _add_deleted(
    shown: Entity, name: str, old: list[Instance], new: list[Instance], at: str
) -> None:
    """Deleted instances show as Null; an attribute deleted whole shows as one Null."""
    if not new:
        shown["attrs"][name] = [_null(old[0], at, keep_dataset=False)]
        return
    kept = {i.get("datasetId") for i in new}
    gone = [_null(i, at) for i in old if i.get("datasetId") not in kept]
    if gone:
        shown["attrs"].setdefault(name, []).extend(gone)


def _null(
    inst: Instance, at: str, entity_deleted: bool = False, keep_dataset: bool = True
) -> Instance:
    member = ATTRIBUTE_TYPES[inst["type"]]
    null: Any = NULL
    if member == "languageMap" and not entity_deleted:
        null = {"@none": NULL}
    out = {"type": inst["type"], member: null}
    if keep_dataset and "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    out.update({k: inst[k] for k in ("createdAt", "modifiedAt") if k in inst})
    out["deletedAt"] = at
    return out


def render_data(sub: Compiled, shown: Entity, before: Entity | None, view: View) -> dict[str, Any]:
    out = render_entity(shown, sub.ctx, view)
    if "deletedAt" in shown:
        out["deletedAt"] = shown["deletedAt"]
    if (
        sub.doc["notification"].get("showChanges")
        and before is not None
        and view.form != SIMPLIFIED
    ):
        _previous_values(out, before, sub.ctx)
    return out


def _previous_values(out: dict[str, Any], before: Entity, ctx: Context) -> None:
    """showChanges: each changed instance carries the value it had before (previousValue...)."""
    for iri, old in before["attrs"].items():
        shown = out.get(ctx.compact(iri))
        for inst in shown if isinstance(shown, list) else [shown]:
            if not isinstance(inst, dict):
                continue
            match = next((o for o in old if o.get("datasetId") == inst.get("datasetId")), None)
            member = ATTRIBUTE_TYPES.get(match["type"]) if match else None
            if member is None or member not in match:  # type: ignore[operator]
                continue
            previous = match[member]  # type: ignore[index]
            if previous != inst.get(member):
                if member == "vocab":
                    previous = _compact(previous, ctx)
                inst[_PREVIOUS[member]] = previous


def _compact(value: Any, ctx: Context) -> Any:
    return [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)


def notification(sub: Compiled, data: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": now(),
        "data": data,
        "triggerReason": reason,
    }
