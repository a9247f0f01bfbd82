"""The ops command line as an operator uses it: tables, --json, refusals with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import company_code
from store import Store
from tests.e2e.helpers import client_for, package_with, submit_bookings
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OFFICE = "office1"


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dossierflow", *args],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ops_cli_lists_shows_refuses_and_restarts(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, ["d1"])
    package.close_period(company_code(OFFICE, "d1"), "2024-05")
    cluster = make_cluster()
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker")
    client = client_for(cluster, store)
    good = submit_bookings(client, OFFICE, ["d1"], count=1)[(OFFICE, "d1")][0]
    wait_for(lambda: store.tasks.get(good).status is TaskStatus.DONE, 60, "first done")  # type: ignore[union-attr]
    from tests.e2e.test_failures import Running

    failing = Running(cluster, package, client, store).book("d1", "pX", period="2024-05")
    wait_for(lambda: store.tasks.get(failing).status is TaskStatus.FAILED, 60, "failure")  # type: ignore[union-attr]
    wait_for(lambda: store.instructions.find(task_id=failing), 30, "its instruction")
    client.close()

    listed = _cli(cluster, "tasks", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [failing]
    table = _cli(cluster, "instructions", "list", "--lang", "nl")
    assert "invalid_period" in table.stdout and "2024-05" in table.stdout
    assert "1 instruction(s)" in table.stdout
    shown = _cli(cluster, "tasks", "show", failing)
    assert "failed" in shown.stdout and "history:" in shown.stdout

    refused = _cli(cluster, "tasks", "cancel", good)
    assert refused.returncode == 1
    assert f"task {good} is done" in refused.stderr

    package.open_period(company_code(OFFICE, "d1"), "2024-05")
    restarted = _cli(cluster, "tasks", "restart", failing, "--role", "admin")
    assert restarted.returncode == 0, restarted.stderr
    wait_for(lambda: store.tasks.get(failing).status is TaskStatus.DONE, 60, "restarted task done")  # type: ignore[union-attr]
