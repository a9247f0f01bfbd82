"""A tool that runs the whole system stops what it started when it is stopped itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_the_bench_stops_its_dispatcher_and_connectors() -> None:
    """Killed with the default action, the chaos tool once left its dispatchers, connectors
    and mailer running; the next run on the same services met them (two mailers)."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "dossierflow", "bench", "--tasks", "50000", "--dossiers", "50"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(_children(bench.pid)) >= 5, 60, "its dispatcher and 4 connectors")
        started = _children(bench.pid)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=60) != 0
        wait_for(lambda: not any(_alive(p) for p in started), 30, "its processes to stop")
    finally:
        if bench.poll() is None:
            bench.kill()
