"""Query parameters: the allowed set per operation and the response view (6.3.7, 4.21)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.requests import Request

from citytwin.errors import BadRequestData, InvalidRequest
from citytwin.model.projection import Projection, parse_projection
from citytwin.model.render import CONCISE, NORMALIZED, SIMPLIFIED, View
from citytwin.model.validate import check_uri

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
        raise InvalidRequest(f"unknown options {sorted(unknown)}")
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
    return view_of({**request.query_params, **(extra or {})}, options(request))


def view_of(values: Mapping[str, str], opts: frozenset[str]) -> View:
    """The view that parameter values and (checked) options ask for."""
    forms = {_FORMS[o] for o in opts if o in _FORMS}
    fmt = values.get("format")
    if fmt is not None:
        if fmt not in _FORMS:
            raise InvalidRequest(f"unknown format {fmt!r}")
        forms = {_FORMS[fmt]}
    if len(forms) > 1:
        raise BadRequestData("options asks for more than one representation")
    pick, omit = _projection(values, "pick"), _projection(values, "omit")
    attrs = _csv(values, "attrs")
    if pick is not None and omit is not None:
        raise BadRequestData("pick and omit cannot be used together")
    if attrs is not None:
        if pick is not None or omit is not None:
            raise BadRequestData("attrs cannot be used with pick or omit")
        pick = Projection(frozenset(("id", "type", "scope", *attrs)))
    return View(
        form=forms.pop() if forms else NORMALIZED,
        sys_attrs="sysAttrs" in opts,
        pick=pick,
        omit=omit,
        lang=values.get("lang"),
        geometry=values.get("geometryProperty", "location"),
        join=_join(values.get("join")),
        join_level=_join_level(values.get("joinLevel")),
        dataset_ids=_dataset_ids(values.get("datasetId")),
    )


def _dataset_ids(raw: str | None) -> frozenset[str | None] | None:
    """datasetId=a,b,@none: only those instances are shown (@none: the default one)."""
    if raw is None:
        return None
    ids = [i.strip() for i in raw.split(",")]
    for dataset_id in ids:
        if dataset_id != "@none":
            check_uri(dataset_id, "datasetId")
    return frozenset(None if i == "@none" else i for i in ids)


def _projection(values: Mapping[str, str], name: str) -> Projection | None:
    raw = values.get(name)
    return parse_projection(raw, name) if raw is not None else None


def _join(raw: str | None) -> str | None:
    if raw is None or raw == "@none":
        return None
    if raw not in ("inline", "flat"):
        raise BadRequestData(f"join must be inline, flat or @none, not {raw!r}")
    return raw


def _join_level(raw: str | None) -> int:
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequestData(f"joinLevel must be a positive integer, not {raw!r}")
    return min(int(raw), 16)
