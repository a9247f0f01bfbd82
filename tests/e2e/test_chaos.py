"""A CI-sized `dossierflow chaos` run: every fault at least once, and every count zero.

It stops and starts the broker and the store the DOSSIERFLOW_* settings name (through
deploy/local/services.sh, as in CI): run it only against services of your own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dossierflow.tools.chaosfaults import FAULTS
from tests.services import Endpoints, endpoints
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261202


def _answering() -> Endpoints | None:
    try:
        return endpoints()
    except AssertionError:
        return None


def test_chaos_with_every_fault_loses_nothing_books_once_keeps_order_and_leaves_nothing_stuck(
    services: Endpoints, request: pytest.FixtureRequest
) -> None:
    artifacts = ROOT / "test-artifacts" / request.node.name
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "dossierflow", "chaos", "--tasks", "1000", "--dossiers", "50"]
    command += ["--seed", str(SEED), "--duration", "75"]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=330,
            check=False,
        )
    finally:
        # Whatever happened, the services answer again before the next test.
        subprocess.run(
            ["bash", str(ROOT / "deploy/local/services.sh"), "start"],
            capture_output=True,
            timeout=300,
            check=False,
        )
        wait_for(_answering, 120, "RabbitMQ and the store to answer again", every=1.0)
        shutil.copytree(ROOT / ".dossierflow/chaos/logs", artifacts / "logs", dirs_exist_ok=True)
    (artifacts / "chaos.txt").write_text(done.stdout + done.stderr)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert "0 lost, 0 double-booked, 0 out of order, 0 stuck" in last, done.stdout[-3000:]
    assert "0 duplicated, 0 unexplained, 0 unmailed" in done.stdout, done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-3000:]
    for fault in FAULTS:
        assert f"fault {fault} at" in done.stdout, f"{fault} was not injected"
