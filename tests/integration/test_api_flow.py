"""A platform submits over HTTP to a real cluster and watches the task finish over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace

import httpx2
import pytest

from dossierflow.settings import Settings
from dossierflow.tools.apidemo import serve_for_demo
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import company_code
from store import Role, Store, UserRecord
from tests.e2e.helpers import package_with
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_submit_over_http_then_watch_it_done_over_http(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package_with(settings.simpackage_path, "office1", ["d1"])
    cluster = make_cluster()
    cluster.start_dispatcher()
    cluster.start_worker("office1", "worker-0")
    store.users.save(UserRecord("platform", "office1", Role.PLATFORM))
    platform = store.tokens.issue("platform")
    url, admin, stop = serve_for_demo(
        replace(settings, amqp_url=cluster.amqp_url), settings.mongo_db, free_port()
    )
    try:
        with httpx2.Client(base_url=url, timeout=30) as http:
            body = {
                "dossier": "d1",
                "kind": "dossier.sync",
                "payload": {"dossier_code": company_code("office1", "d1")},
            }
            auth = {"Authorization": f"Bearer {platform}", "Idempotency-Key": "k1"}
            created = http.post("/v1/tasks", json=body, headers=auth)
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]

            def status() -> str:
                return str(http.get(f"/v1/tasks/{task_id}", headers=auth).json()["status"])

            wait_for(lambda: status() == "done", 90, f"task {task_id} done over HTTP")
            detail = http.get(f"/v1/tasks/{task_id}", headers={"Authorization": f"Bearer {admin}"})
            steps = [h["status"] for h in detail.json()["history"]]
            assert steps[0] == "submitted" and steps[-1] == "done"
            assert http.post("/v1/tasks", json=body, headers=auth).json()["id"] == task_id
    finally:
        stop()
