"""The API and the page are two front ends over one service: neither uses the other.

Both read through `dispatcher.api.reads` and act through `dispatcher.api.service`; the
routes turn records into JSON models, the page into template context. The import half
belongs in import-linter's contracts too (a `forbidden` contract each way); only this test
says that no front end reads the store past the service.
"""

from __future__ import annotations

import ast
from pathlib import Path

API_DIR = Path(__file__).resolve().parents[2] / "dispatcher" / "api"
API = {"routes", "batch", "models", "params"}  # the /v1 API and its wire format
PAGE = {"pages", "pagebase", "pagelists", "pageact", "views", "snapshot"}  # the HTML page
SHARED = {"reads", "service"}  # what both use
HANDLERS = (API | PAGE) - {"snapshot", "models", "params"}  # modules that answer requests
STORE_HANDLES = {"store", "monitoring"}  # the service's store, read only behind it


def _tree(module: str) -> ast.Module:
    path = API_DIR / f"{module}.py"
    return ast.parse(path.read_text(), filename=str(path))


def _api_imports(tree: ast.Module) -> set[str]:
    """The `dispatcher.api` modules a module imports (by any form of import)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["dispatcher", "api"] and len(parts) > 2:
                found.add(parts[2])
    return found


def _store_reads(tree: ast.Module) -> list[str]:
    """Where a module reaches a `store` or `monitoring` attribute (`svc.store.task(...)`)."""
    return [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in STORE_HANDLES
    ]


def test_the_page_imports_nothing_of_the_api() -> None:
    found = {m: sorted(_api_imports(_tree(m)) & API) for m in sorted(PAGE)}
    assert found == {m: [] for m in sorted(PAGE)}


def test_the_api_imports_nothing_of_the_page() -> None:
    found = {m: sorted(_api_imports(_tree(m)) & PAGE) for m in sorted(API)}
    assert found == {m: [] for m in sorted(API)}


def test_the_shared_service_imports_neither_front_end_nor_fastapi() -> None:
    for module in sorted(SHARED):
        tree = _tree(module)
        assert _api_imports(tree) & (API | PAGE) == set(), module
        web = [
            n.module
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module
            if n.module.split(".")[0] in {"fastapi", "starlette"}
        ]
        assert web == [], module


def test_no_front_end_reads_the_store_past_the_service() -> None:
    found = {m: _store_reads(_tree(m)) for m in sorted(HANDLERS)}
    assert found == {m: [] for m in sorted(HANDLERS)}


def test_the_checks_see_an_offending_module() -> None:
    sample = ast.parse(
        "from dispatcher.api import routes\n"
        "from dispatcher.api.pagelists import tasks\n"
        "import dispatcher.api.batch\n"
        "svc.store.history('t')\n"
    )
    assert _api_imports(sample) == {"routes", "pagelists", "batch"}
    assert _store_reads(sample) == ["line 4: .store"]
