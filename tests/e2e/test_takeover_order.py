"""After a change of owner, a submission is never accepted before an earlier one of its dossier.

Found by the 10,000-task chaos run: a partition's new owner got a task's command before
the commands of earlier tasks of the same dossier (the broker delivers again what the old
owner held in no promised order), released it at once, and the earlier tasks ran after
it. A new owner now reads the dossier's notes of unaccepted tasks first.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from dispatcher.client import new_task_id
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from dossierflow.tools.workload import booking, company_code
from store import Store, TaskRecord
from tests.e2e.helpers import client_for, package_with, process_log
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OFFICE = "office1"


def _done(store: Store, task_id: str) -> bool:
    task = store.tasks.get(task_id)
    return task is not None and task.status is TaskStatus.DONE


def test_a_new_owner_accepts_the_earlier_unannounced_task_of_a_dossier_first(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, ["d1"])
    code = company_code(OFFICE, "d1")
    # The sweeper would announce the earlier task only after its grace: not in this test.
    cluster = make_cluster(sweep_grace_s=600.0)
    cluster.start_dispatcher("dispatcher-1")
    cluster.start_worker(OFFICE, "worker-1")
    client = client_for(cluster, store)
    first = client.submit(
        OFFICE, "d1", "booking_proposal.process", booking(code, "p0", random.Random(0))
    )
    wait_for(lambda: _done(store, first), 60, "the first task done")
    # A new owner: the partition's next activation takes a newer epoch.
    cluster.kill("dispatcher-1", signal.SIGKILL)
    cluster.start_dispatcher("dispatcher-2")
    wait_for(lambda: "dispatcher.started" in process_log(cluster, "dispatcher-2"), 30, "started")

    # An earlier task stored with its note, whose command has not reached the owner (here
    # it is never published: as for a command held by the old owner and delivered late).
    earlier = TaskRecord(
        new_task_id(), OFFICE, "d1", "booking_proposal.process",
        booking(code, "p1", random.Random(1)), TaskStatus.SUBMITTED, datetime.now(UTC),
    )  # fmt: skip
    store.tasks.insert(earlier)
    later = client.submit(
        OFFICE, "d1", "booking_proposal.process", booking(code, "p2", random.Random(2))
    )
    client.close()
    wait_for(lambda: _done(store, earlier.id) and _done(store, later), 60, "both done")

    report = package.check_order({(OFFICE, "d1"): [first, earlier.id, later]})
    assert report.out_of_order == 0 and report.lost == ()
    assert "sequencer.accepted_earlier" in process_log(cluster, "dispatcher-2")
