"""Notification bodies (GS CIM 009 5.3.1): the entities as the subscription asked to see them."""

from __future__ import annotations

import uuid
from typing import Any

from citytwin.model.entity import Entity
from citytwin.model.projection import Projection
from citytwin.model.render import CONCISE, NORMALIZED, SIMPLIFIED, View, render_entity
from citytwin.model.subscription import now
from citytwin.notify.match import Compiled

_FORMS = {"normalized": NORMALIZED, "keyValues": SIMPLIFIED, "simplified": SIMPLIFIED,
          "concise": CONCISE}  # fmt: skip


def view_of(sub: Compiled) -> View:
    params = sub.doc["notification"]
    pick = None
    if params.get("attributes"):
        names = {sub.ctx.compact(a) for a in params["attributes"]}
        pick = Projection(frozenset({"id", "type", *names}))
    return View(
        form=_FORMS[params.get("format", "normalized")],
        sys_attrs=bool(params.get("sysAttrs")),
        pick=pick,
        lang=sub.doc.get("lang"),
    )


def entity_data(
    sub: Compiled, before: Entity | None, after: Entity | None, at: str
) -> dict[str, Any]:
    """One entity of a notification: its state after the change, or a deletion marker."""
    ctx = sub.ctx
    if after is None:
        assert before is not None
        types = [ctx.compact(t) for t in before["type"]]
        return {"id": before["id"], "type": types[0] if len(types) == 1 else types,
                "deletedAt": at}  # fmt: skip
    view = view_of(sub)
    out = render_entity(after, ctx, view)
    if (
        sub.doc["notification"].get("showChanges")
        and before is not None
        and view.form != SIMPLIFIED
    ):
        _previous_values(out, before, ctx)
    return out


def _previous_values(out: dict[str, Any], before: Entity, ctx: Any) -> None:
    """showChanges: each changed instance carries the value it had before (previousValue)."""
    for iri, old in before["attrs"].items():
        shown = out.get(ctx.compact(iri))
        for inst in shown if isinstance(shown, list) else [shown]:
            if not isinstance(inst, dict):
                continue
            match = next((o for o in old if o.get("datasetId") == inst.get("datasetId")), None)
            if match is None:
                continue
            for member in ("value", "object", "languageMap", "vocab", "valueList", "json"):
                if member in match and match[member] != inst.get(member):
                    inst["previous" + member[0].upper() + member[1:]] = match[member]


def notification(sub: Compiled, data: list[dict[str, Any]], reason: str) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub.id,
        "notifiedAt": now(),
        "data": data,
        "triggerReason": reason,
    }
