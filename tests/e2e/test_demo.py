"""`make demo` as a new user runs it: the whole system, every failure class, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.faultplan import BY_CODE
from store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_blocks_on_every_failure_class_fixes_them_and_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "MONGO_DB": settings.mongo_db, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dossierflow", "demo"],
            cwd=tmp_path,  # its state (logs, mails, the simulated package) goes here
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
    finally:
        demo = Store.connect(settings.mongo_url, f"{settings.mongo_db}_demo")
        demo.drop()
        demo.close()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    last = done.stdout.strip().splitlines()[-1]
    assert " 0 lost, 0 out of order in " in last, last
    assert "double-booked keys: 0" in done.stdout
    assert "executions inside one dossier overlapping: 0" in done.stdout
    for code in [*BY_CODE, "unreadable_message"]:  # each class got its instruction
        assert f"    {code} " in done.stdout, (code, done.stdout[-4000:])
    mails = list((tmp_path / ".dossierflow" / "demo" / "mail").glob("*.eml"))
    assert len(mails) == len(BY_CODE) + 1, mails
