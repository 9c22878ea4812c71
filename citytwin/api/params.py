"""Query parameters: the allowed set per operation and the response view (6.3.7, 4.21)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.requests import Request

from citytwin.errors import BadRequestData, InvalidRequest
from citytwin.model.render import CONCISE, NORMALIZED, SIMPLIFIED, View

VIEW_PARAMS = frozenset(
    {"attrs", "pick", "omit", "options", "format", "lang", "geometryProperty", "local", "via"}
)
_FORMS = {"keyValues": SIMPLIFIED, "simplified": SIMPLIFIED, "concise": CONCISE,
          "normalized": NORMALIZED}  # fmt: skip
_OPTIONS = frozenset({*_FORMS, "sysAttrs", "noOverwrite", "replace", "update"})


def check_params(request: Request, allowed: Iterable[str]) -> None:
    """Unknown query parameters are an InvalidRequest (6.3.20)."""
    known = frozenset(allowed)
    for name in request.query_params:
        if name not in known:
            raise InvalidRequest(f"unknown query parameter {name!r}")


def csv(request: Request, name: str) -> list[str] | None:
    return _csv(request.query_params, name)


def _csv(values: Mapping[str, str], name: str) -> list[str] | None:
    raw = values.get(name)
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise BadRequestData(f"{name} is empty")
    return items


def options(request: Request) -> frozenset[str]:
    opts = frozenset(csv(request, "options") or [])
    unknown = opts - _OPTIONS
    if unknown:
        raise BadRequestData(f"unknown options {sorted(unknown)}")
    return opts


def flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise BadRequestData(f"{name} must be true or false")
    return raw == "true"


def view(request: Request, extra: Mapping[str, str] | None = None) -> View:
    """The representation asked for by options, format, pick/omit/attrs, lang, geometryProperty.

    extra: the same members given another way (a Query body), which win over the URL.
    """
    values = {**request.query_params, **(extra or {})}
    opts = options(request)
    forms = {_FORMS[o] for o in opts if o in _FORMS}
    fmt = values.get("format")
    if fmt is not None:
        if fmt not in _FORMS:
            raise BadRequestData(f"unknown format {fmt!r}")
        forms = {_FORMS[fmt]}
    if len(forms) > 1:
        raise BadRequestData("options asks for more than one representation")
    pick, omit, attrs = (_csv(values, n) for n in ("pick", "omit", "attrs"))
    if pick is not None and omit is not None:
        raise BadRequestData("pick and omit cannot be used together")
    if attrs is not None:
        pick = [*(pick or ("id", "type", "scope")), *attrs]
    return View(
        form=forms.pop() if forms else NORMALIZED,
        sys_attrs="sysAttrs" in opts,
        pick=frozenset(pick) if pick is not None else None,
        omit=frozenset(omit or ()),
        lang=values.get("lang"),
        geometry=values.get("geometryProperty", "location"),
    )
