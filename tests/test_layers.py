"""The folder layout is the architecture: domain/ imports no HTTP, SQL or other layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_IN_DOMAIN = {"eventsourcing", "domain"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str]) -> set[str]:
    import sys

    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


def test_domain_imports_only_the_standard_library_and_eventsourcing() -> None:
    offenders = {
        str(p.relative_to(ROOT)): _third_party(_imports(p)) - ALLOWED_IN_DOMAIN
        for p in (ROOT / "domain").glob("*.py")
    }

    assert {k: v for k, v in offenders.items() if v} == {}


def test_store_and_projections_never_import_the_api() -> None:
    for folder in ("store", "projections"):
        for p in (ROOT / folder).glob("*.py"):
            assert "api" not in _imports(p), p
