"""The local cluster supervises its processes: one that exits starts again, with backoff."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def cluster(tmp_path: Path) -> Cluster:
    return Cluster(Settings(), vhost="unused", database="unused", log_dir=tmp_path)


def test_a_process_that_keeps_exiting_is_started_again_with_growing_waits(
    tmp_path: Path,
) -> None:
    c = cluster(tmp_path)
    c.start("bad", "worker", "--office", "not an id!")  # exits at once with status 2
    c.supervise(backoff_s=0.2, max_backoff_s=0.8)
    try:
        wait_for(lambda: c.restarts["bad"] >= 3, 30, "three restarts")
    finally:
        c.stop(timeout=5)
    assert set(c.exits["bad"]) == {2}


def test_a_killed_process_is_started_again_and_stop_starts_nothing(tmp_path: Path) -> None:
    c = cluster(tmp_path)
    # A connector whose broker does not answer keeps trying: it lives until killed.
    c.settings = Settings(amqp_url="amqp://guest:guest@127.0.0.1:1/%2F")
    c.start("worker", "worker", "--office", "office1")
    c.supervise(backoff_s=0.1)
    try:
        first = c.pid("worker")
        c.kill("worker", signal.SIGKILL)
        wait_for(lambda: c.pid("worker") != first, 10, "a new worker process")
    finally:
        codes = c.stop(timeout=5)
    # stop() ends the supervisor before it signals anything: what it stopped stays stopped.
    assert all(p.poll() is not None for p in c.procs.values())
    assert "worker" in codes
