"""The import layers hold (import-linter, configured in pyproject.toml), and the check bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("dossierflow", "dispatcher", "reminder", "workers", "broker", "store")
CONTRACT = "[[tool.importlinter.contracts]]"
SAMPLED = ("layers", "amqp", "mongo", "acyclic")


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [str(LINT_IMPORTS) if LINT_IMPORTS.exists() else shutil.which("lint-imports")]
    return subprocess.run(
        [*command, "--no-cache"],  # type: ignore[list-item]
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _sample(tmp_path: Path, imports: dict[str, str]) -> Path:
    """The six packages with only the given imports, under our contracts."""
    config = (ROOT / "pyproject.toml").read_text()
    head, *contracts = config[config.index("[tool.importlinter]") :].split(CONTRACT)
    # Only the package-wide contracts: the others name modules the sample does not have.
    kept = [c for c in contracts if any(f'id = "{i}"' in c for i in SAMPLED)]
    (tmp_path / "pyproject.toml").write_text(head + "".join(CONTRACT + c for c in kept))
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "a.py").write_text(imports.get(package, ""))
        (tmp_path / package / "b.py").write_text("")
    # The one upward import the layers allow, in every sample so that its ignore matches.
    (tmp_path / "workers" / "vocabulary.py").write_text("")
    (tmp_path / "store" / "b.py").write_text("import workers.vocabulary\n")
    return tmp_path


def test_the_sample_without_offences_passes(tmp_path: Path) -> None:
    sample = _sample(
        tmp_path, {"dossierflow": "import dispatcher.a\n", "workers": "import store.a\n"}
    )
    result = _lint(sample, sample)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    sample = _sample(tmp_path, {"store": "import dispatcher.a\n"})
    result = _lint(sample, sample)
    assert result.returncode != 0
    assert "store.a -> dispatcher.a" in result.stdout


def test_the_store_imports_nothing_of_workers_but_the_vocabulary(tmp_path: Path) -> None:
    sample = _sample(tmp_path, {"store": "import workers.a\n"})
    result = _lint(sample, sample)
    assert result.returncode != 0
    assert "store.a -> workers.a" in result.stdout
    assert "store.b -> workers.vocabulary" not in result.stdout


def test_the_processes_packages_do_not_import_each_other(tmp_path: Path) -> None:
    sample = _sample(tmp_path, {"dispatcher": "import reminder.a\n"})
    result = _lint(sample, sample)
    assert result.returncode != 0
    assert "dispatcher.a -> reminder.a" in result.stdout


def test_only_broker_imports_pika_and_only_store_imports_pymongo(tmp_path: Path) -> None:
    sample = _sample(
        tmp_path, {"dispatcher": "import pika\n", "workers": "from pymongo import X\n"}
    )
    result = _lint(sample, sample)
    assert result.returncode != 0
    assert "dispatcher.a -> pika" in result.stdout
    assert "workers.a -> pymongo" in result.stdout


def test_a_circle_inside_a_package_breaks(tmp_path: Path) -> None:
    sample = _sample(tmp_path, {"workers": "import workers.b\n"})
    (sample / "workers" / "b.py").write_text("import workers.a\n")
    result = _lint(sample, sample)
    assert result.returncode != 0
    assert "No cycles are allowed in workers" in result.stdout
