"""A task queued when its work message vanished runs, once, after the sweeper's grace.

Issue 10 (item 9) and issue 9: a released task (`queued`) whose work message is gone, the
office's work queue purged or deleted, or the publish lost with the owner that wrote the
release, used to stay queued forever, and its dossier with it. The sweeper now reports
such a release to the dossier's owner once the office's work queue has held no message
for the grace, and the owner releases the task again under a new run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from broker import topology
from broker.admin import Admin
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import Store
from store.outstanding import RELEASES
from tests.e2e.helpers import client_for, package_with, process_log
from tests.waiting import wait_for
from workers.accounting.simulated import SimulatedPackage
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PURGED, UNTOUCHED = "office1", "office2"
GRACE = 2.0


def _submit(cluster: Cluster, store: Store, office: str, count: int) -> list[str]:
    client = client_for(cluster, store)
    try:
        return [
            client.submit(
                office,
                "d1",
                "booking_proposal.process",
                booking(company_code(office, "d1"), f"p{i}", random.Random(f"{office}{i}")),
            )
            for i in range(count)
        ]
    finally:
        client.close()


def _status(store: Store, task_id: str) -> tuple[TaskStatus, int] | None:
    task = store.tasks.get(task_id)
    return (task.status, task.run) if task is not None else None


def _queue(admin: Admin, cluster: Cluster, office: str) -> dict[str, Any] | None:
    return admin.queue_if_any(cluster.vhost, topology.work_queue(office))


def _ready(admin: Admin, cluster: Cluster, office: str) -> int:
    found = _queue(admin, cluster, office)
    return int(found.get("messages_ready", 0)) if found else -1


def _executions(package: SimulatedPackage, task_id: str) -> int:
    return sum(1 for e in package.executions() if e.task_id == task_id)


def _queued_with_message(store: Store, admin: Admin, cluster: Cluster, task_id: str) -> None:
    office = store.tasks.get(task_id).office  # type: ignore[union-attr]
    wait_for(lambda: _status(store, task_id) == (TaskStatus.QUEUED, 1), 30, f"{task_id} queued")
    # Management figures lag a few seconds: the message is seen in the queue first.
    wait_for(lambda: _ready(admin, cluster, office) == 1, 30, f"its message in {office}'s queue")


def test_a_task_queued_when_its_work_queue_was_purged_runs_once_after_the_grace(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, PURGED, ["d1"])
    package_with(settings.simpackage_path, UNTOUCHED, ["d1"])
    cluster = make_cluster(sweep_grace_s=GRACE)
    admin = Admin(settings.rabbitmq_api)
    cluster.start_dispatcher()
    first, second = _submit(cluster, store, PURGED, 2)
    (other,) = _submit(cluster, store, UNTOUCHED, 1)
    _queued_with_message(store, admin, cluster, first)
    _queued_with_message(store, admin, cluster, other)
    assert _status(store, second) == (TaskStatus.WAITING, 0), "one task in flight per dossier"

    admin.purge_queue(cluster.vhost, topology.work_queue(PURGED))
    cluster.start_worker(PURGED, "worker-1")

    for task_id in (first, second):
        wait_for(
            lambda t=task_id: (s := _status(store, t)) is not None and s[0] is TaskStatus.DONE,
            60,
            f"task {task_id} done after its work message was purged",
        )
    assert _status(store, first) == (TaskStatus.DONE, 2), "released again under a new run"
    assert _executions(package, first) == 1 and _executions(package, second) == 1
    report = package.check_order({(PURGED, "d1"): [first, second]})
    assert report.ok and report.double_booked == 0, report
    log = process_log(cluster, "dispatcher")
    assert "sweeper.release_lost" in log and first in log

    # The other office's message still waits in its queue, older than the grace: the
    # sweeper, which had as long to look at it, left it alone.
    assert _status(store, other) == (TaskStatus.QUEUED, 1)
    assert _ready(admin, cluster, UNTOUCHED) == 1
    cluster.start_worker(UNTOUCHED, "worker-2")
    wait_for(lambda: _status(store, other) == (TaskStatus.DONE, 1), 60, f"task {other} done")
    assert _executions(package, other) == 1
    wait_for(
        lambda: store.collection(RELEASES).count_documents({}) == 0,
        30,
        "every release note dropped once its task landed",
    )


def test_a_task_queued_when_its_work_queue_was_deleted_runs_once_after_the_grace(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, PURGED, ["d1"])
    cluster = make_cluster(sweep_grace_s=GRACE)
    admin = Admin(settings.rabbitmq_api)
    cluster.start_dispatcher()
    first, second = _submit(cluster, store, PURGED, 2)
    _queued_with_message(store, admin, cluster, first)

    admin.delete_queue(cluster.vhost, topology.work_queue(PURGED))
    assert _queue(admin, cluster, PURGED) is None
    # No connector declares the queue again: the owner does, when the publish of its
    # new release finds no queue.
    wait_for(lambda: _status(store, first) == (TaskStatus.QUEUED, 2), 60, f"{first} released again")
    wait_for(lambda: _ready(admin, cluster, PURGED) == 1, 30, "the new release in a new queue")
    cluster.start_worker(PURGED, "worker-1")
    for task_id in (first, second):
        wait_for(
            lambda t=task_id: (s := _status(store, t)) is not None and s[0] is TaskStatus.DONE,
            60,
            f"task {task_id} done after its work queue was deleted",
        )
    assert _executions(package, first) == 1 and _executions(package, second) == 1
    assert package.check_order({(PURGED, "d1"): [first, second]}).ok


def test_a_release_whose_owner_died_before_its_message_was_seen_runs_under_the_successor(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    # Issue 9's stuck dossier: the owner that wrote the release is gone, its message too,
    # and no later message names the dossier, so no new owner would ever read it.
    package = package_with(settings.simpackage_path, PURGED, ["d1"])
    cluster = make_cluster(sweep_grace_s=GRACE)
    admin = Admin(settings.rabbitmq_api)
    cluster.start_dispatcher("dispatcher-a")
    first, second = _submit(cluster, store, PURGED, 2)
    _queued_with_message(store, admin, cluster, first)
    cluster.kill("dispatcher-a")
    admin.purge_queue(cluster.vhost, topology.work_queue(PURGED))

    cluster.start_dispatcher("dispatcher-b")
    cluster.start_worker(PURGED, "worker-1")
    for task_id in (first, second):
        wait_for(
            lambda t=task_id: (s := _status(store, t)) is not None and s[0] is TaskStatus.DONE,
            60,
            f"task {task_id} done under the successor",
        )
    assert _status(store, first) == (TaskStatus.DONE, 2)
    assert _executions(package, first) == 1 and _executions(package, second) == 1
    assert package.check_order({(PURGED, "d1"): [first, second]}).ok
    assert "sweeper.release_lost" in process_log(cluster, "dispatcher-b")
