"""The import rules of DESIGN.md, checked on the source with ast.

model/ imports nothing from api/, store/, broker (nor contexts or app, which sit above it);
api/ never imports store/. Imports inside functions and under TYPE_CHECKING count too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "citytwin"

# (layer, packages its modules must not import)
RULES = [
    (
        "citytwin.model",
        (
            "citytwin.api",
            "citytwin.store",
            "citytwin.broker",
            "citytwin.contexts",
            "citytwin.app",
        ),
    ),
    ("citytwin.api", ("citytwin.store",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def imported(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for everything a module imports, relative imports made absolute.

    `from a.b import c` yields a.b and a.b.c, since c may be a submodule (`from citytwin import
    store`). String literals given to importlib.import_module or __import__ count as imports.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(module, is_package).split(".")
                anchor = ".".join(package[: len(package) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif _is_dynamic_import(node):
            assert isinstance(node, ast.Call)
            yield node.lineno, node.args[0].value  # type: ignore[attr-defined]


def _is_dynamic_import(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not node.args:
        return False
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    found = []
    for layer, forbidden in RULES:
        if not _within(module, layer):
            continue
        for line, name in imported(source, module, is_package):
            for target in forbidden:
                if _within(name, target):
                    found.append(f"line {line}: imports {name} ({layer} must not import {target})")
    return list(dict.fromkeys(found))


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_module_keeps_the_import_rules(path: Path) -> None:
    module = module_name(path)
    broken = violations(path.read_text(), module, path.name == "__init__.py")
    assert not broken, f"{module} ({path.relative_to(PACKAGE.parent)}) breaks the layering:\n" + (
        "\n".join(broken)
    )


def test_every_layer_has_modules_to_check() -> None:
    names = {module_name(p) for p in modules()}
    for layer, _ in RULES:
        assert any(_within(n, layer) for n in names), f"no modules found in {layer}"


def test_the_walker_sees_real_imports() -> None:
    """Guard against a checker that passes because it finds nothing."""
    source = (PACKAGE / "api" / "entities.py").read_text()
    names = {name for _, name in imported(source, "citytwin.api.entities")}
    assert {"citytwin.api.state", "citytwin.api.represent", "citytwin.api.params"} <= names


@pytest.mark.parametrize(
    ("module", "is_package", "source", "broken"),
    [
        ("citytwin.model.entity", False, "import citytwin.store.sqlite", "citytwin.store.sqlite"),
        ("citytwin.model.entity", False, "from citytwin import broker", "citytwin.broker"),
        ("citytwin.model.entity", False, "from ..api.routes import routes", "citytwin.api.routes"),
        ("citytwin.model", True, "from ..contexts import PATH", "citytwin.contexts"),
        ("citytwin.model", True, "from .. import app", "citytwin.app"),
        (
            "citytwin.model.x",
            False,
            "def f():\n    from citytwin.store import base",
            "citytwin.store",
        ),
        ("citytwin.model.x", False, "importlib.import_module('citytwin.api')", "citytwin.api"),
        ("citytwin.api.entities", False, "from citytwin.store.base import Purge", "citytwin.store"),
        ("citytwin.api.entities", False, "from ..store import open_store", "citytwin.store"),
        ("citytwin.api", True, "from ..store import base", "citytwin.store"),
    ],
)
def test_checker_catches(module: str, is_package: bool, source: str, broken: str) -> None:
    found = violations(source, module, is_package)
    assert found and all(broken in v for v in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("citytwin.model.entity", "from citytwin.model.context import Context"),
        ("citytwin.model.entity", "from .validate import check_uri"),
        ("citytwin.model.entity", "from citytwin.errors import BadRequestData"),
        ("citytwin.model.entity", "import citytwin.storefront"),
        ("citytwin.api.entities", "from citytwin.broker import Broker"),
        ("citytwin.api.state", "from citytwin.contexts import ContextResolver"),
        ("citytwin.broker", "from citytwin.store.base import Store"),
        ("citytwin.app", "from citytwin.store import open_store"),
    ],
)
def test_checker_allows(module: str, source: str) -> None:
    assert violations(source, module) == []
