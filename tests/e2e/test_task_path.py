"""The task path on real services with real processes, killed with real signals."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable

import pytest

from broker import topology
from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from store import Store
from tests.e2e.helpers import (
    client_for,
    package_with,
    process_log,
    start_active_and_standby,
    submit_bookings,
    wait_all_done,
)
from tests.waiting import wait_for
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

OFFICE = "office1"


def _dossiers(n: int) -> list[str]:
    return [f"d{i:03d}" for i in range(n)]


def test_order_holds_per_dossier_while_dossiers_overlap_on_three_connectors(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    dossiers = _dossiers(50)
    package = package_with(settings.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(simpackage_latency_ms="5,30")
    cluster.start_dispatcher()
    for n in range(3):
        cluster.start_worker(OFFICE, f"worker-{n}")
    client = client_for(cluster, store)
    expected = submit_bookings(client, OFFICE, dossiers, count=250)
    client.close()

    wait_all_done(store, 250, timeout=180)

    report = package.check_order(expected)
    assert report.lost == ()
    assert report.out_of_order == 0
    assert report.overlaps_within_dossier == 0, "two tasks of one dossier ran at once"
    assert report.overlaps_across_dossiers > 0, "dossiers never ran in parallel"
    assert report.double_booked == 0
    assert len(package.bookings()) == 250
    workers = {t.worker.split("/")[0] for t in store.tasks.find() if t.worker}
    assert len(workers) == 3, "work was not spread over the three connectors"


def test_connector_killed_mid_task_runs_it_again_elsewhere_and_books_once(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, ["d1"])
    cluster = make_cluster(simpackage_latency_ms="3000,3000")
    cluster.start_dispatcher()
    first = cluster.start_worker(OFFICE, "worker-a")
    cluster.start_worker(OFFICE, "worker-b")
    client = client_for(cluster, store)
    expected = submit_bookings(client, OFFICE, ["d1"], count=1)
    client.close()
    (task_id,) = expected[(OFFICE, "d1")]

    running = wait_for(
        lambda: (t := store.tasks.get(task_id)) and t.status is TaskStatus.RUNNING and t,
        60,
        "the task to start",
    )
    victim = next(
        name for name, proc in cluster.procs.items() if f":{proc.pid}/" in (running.worker or "")
    )
    cluster.kill(victim, signal.SIGKILL)

    wait_all_done(store, 1, timeout=90)
    task = store.tasks.get(task_id)
    assert task is not None and task.attempts >= 2
    assert task.worker is not None and f":{cluster.procs[victim].pid}/" not in task.worker
    assert package.booking_count(task_id) == 1
    executions = [e for e in package.executions() if e.task_id == task_id]
    assert len(executions) >= 2, "the task did not run again"
    assert first.returncode == -signal.SIGKILL or victim == "worker-b"


def test_handler_longer_than_three_heartbeats_keeps_its_connection_and_ack(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, ["d1"])
    # Heartbeat 1 s: a silent client is dropped by the broker after about 2 s.
    cluster = make_cluster(simpackage_latency_ms="4500,4500", heartbeat_s=1)
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker")
    client = client_for(cluster, store)
    expected = submit_bookings(client, OFFICE, ["d1", "d1"], count=2)
    client.close()

    wait_all_done(store, 2, timeout=60)

    task_ids = expected[(OFFICE, "d1")]
    for task_id in task_ids:
        task = store.tasks.get(task_id)
        assert task is not None and task.attempts == 1, "the task was redelivered"
        assert package.booking_count(task_id) == 1
    runs = [e for e in package.executions() if e.task_id in task_ids]
    assert len(runs) == 2 and all(e.ended_at - e.started_at >= 4.5 for e in runs)
    log = (cluster.log_dir / "worker.log").read_text()
    assert "connection_lost" not in log


def test_standby_sequencer_takes_over_when_active_is_killed(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    dossiers = _dossiers(10)
    package = package_with(settings.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(simpackage_latency_ms="20,40")
    start_active_and_standby(cluster, "dispatcher-active", "dispatcher-standby")
    cluster.start_worker(OFFICE, "worker-1")
    cluster.start_worker(OFFICE, "worker-2")
    client = client_for(cluster, store)
    expected = submit_bookings(client, OFFICE, dossiers, count=60, seed=1)
    wait_for(lambda: store.tasks.count([TaskStatus.DONE]).get("done", 0) >= 10, 60, "some done")

    cluster.kill("dispatcher-active", signal.SIGKILL)
    more = submit_bookings(client, OFFICE, dossiers, count=60, seed=2)
    client.close()
    for key, ids in more.items():
        expected[key].extend(ids)

    wait_all_done(store, 120, timeout=120)
    report = package.check_order(expected)
    assert report.lost == ()
    assert report.out_of_order == 0
    assert report.overlaps_within_dossier == 0
    assert len(package.bookings()) == 120


def test_sweeper_announces_a_stored_task_whose_command_was_never_published(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    from broker.messages import utcnow
    from dossierflow.tools.workload import company_code
    from store import TaskRecord

    package = package_with(settings.simpackage_path, OFFICE, ["d1"])
    cluster = make_cluster(sweep_grace_s=1.0, sweep_interval_s=0.5)
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker")
    # What a client that died between the insert and the publish leaves behind.
    store.tasks.insert(
        TaskRecord(
            id="orphan0001",
            office=OFFICE,
            dossier="d1",
            kind="dossier.sync",
            payload={"dossier_code": company_code(OFFICE, "d1")},
            status=TaskStatus.SUBMITTED,
            submitted_at=utcnow(),
        )
    )
    wait_all_done(store, 1, timeout=60)
    assert [e.task_id for e in package.executions()] == ["orphan0001"]


def test_sigterm_lets_a_connector_finish_its_task_and_take_no_new_one(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    package = package_with(settings.simpackage_path, OFFICE, ["d1", "d2"])
    cluster = make_cluster(simpackage_latency_ms="2500,2500")
    cluster.start_dispatcher()
    worker = cluster.start_worker(OFFICE, "worker")
    client = client_for(cluster, store)
    first = submit_bookings(client, OFFICE, ["d1"], count=1)[(OFFICE, "d1")][0]
    wait_for(lambda: (t := store.tasks.get(first)) and t.status is TaskStatus.RUNNING, 60, "start")
    second = submit_bookings(client, OFFICE, ["d2"], count=1, seed=2)[(OFFICE, "d2")][0]
    client.close()

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    task = store.tasks.get(first)
    assert task is not None and task.status is TaskStatus.DONE and task.attempts == 1
    assert package.booking_count(first) == 1
    assert store.tasks.get(second).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    assert all(e.task_id != second for e in package.executions())


@dataclasses.dataclass(frozen=True)
class _EarlierVersion(topology.Topology):
    """The topology as a client of an earlier version used it: no partition header."""

    def route(self, key: str) -> dict[str, str]:
        return {}


def test_commands_of_an_earlier_version_are_forwarded_to_their_partition_and_keep_order(
    settings: Settings, store: Store, make_cluster: Callable[..., Cluster]
) -> None:
    """During an upgrade, a client without the partition header: the control exchange's
    hash puts its commands on some partition, whose owner forwards each to its home."""
    dossiers = _dossiers(12)
    package = package_with(settings.simpackage_path, OFFICE, dossiers)
    cluster = make_cluster(simpackage_latency_ms="2,10")
    cluster.start_dispatcher()
    cluster.start_worker(OFFICE, "worker-0")
    client = client_for(cluster, store)
    client._topo = _EarlierVersion(**dataclasses.asdict(client._topo))
    expected = submit_bookings(client, OFFICE, dossiers, count=96)
    client.close()

    wait_all_done(store, 96, timeout=180)
    report = package.check_order(expected)
    assert report.lost == () and report.out_of_order == 0 and report.double_booked == 0
    log = process_log(cluster, "dispatcher")
    assert '"control.forwarded"' in log, "every command landed on its home partition by chance"
    assert "control.misrouted_again" not in log and "control.forward_refused" not in log
