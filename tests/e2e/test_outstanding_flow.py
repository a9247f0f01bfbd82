"""Real processes leave nothing outstanding behind once their tasks are done."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import Store
from store.outstanding import RETRY_TIMERS, SUBMISSIONS
from tests.e2e.helpers import client_for, package_with
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OFFICE = "office1"


def test_notes_and_timers_go_once_tasks_are_accepted_and_retried(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    dossiers = ["d1", "d2"]
    package = package_with(settings.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(retry_delays_s="2,3,3,3,3", sweep_grace_s=1.0)
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker-0")
    client = client_for(cluster, store)
    package.set_unreachable(8)
    try:
        tasks = [
            client.submit(
                OFFICE,
                d,
                "booking_proposal.process",
                booking(company_code(OFFICE, d), f"p{i}", random.Random(f"{d}{i}")),
            )
            for i in range(3)
            for d in dossiers
        ]
    finally:
        client.close()
    timers = store.collection(RETRY_TIMERS)
    wait_for(lambda: timers.count_documents({}) > 0, 30, "a parked retry timer")
    for task_id in tasks:
        wait_for(
            lambda t=task_id: (r := store.tasks.get(t)) is not None and r.status is TaskStatus.DONE,
            90,
            f"task {task_id} done",
        )
    assert store.collection(SUBMISSIONS).count_documents({}) == 0, "accepted, still noted"
    wait_for(lambda: timers.count_documents({}) == 0, 30, "the sweeper to drop fired timers")
