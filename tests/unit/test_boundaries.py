"""Architecture boundaries: only broker/ talks AMQP, only store/ talks MongoDB."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["broker", "workers", "dispatcher", "reminder", "store"]
OWNERS = {"pika": "broker", "kombu": "broker", "pymongo": "store", "bson": "store"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_broker_imports_the_amqp_client_and_only_store_imports_pymongo() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in _imports(path) & OWNERS.keys():
                if OWNERS[module] != package:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_boundary_check_sees_an_offending_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import pika.exceptions\nfrom pymongo import MongoClient\n")
    assert _imports(sample) >= {"pika", "pymongo"}
